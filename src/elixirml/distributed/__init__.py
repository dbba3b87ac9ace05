"""Distributed layer: run evaluations, batches and optimization trials on a Ray cluster.

``em.RayExecutor`` is the executor; ``em.evaluate(..., executor=...)``,
``pipeline.run_batch(..., strategy="distributed", executor=...)`` and :func:`run` use it.
Workers rebuild the program from its class path and JSON state and share the LM's rate limits
and circuit breaker through one Ray actor. Ray is imported only when a run starts.
"""

from __future__ import annotations

from ..runtime import Executor, ProgramSpec, register_executor
from ._limits import SharedCircuitBreaker, SharedRateLimiter
from ._ray import RayExecutor, default_executor
from ._run import arun, run

register_executor("ray", default_executor)

__all__ = [
    "Executor",
    "ProgramSpec",
    "RayExecutor",
    "SharedCircuitBreaker",
    "SharedRateLimiter",
    "arun",
    "run",
]
