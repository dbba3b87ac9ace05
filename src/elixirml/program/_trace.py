"""Traces: a record of every predictor call made while a trace is open."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from ..runtime import current_context, run_scope
from ..schema import Prediction


class TraceEntry:
    """One predictor call.

    Attributes:
        predictor: the ``Predict`` that ran.
        inputs: its validated inputs.
        prediction: its output (``None`` when the call failed). Given ``outputs`` (one dict of
            output values per completion) instead, the entry builds it on first access: every
            call records an entry, few entries are read.
        messages: the rendered chat messages sent to the LM.
        usage: token usage of the call.
        latency: seconds the call took.
        cached: whether the LM answer came from the cache.
        error: the exception, when the call failed.
        assertions: outcomes of output assertions checked on this call's output.
        completion: the raw completion text.
    """

    __slots__ = (
        "_outputs",
        "_prediction",
        "assertions",
        "cached",
        "completion",
        "error",
        "inputs",
        "latency",
        "messages",
        "predictor",
        "usage",
    )

    def __init__(
        self,
        predictor: Any,
        inputs: dict[str, Any],
        prediction: Any = None,
        messages: list[dict[str, Any]] | None = None,
        usage: dict[str, Any] | None = None,
        latency: float = 0.0,
        cached: bool = False,
        error: BaseException | None = None,
        assertions: list[dict[str, Any]] | None = None,
        completion: str = "",
        *,
        outputs: list[dict[str, Any]] | None = None,
    ) -> None:
        self.predictor = predictor
        self.inputs = inputs
        self._prediction = prediction
        self._outputs = outputs
        self.messages = messages if messages is not None else []
        self.usage = usage if usage is not None else {}
        self.latency = latency
        self.cached = cached
        self.error = error
        self.assertions = assertions if assertions is not None else []
        self.completion = completion

    @property
    def prediction(self) -> Any:
        """The call's output as a Prediction (its own copy: no reference cycle through ``.trace``)."""
        if self._prediction is None and self._outputs is not None:
            self._prediction = Prediction.from_completions(self._outputs, self.usage)
        return self._prediction

    @prediction.setter
    def prediction(self, value: Any) -> None:
        self._prediction = value
        self._outputs = None

    def __repr__(self) -> str:
        name = type(self.predictor).__name__
        return f"TraceEntry(predictor={name}, inputs={self.inputs!r}, prediction={self.prediction!r})"


@contextlib.contextmanager
def trace() -> Iterator[list[TraceEntry]]:
    """Collect a :class:`TraceEntry` for every predictor call inside the block."""
    entries: list[TraceEntry] = []
    with run_scope(trace=entries):
        yield entries


@contextlib.contextmanager
def listening(callback: Any) -> Iterator[None]:
    """Call ``callback(predictor, prediction)`` after every predictor call inside the block."""
    with run_scope(listeners=(*current_context().listeners, callback)):
        yield


def notify(predictor: Any, prediction: Any) -> None:
    """Tell the listeners open here about a finished predictor call."""
    for callback in current_context().listeners:
        callback(predictor, prediction)


def current_entries() -> list[TraceEntry] | None:
    """The entries of the open trace, or None."""
    return current_context().trace


def format_trace(entries: list[TraceEntry], *, messages: bool = False) -> str:
    """Render trace entries as text."""
    if not entries:
        return "(empty trace)"
    blocks = []
    for i, entry in enumerate(entries, 1):
        predictor = entry.predictor
        sig = getattr(predictor, "signature", None)
        title = f"{type(predictor).__name__}({sig.signature if sig is not None else ''})"
        lines = [f"=== step {i}/{len(entries)}: {title}" + (" (cached)" if entry.cached else "")]
        lines.append(f"  inputs:  {entry.inputs}")
        outputs = entry.prediction.to_dict() if entry.prediction is not None else None
        lines.append(f"  outputs: {outputs}")
        if entry.error is not None:
            lines.append(f"  error:   {type(entry.error).__name__}: {entry.error}")
        usage = entry.usage or {}
        lines.append(
            f"  tokens:  {usage.get('prompt_tokens', 0)} in, {usage.get('completion_tokens', 0)} out; "
            f"latency {entry.latency * 1000:.1f} ms"
        )
        for check in entry.assertions:
            mark = "passed" if check["passed"] else "FAILED"
            lines.append(f"  {'assert' if check['hard'] else 'suggest'} {mark}: {check['message']}")
        if messages:
            for message in entry.messages:
                lines.append(f"  --- {message.get('role')}: {message.get('content')}")
        blocks.append("\n".join(lines))
    return "\n".join(blocks)


def inspect_trace(result: Any, *, messages: bool = False) -> str:
    """Print and return the trace of a run: pass its Prediction (or a list of entries)."""
    entries = result if isinstance(result, list) else getattr(result, "trace", None)
    if entries is None:
        raise TypeError("inspect_trace needs a Prediction returned by a module call, or a list of TraceEntry")
    text = format_trace(entries, messages=messages)
    print(text)
    return text
