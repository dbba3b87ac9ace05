"""Optimizers (``em.optimizers``): turn a program and labelled examples into a better program.

LabeledFewShot, BootstrapFewShot, RandomSearch, MIPRO, VariableSearch, GEPA, SIMBA, COPRO,
KNNFewShot and Ensemble, on one base (:class:`Optimizer`) that reads the program's
VariableSpace and records trials in the store.

DSPy's names are aliases: ``BootstrapFewShotWithRandomSearch`` (RandomSearch) and ``MIPROv2`` (MIPRO).
"""

from __future__ import annotations

from typing import Any

from .. import settings as _settings
from ._base import OptimizationResult, OptimizationState, Optimizer, Trial
from ._choice import instruction_originals
from ._copro import COPRO
from ._ensemble import Ensemble, EnsembledProgram, majority
from ._fewshot import BootstrapFewShot, LabeledFewShot, bootstrap_demos
from ._gepa import GEPA
from ._knn import KNNFewShot, KNNProgram
from ._named import optimizer_by_name
from ._search import MIPRO, RandomSearch, VariableSearch
from ._simba import SIMBA


class BootstrapFewShotWithRandomSearch(RandomSearch):
    """DSPy's name for :class:`RandomSearch` (``num_candidate_programs`` is ``num_candidates``).

    ``restrict`` numbers the candidates as DSPy's seeds: -3 zero-shot, -2 labelled demos, -1
    bootstrapped in trainset order, 0 and up bootstrapped from shuffled trainsets.
    """

    name = "BootstrapFewShotWithRandomSearch"
    first_candidate = -3

    def __init__(
        self,
        metric: Any,
        max_bootstrapped_demos: int = 4,
        max_labeled_demos: int = 16,
        num_candidate_programs: int = 8,
        **kwargs: Any,
    ) -> None:
        super().__init__(metric, num_candidate_programs, max_bootstrapped_demos, max_labeled_demos, **kwargs)


class MIPROv2(MIPRO):
    """DSPy's name for :class:`MIPRO` (``prompt_model`` is ``proposer_lm``).

    ``task_model`` is the LM the program runs on while it is optimized (predictors with an LM
    of their own keep it), as in DSPy.
    """

    name = "MIPROv2"

    def __init__(
        self,
        metric: Any,
        auto: str | None = "light",
        *,
        prompt_model: Any = None,
        task_model: Any = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("proposer_lm", prompt_model)
        super().__init__(metric, auto, **kwargs)
        self.task_model = task_model

    def compile(self, *args: Any, **kwargs: Any) -> Any:
        """As :meth:`Optimizer.compile`, with the program running on ``task_model`` when one was given."""
        if self.task_model is None:
            return super().compile(*args, **kwargs)
        with _settings.context(lm=self.task_model):
            return super().compile(*args, **kwargs)


__all__ = [
    "COPRO",
    "GEPA",
    "MIPRO",
    "SIMBA",
    "BootstrapFewShot",
    "BootstrapFewShotWithRandomSearch",
    "Ensemble",
    "EnsembledProgram",
    "KNNFewShot",
    "KNNProgram",
    "LabeledFewShot",
    "MIPROv2",
    "OptimizationResult",
    "OptimizationState",
    "Optimizer",
    "RandomSearch",
    "Trial",
    "VariableSearch",
    "bootstrap_demos",
    "instruction_originals",
    "majority",
    "optimizer_by_name",
]
