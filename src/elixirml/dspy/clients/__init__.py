"""``dspy.clients``: DSPy's LM classes over ElixirML's LM layer."""

from __future__ import annotations

from typing import Any

from .base_lm import GLOBAL_HISTORY, BaseLM
from .lm import LM

__all__ = ["GLOBAL_HISTORY", "LM", "BaseLM", "configure_cache", "inspect_history"]


def inspect_history(n: int = 1, file: Any = None) -> None:
    """Print the last ``n`` LM calls of :data:`GLOBAL_HISTORY` (DSPy's ``dspy.inspect_history``)."""
    from ..utils.inspect_history import pretty_print_history

    pretty_print_history(GLOBAL_HISTORY, n, file=file)


def configure_cache(
    enable_disk_cache: bool | None = True,
    enable_memory_cache: bool | None = True,
    disk_cache_dir: str | None = None,
    **_sizes: Any,
) -> None:
    """DSPy's ``configure_cache``, as ``em.configure(cache=...)``.

    Off when both caches are off; ``disk_cache_dir`` selects a directory; else the default cache.
    """
    from .. import _settings

    if not enable_disk_cache and not enable_memory_cache:
        _settings.configure(cache=False)
    else:
        _settings.configure(cache=disk_cache_dir if disk_cache_dir else True)
