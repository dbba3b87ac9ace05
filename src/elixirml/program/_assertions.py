"""Output assertions: ``em.assert_output`` (hard) and ``em.suggest_output`` (soft).

Inside a module's ``forward``, a failed assertion re-runs the module; the predictor whose
output failed sees its previous answer and the assertion's message as feedback, up to
``retries`` times. Then a hard assertion raises :class:`~elixirml.errors.AssertionFailed`
(every attempt attached) and a soft one logs a warning and lets the run go on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from .._log import logger
from ..errors import AssertionFailed
from ..runtime import ControlFlowSignal, current_context, reset_context, set_context

T = TypeVar("T")


@dataclasses.dataclass(slots=True)
class LastCall:
    """The most recent predictor call of a run: who answered what."""

    predictor: Any
    completion: str
    prediction: Any


class RunState:
    """Per-run bookkeeping for assertions (lives in a context variable).

    Attributes:
        last_call: the latest predictor call (the one a failing assertion blames).
        feedback: ``(previous completion, message)`` pairs per predictor (by ``id``).
        retries_used: retries spent per assertion message.
        attempts: the predictions that failed each assertion message.
    """

    __slots__ = ("attempts", "feedback", "last_call", "retries_used")

    def __init__(self) -> None:
        self.last_call: LastCall | None = None
        self.feedback: dict[int, list[tuple[str, str]]] = {}
        self.retries_used: dict[str, int] = {}
        self.attempts: dict[str, list[Any]] = {}


class RetrySignal(ControlFlowSignal):
    """Raised by a failed assertion that still has retries; the outermost call re-runs.

    A control-flow signal, not an error: it derives from ``BaseException`` so that no
    ``except Exception`` (a user's ``on_error`` hook, a wrapper module, evaluation) can
    swallow it on its way to the outermost call, and callbacks never see it as an exception.
    """


def current_run() -> RunState | None:
    """The assertion state of the run in progress, if any."""
    state: RunState | None = current_context().run
    return state


def _check(condition: Any, message: str, retries: int, hard: bool) -> None:
    passed = bool(condition)
    context = current_context()
    state: RunState | None = context.run
    entries = context.trace
    if entries:
        entries[-1].assertions.append({"message": message, "passed": passed, "hard": hard})
    if passed:
        return
    if state is None:
        if hard:
            raise AssertionFailed(message, [])
        logger().warning("Suggestion failed: %s", message)
        return
    last = state.last_call
    state.attempts.setdefault(message, []).append(last.prediction if last else None)
    used = state.retries_used.get(message, 0)
    if used < retries and last is not None:
        state.retries_used[message] = used + 1
        state.feedback.setdefault(id(last.predictor), []).append((last.completion, message))
        raise RetrySignal(message)
    if hard:
        raise AssertionFailed(message, state.attempts[message])
    logger().warning("Suggestion still failing after %d retries: %s", used, message)


def assert_output(condition: Any, message: str, *, retries: int = 2) -> None:
    """Require ``condition``; on failure re-run with feedback, then raise ``AssertionFailed``.

    Args:
        condition: the check (truthy passes).
        message: what was wrong; shown to the LM on retry.
        retries: how many re-runs before giving up.
    """
    _check(condition, message, retries, hard=True)


def suggest_output(condition: Any, message: str, *, retries: int = 2) -> None:
    """Like :func:`assert_output`, but after the retries it only logs a warning."""
    _check(condition, message, retries, hard=False)


class _Outermost:
    """The scope of an outermost run: assertion state and the trace attached to its result.

    The run records into the trace already open here, or opens its own.
    """

    __slots__ = ("entries", "start", "token")

    def __init__(self) -> None:
        context = current_context()
        self.entries: list[Any] = context.trace if context.trace is not None else []
        self.start = len(self.entries)
        self.token = set_context(context.with_run(RunState(), self.entries))

    def attach(self, result: T) -> T:
        attach = getattr(result, "attach_trace", None)
        if attach is not None:
            attach(self.entries[self.start :])
        return result

    def close(self) -> None:
        reset_context(self.token)


def run_with_retries(call: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run ``call(*args, **kwargs)``; when it is the outermost run, re-run it on each assertion retry.

    The outermost run also records a trace and attaches it to a returned Prediction.
    """
    if current_context().run is not None:
        return call(*args, **kwargs)
    scope = _Outermost()
    try:
        while True:
            try:
                return scope.attach(call(*args, **kwargs))
            except RetrySignal:
                continue
    finally:
        scope.close()


async def arun_with_retries(call: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any) -> T:
    """Async :func:`run_with_retries`: awaits ``call(*args, **kwargs)`` in the same scope."""
    if current_context().run is not None:
        return await call(*args, **kwargs)
    scope = _Outermost()
    try:
        while True:
            try:
                return scope.attach(await call(*args, **kwargs))
            except RetrySignal:
                continue
    finally:
        scope.close()
