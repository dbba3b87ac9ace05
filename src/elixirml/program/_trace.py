"""Traces: a record of every predictor call made while a trace is open."""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from collections.abc import Iterator
from typing import Any


@dataclasses.dataclass
class TraceEntry:
    """One predictor call.

    Attributes:
        predictor: the ``Predict`` that ran.
        inputs: its validated inputs.
        prediction: its output (``None`` when the call failed).
        messages: the rendered chat messages sent to the LM.
        usage: token usage of the call.
        latency: seconds the call took.
        cached: whether the LM answer came from the cache.
        error: the exception, when the call failed.
        assertions: outcomes of output assertions checked on this call's output.
    """

    predictor: Any
    inputs: dict[str, Any]
    prediction: Any
    messages: list[dict[str, Any]]
    usage: dict[str, Any]
    latency: float
    cached: bool = False
    error: BaseException | None = None
    assertions: list[dict[str, Any]] = dataclasses.field(default_factory=list)


_TRACE: contextvars.ContextVar[list[TraceEntry] | None] = contextvars.ContextVar("elixirml_trace", default=None)


@contextlib.contextmanager
def trace() -> Iterator[list[TraceEntry]]:
    """Collect a :class:`TraceEntry` for every predictor call inside the block."""
    entries: list[TraceEntry] = []
    token = _TRACE.set(entries)
    try:
        yield entries
    finally:
        _TRACE.reset(token)


def record(entry: TraceEntry) -> None:
    """Append ``entry`` to the open trace, if any."""
    entries = _TRACE.get()
    if entries is not None:
        entries.append(entry)


def active() -> bool:
    """Whether a trace is open here."""
    return _TRACE.get() is not None


_LISTENERS: contextvars.ContextVar[tuple[Any, ...]] = contextvars.ContextVar("elixirml_listeners", default=())


@contextlib.contextmanager
def listening(callback: Any) -> Iterator[None]:
    """Call ``callback(predictor, prediction)`` after every predictor call inside the block."""
    token = _LISTENERS.set((*_LISTENERS.get(), callback))
    try:
        yield
    finally:
        _LISTENERS.reset(token)


def notify(predictor: Any, prediction: Any) -> None:
    """Tell the listeners open here about a finished predictor call."""
    for callback in _LISTENERS.get():
        callback(predictor, prediction)


def current_entries() -> list[TraceEntry] | None:
    """The entries of the open trace, or None."""
    return _TRACE.get()
