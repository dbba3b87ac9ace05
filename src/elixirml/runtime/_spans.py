"""A callback that records a run's calls as a span tree of plain JSON (what the store keeps).

:class:`SpanRecorder` opens a span at each ``*_start`` callback and closes it at the matching
``*_end``; the span open in the caller's context when a call starts is its parent. The open
span lives in the run context (``runtime/_context.py``), so calls made in asyncio tasks and
worker threads nest under the span that started them, as OpenTelemetry's do. Times are seconds
since the recorder was made.
"""

from __future__ import annotations

import contextvars
import threading
import time
from typing import Any

from ._callbacks import Callback
from ._context import current_context, reset_context, set_context

__all__ = ["SpanRecorder"]


def _module_name(instance: Any) -> str:
    signature = getattr(instance, "signature", None)
    name = getattr(signature, "__name__", None)
    return f"{type(instance).__name__}({name})" if name and hasattr(instance, "demos") else type(instance).__name__


class SpanRecorder(Callback):
    """Record every module, adapter, LM and tool call of a run as a span (a JSON-ready dict).

    Each span in :attr:`spans` has ``id``, ``parent`` (an id or None), ``kind`` (``module``,
    ``lm``, ``adapter_format``, ``adapter_parse``, ``tool``), ``name``, ``start`` and
    ``duration`` (seconds), ``error`` (``"Type: message"`` or ``""``) and ``attributes``
    (model, token usage, cached). Spans are listed in the order they started.

    Example::

        recorder = em.runtime.SpanRecorder()
        with em.context(callbacks=[recorder]):
            program(question="...")
        recorder.spans   # the span tree, parents first
    """

    def __init__(self) -> None:
        self._origin = time.perf_counter()
        self._lock = threading.Lock()
        self._open: dict[str, tuple[dict[str, Any], contextvars.Token[Any]]] = {}
        self.spans: list[dict[str, Any]] = []

    def __repr__(self) -> str:
        return f"SpanRecorder({len(self.spans)} spans)"

    def _start(self, call_id: str, kind: str, name: str, attributes: dict[str, Any] | None = None) -> None:
        context = current_context()
        span = {
            "id": call_id,
            "parent": context.span,
            "kind": kind,
            "name": name,
            "start": time.perf_counter() - self._origin,
            "duration": None,
            "error": "",
            "attributes": attributes or {},
        }
        token = set_context(context.with_span(call_id))
        with self._lock:
            self.spans.append(span)
            self._open[call_id] = (span, token)

    def _end(self, call_id: str, exception: BaseException | None) -> dict[str, Any] | None:
        with self._lock:
            opened = self._open.pop(call_id, None)
        if opened is None:
            return None
        span, token = opened
        span["duration"] = time.perf_counter() - self._origin - span["start"]
        if exception is not None:
            span["error"] = f"{type(exception).__name__}: {exception}"
        try:
            reset_context(token)
        except ValueError:  # ended in another context than it started (a task finished elsewhere)
            set_context(current_context().with_span(span["parent"]))
        return span

    def on_module_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        self._start(call_id, "module", _module_name(instance))

    def on_module_end(self, call_id: str, outputs: Any | None, exception: BaseException | None = None) -> None:
        self._end(call_id, exception)

    def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        model = str(getattr(instance, "model", type(instance).__name__))
        settings = {k: v for k, v in (inputs.get("kwargs") or {}).items() if isinstance(v, (str, int, float, bool))}
        self._start(call_id, "lm", f"chat {model}", {"model": model, "settings": settings})

    def on_lm_end(self, call_id: str, outputs: Any | None, exception: BaseException | None = None) -> None:
        span = self._end(call_id, exception)
        response = getattr(outputs, "response", None)
        if span is not None and response is not None:
            usage = response.usage
            span["attributes"].update(
                {
                    "input_tokens": int(usage.prompt_tokens),
                    "output_tokens": int(usage.completion_tokens),
                    "cost": float(usage.cost or 0.0),
                    "cached": bool(response.cached),
                    "finish_reasons": [c.finish_reason for c in response.completions if c.finish_reason],
                }
            )

    def on_adapter_format_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        self._start(call_id, "adapter_format", f"format {type(instance).__name__}")

    def on_adapter_format_end(
        self, call_id: str, outputs: dict[str, Any] | None, exception: BaseException | None = None
    ) -> None:
        self._end(call_id, exception)

    def on_adapter_parse_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        self._start(call_id, "adapter_parse", f"parse {type(instance).__name__}")

    def on_adapter_parse_end(
        self, call_id: str, outputs: dict[str, Any] | None, exception: BaseException | None = None
    ) -> None:
        self._end(call_id, exception)

    def on_tool_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        self._start(call_id, "tool", f"tool {getattr(instance, 'name', type(instance).__name__)}")

    def on_tool_end(self, call_id: str, outputs: Any | None, exception: BaseException | None = None) -> None:
        self._end(call_id, exception)
