"""Optimizers by name, as the CLI and the job server name them."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigurationError
from ._base import Optimizer
from ._fewshot import BootstrapFewShot, LabeledFewShot
from ._search import MIPRO, RandomSearch, VariableSearch

OPTIMIZER_NAMES = ("labeled", "bootstrap", "random", "mipro", "variable")


def optimizer_by_name(name: str, metric: Any, **settings: Any) -> Optimizer:
    """Build an optimizer from its short name (or an extension's name) and a metric.

    ``labeled`` (LabeledFewShot), ``bootstrap`` (BootstrapFewShot), ``random`` (RandomSearch),
    ``mipro`` (MIPRO), ``variable`` (VariableSearch on the metric and tokens); any other name is
    looked up among the ``elixirml.optimizers`` extensions, which take the metric.

    Args:
        name: the optimizer's name.
        metric: the score to maximise.
        **settings: keyword arguments of the optimizer's constructor (``auto="light"``,
            ``num_trials=8``, ``seed=0``, ...).

    Raises:
        ConfigurationError: an unknown name, or a setting the optimizer does not take.
    """
    builders: dict[str, Any] = {
        "labeled": lambda: LabeledFewShot(**settings),
        "bootstrap": lambda: BootstrapFewShot(metric, **settings),
        "random": lambda: RandomSearch(metric, **settings),
        "mipro": lambda: MIPRO(metric, **settings),
        "variable": lambda: VariableSearch([metric, "tokens"], **settings),
    }
    builder = builders.get(name)
    if builder is None:
        from .. import extensions

        if name not in extensions.names("optimizers"):
            known = [*OPTIMIZER_NAMES, *extensions.names("optimizers")]
            raise ConfigurationError(f"Unknown optimizer {name!r}; use one of {known}")
        factory = extensions.get("optimizers", name)  # an extension's optimizer takes the metric
        builder = lambda: factory(metric, **settings)  # noqa: E731
    try:
        optimizer: Optimizer = builder()
    except TypeError as exc:
        raise ConfigurationError(f"Optimizer {name!r} does not take these settings {sorted(settings)}: {exc}") from None
    return optimizer
