"""Runtime layer: sync bridge, resilience policies (retries, circuit breaker, limits) and the Supervisor."""

from typing import TYPE_CHECKING

from .._lazy import lazy_getattr
from ._batch import gather_bounded, gather_resubmitting, stream_bounded
from ._callbacks import (
    ACTIVE_CALL_ID,
    Callback,
    CompletionTexts,
    ControlFlowSignal,
    instrument,
    instrument_async,
)
from ._callbacks import (
    active as active_callbacks,
)
from ._callbacks import (
    aobserve as aobserve_callbacks,
)
from ._callbacks import (
    end as end_callback,
)
from ._callbacks import (
    notify as notify_callbacks,
)
from ._callbacks import (
    observe as observe_callbacks,
)
from ._callbacks import (
    start as start_callback,
)
from ._context import current_context, reset_context, run_scope, set_context
from ._executor import Executor, ProgramSpec, Work, call_program, open_executor, register_executor, resolve_executor
from ._policies import CircuitBreaker, ConcurrencyLimiter, RateLimiter, RetryPolicy
from ._progress import ProgressDisplay, ProgressLines
from ._spans import SpanRecorder
from ._sync import close_with_loop, run_sync

if TYPE_CHECKING:
    from ._supervisor import ChildStatus, Supervisor
    from ._telemetry import OpenTelemetryCallback, extract_trace_context

# The Supervisor (the server's) and OpenTelemetry support load on first use.
__getattr__ = lazy_getattr(
    __name__,
    {
        **dict.fromkeys(("ChildStatus", "Supervisor"), "._supervisor"),
        **dict.fromkeys(("OpenTelemetryCallback", "extract_trace_context"), "._telemetry"),
    },
    globals(),
)

__all__ = [
    "ACTIVE_CALL_ID",
    "Callback",
    "ChildStatus",
    "CircuitBreaker",
    "CompletionTexts",
    "ConcurrencyLimiter",
    "ControlFlowSignal",
    "Executor",
    "OpenTelemetryCallback",
    "ProgramSpec",
    "ProgressDisplay",
    "ProgressLines",
    "RateLimiter",
    "RetryPolicy",
    "SpanRecorder",
    "Supervisor",
    "Work",
    "active_callbacks",
    "aobserve_callbacks",
    "call_program",
    "close_with_loop",
    "current_context",
    "end_callback",
    "extract_trace_context",
    "gather_bounded",
    "gather_resubmitting",
    "instrument",
    "instrument_async",
    "notify_callbacks",
    "observe_callbacks",
    "open_executor",
    "register_executor",
    "reset_context",
    "resolve_executor",
    "run_scope",
    "run_sync",
    "set_context",
    "start_callback",
    "stream_bounded",
]
