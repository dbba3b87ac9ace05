"""Runtime layer: sync bridge, resilience policies (retries, circuit breaker, limits) and the Supervisor."""

from typing import TYPE_CHECKING

from .._lazy import lazy_getattr
from ._batch import gather_bounded, stream_bounded
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
    "active_callbacks",
    "aobserve_callbacks",
    "end_callback",
    "instrument",
    "instrument_async",
    "notify_callbacks",
    "observe_callbacks",
    "start_callback",
    "ChildStatus",
    "close_with_loop",
    "CircuitBreaker",
    "ConcurrencyLimiter",
    "RateLimiter",
    "RetryPolicy",
    "ProgressDisplay",
    "ProgressLines",
    "SpanRecorder",
    "gather_bounded",
    "run_sync",
    "stream_bounded",
    "Supervisor",
    "OpenTelemetryCallback",
    "extract_trace_context",
    "Callback",
    "CompletionTexts",
    "ControlFlowSignal",
    "current_context",
    "reset_context",
    "run_scope",
    "set_context",
    "Executor",
    "ProgramSpec",
    "Work",
    "call_program",
    "open_executor",
    "register_executor",
    "resolve_executor",
]
