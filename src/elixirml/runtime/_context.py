"""RunContext: the per-run state of a program call, carried by one context variable.

A program call needs some state that follows it through ``await`` and into worker threads,
but must not leak into concurrent calls: the assertion scope of the outermost run, the open
trace, the listeners of ``Program.after_prediction``, request settings forced by a wrapper
module (``BestOfN``), values bound from ``Variable``s, the event stream of ``streamify``, and
the recorder of an optimizer's probe call. They live together in one immutable
:class:`RunContext`; code that changes a field opens a scope with :func:`run_scope`, which
sets a modified copy and restores the previous one on exit (in the manner of pydantic-ai's
run context). asyncio copies the context into each task, so every task sees the scope it
was started in.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

__all__ = ["RunContext", "current_context", "run_scope"]


class RunContext(NamedTuple):
    """What the current program call carries (immutable; change it with :func:`run_scope`).

    A named tuple: a copy with one field changed costs a fraction of a frozen dataclass's,
    and several are made on every module call.

    Attributes:
        run: the assertion state of the outermost module call (None outside a run).
        trace: the open trace's entry list (None when no trace is open).
        listeners: callbacks ``(predictor, prediction)`` told about every predictor call.
        forced: request settings forced by a wrapper module (highest precedence).
        best_effort: which of the forced settings apply only where the LM's provider honours them
            (bootstrapping's sampling temperature, for instance); the others are required.
        bindings: predictor id -> values bound from Variables (``{"settings": {...}, "lm": LM}``).
        stream: the queue of a ``streamify`` call, when one is open.
        probe: the recorder of an optimizer's probe call (no LM is called while it is set).
        usage: the usage trackers open here (``em.track_usage``), outermost first.
        budgets: the call budgets open here (``spending_limit``, ``max_lm_calls``), outermost first.
        span: the id of the span a :class:`~elixirml.runtime.SpanRecorder` has open here.
    """

    run: Any = None
    trace: list[Any] | None = None
    listeners: tuple[Any, ...] = ()
    forced: Mapping[str, Any] | None = None
    best_effort: frozenset[str] = frozenset()
    bindings: Mapping[int, Mapping[str, Any]] | None = None
    stream: Any = None
    probe: Any = None
    usage: tuple[Any, ...] = ()
    budgets: tuple[Any, ...] = ()
    span: str | None = None

    # Copies with one thing changed, spelled out: they run on every call, and _replace costs twice as much.
    def with_run(self, run: Any, trace: list[Any]) -> RunContext:
        """A copy with a run's assertion state and trace (what every outermost call opens)."""
        return _new(RunContext, (run, trace, *self[2:]))

    def with_usage(self, tracker: Any) -> RunContext:
        """A copy with ``tracker`` added to the open usage trackers."""
        return _new(RunContext, (*self[:8], (*self[8], tracker), *self[9:]))

    def with_budget(self, budget: Any) -> RunContext:
        """A copy with ``budget`` added to the open call budgets."""
        return _new(RunContext, (*self[:9], (*self[9], budget), *self[10:]))

    def with_span(self, span: str | None) -> RunContext:
        """A copy with ``span`` as the open span."""
        return _new(RunContext, (*self[:10], span))


_new = tuple.__new__


_EMPTY = RunContext()
_CONTEXT: contextvars.ContextVar[RunContext] = contextvars.ContextVar("elixirml_run_context", default=_EMPTY)


#: The run context in force here: ``current_context()`` (the context variable's own ``get``,
#: with no Python call around it: this runs several times on every module call).
current_context = _CONTEXT.get


@contextlib.contextmanager
def run_scope(**changes: Any) -> Iterator[RunContext]:
    """Run the block with some fields of the run context replaced; the old context returns after."""
    token = _CONTEXT.set(_CONTEXT.get()._replace(**changes))
    try:
        yield _CONTEXT.get()
    finally:
        _CONTEXT.reset(token)


def set_context(context: RunContext) -> contextvars.Token[RunContext]:
    """Set ``context`` until :func:`reset_context` is called with the returned token."""
    return _CONTEXT.set(context)


def reset_context(token: contextvars.Token[RunContext]) -> None:
    """Undo a :func:`set_context`."""
    _CONTEXT.reset(token)
