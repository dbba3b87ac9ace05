"""Runtime layer: sync bridge, resilience policies (retries, circuit breaker, limits) and the Supervisor."""

from typing import TYPE_CHECKING

from .._lazy import lazy_getattr
from ._batch import gather_bounded, stream_bounded
from ._policies import CircuitBreaker, ConcurrencyLimiter, RateLimiter, RetryPolicy
from ._spans import SpanRecorder
from ._sync import close_with_loop, run_sync

if TYPE_CHECKING:
    from ._supervisor import ChildStatus, Supervisor

__getattr__ = lazy_getattr(__name__, dict.fromkeys(("ChildStatus", "Supervisor"), "._supervisor"), globals())

__all__ = [
    "ChildStatus",
    "close_with_loop",
    "CircuitBreaker",
    "ConcurrencyLimiter",
    "RateLimiter",
    "RetryPolicy",
    "SpanRecorder",
    "gather_bounded",
    "run_sync",
    "stream_bounded",
    "Supervisor",
]
