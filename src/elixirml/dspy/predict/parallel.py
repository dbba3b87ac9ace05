"""``dspy.predict.parallel``: DSPy's ``Parallel``, with DSPy's per-worker ``usage_tracker``."""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from typing import Any

from ...program import Parallel as _Parallel
from .._settings import context, settings

__all__ = ["Parallel"]


class Parallel(_Parallel):
    """ElixirML's :class:`~elixirml.Parallel` (modules or plain functions), as ``dspy.Parallel``.

    As DSPy's ``ParallelExecutor`` does for each thread, each pair runs with its own deep copy of
    ``dspy.settings.usage_tracker`` (when one is set): what a worker adds to it is its own, and
    the caller's tracker is left unchanged. ElixirML's own usage tracking (``track_usage``,
    ``get_lm_usage``) is unaffected: LM calls count in every block open around them.
    """

    def _pair_call(self, module: Any, inputs: Any) -> Callable[[], Any]:
        call = super()._pair_call(module, inputs)
        tracker = settings.usage_tracker
        if tracker is None:
            return call

        async def worker() -> Any:
            with context(usage_tracker=copy.deepcopy(tracker)):
                result: Awaitable[Any] = call()
                return await result

        return worker
