"""OpenTelemetry: spans for modules, adapters, LM calls, tools, evaluations and optimizer trials.

:class:`OpenTelemetryCallback` is a callback (register it with ``em.configure(callbacks=[...])``)
that opens a span at each ``*_start`` and ends it at the matching ``*_end``. The span is made
the current one in between, so the spans of nested calls become its children; OpenTelemetry
keeps the current span in a context variable, so it follows asyncio tasks and worker threads
(``asyncio.to_thread``, ``run_sync``) as ElixirML's own settings do.

LM spans carry the OpenTelemetry GenAI semantic-convention attributes (``gen_ai.operation.name``,
``gen_ai.request.model``, ``gen_ai.request.temperature``, ``gen_ai.usage.input_tokens``, ...);
failed calls get ``error.type`` and an error status. Prompt and answer text are recorded only
with ``em.configure(trace_content=True)``.

``opentelemetry-api`` and ``-sdk`` come with the ``otel`` extra and are imported only here.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from typing import Any

from .. import settings as _settings
from ..errors import MissingDependencyError
from ._callbacks import Callback

__all__ = ["OpenTelemetryCallback", "extract_trace_context"]

INSTRUMENTATION_NAME = "elixirml"
_SCALAR = (str, bool, int, float)


def _otel() -> Any:
    try:
        from opentelemetry import context, trace
    except ImportError:
        raise MissingDependencyError("opentelemetry-api", "otel", "OpenTelemetry tracing") from None
    return context, trace


def _attribute(value: Any) -> Any:
    """``value`` as an OpenTelemetry attribute value (scalars as they are, anything else as JSON text)."""
    if isinstance(value, _SCALAR):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    return json.dumps(value, default=str, ensure_ascii=False)


def _provider_and_model(model: str) -> tuple[str, str]:
    provider, sep, name = model.partition("/")
    return (provider, name) if sep else (provider, model)


def _program_attributes(instance: Any) -> dict[str, Any]:
    """Name and stored version of a program (set by ``em.Store.save`` / ``load``), else its class name."""
    stored = getattr(instance, "__dict__", {}).get("_elixirml_stored")
    if stored is not None:
        name, version = stored
        return {"elixirml.program.name": name, "elixirml.program.version": version}
    return {"elixirml.program.name": type(instance).__name__}


class OpenTelemetryCallback(Callback):
    """A callback that records every call as an OpenTelemetry span.

    Args:
        tracer_provider: the provider to get a tracer from; default: the global one
            (``opentelemetry.trace.set_tracer_provider``).

    Example::

        from opentelemetry.sdk.trace import TracerProvider
        provider = TracerProvider()   # with an exporter, see docs/observability.md
        em.configure(callbacks=[em.callbacks.OpenTelemetryCallback(provider)])

    Spans: ``module <Class>`` (the outermost one also carries ``elixirml.program.name`` and,
    for a program saved in or loaded from a store, ``elixirml.program.version``),
    ``format <Adapter>``, ``parse <Adapter>``, ``chat <model>`` (GenAI attributes),
    ``execute_tool <name>``, ``evaluate <Program>``, ``compile <Optimizer>`` and
    ``trial <n>`` (the trial's variable values as ``elixirml.trial.variables.<name>``; it
    starts when the trial started, by its wall time, and is a child of the ``compile`` span).
    """

    def __init__(self, tracer_provider: Any = None) -> None:
        self._context, self._trace = _otel()
        self._tracer = self._trace.get_tracer(INSTRUMENTATION_NAME, tracer_provider=tracer_provider)
        self._open: dict[str, tuple[Any, Any]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "OpenTelemetryCallback()"

    # ------------------------------------------------------------------ span bookkeeping
    def _start(self, call_id: str, name: str, attributes: Mapping[str, Any], *, client: bool = False) -> Any:
        kind = self._trace.SpanKind.CLIENT if client else self._trace.SpanKind.INTERNAL
        span = self._tracer.start_span(name, kind=kind, attributes=dict(attributes))
        token = self._context.attach(self._trace.set_span_in_context(span))
        with self._lock:
            self._open[call_id] = (span, token)
        return span

    def _end(self, call_id: str, exception: BaseException | None) -> Any:
        """End the span of ``call_id`` (an error status and ``error.type`` when it raised) and restore the context."""
        with self._lock:
            opened = self._open.pop(call_id, None)
        if opened is None:
            return None
        span, token = opened
        if exception is not None:
            span.set_attribute("error.type", type(exception).__qualname__)
            span.record_exception(exception)
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, str(exception)[:500]))
        span.end()
        self._context.detach(token)
        return span

    def _span(self, call_id: str) -> Any:
        with self._lock:
            opened = self._open.get(call_id)
        return opened[0] if opened is not None else None

    @staticmethod
    def _content() -> bool:
        return bool(_settings.current().trace_content)

    # ------------------------------------------------------------------ modules
    def on_module_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        """Open ``module <Class>``; the outermost one names the program."""
        attributes: dict[str, Any] = {"elixirml.module": type(instance).__name__}
        if self._is_outer(self._trace.get_current_span()):
            attributes.update(_program_attributes(instance))
        if self._content():
            attributes["elixirml.module.inputs"] = _attribute(dict(inputs.get("kwargs") or {}))
        self._start(call_id, f"module {type(instance).__name__}", attributes)

    @staticmethod
    def _is_outer(parent: Any) -> bool:
        """Whether ``parent`` is not one of ElixirML's module spans (none, an evaluation, a request, a user's span)."""
        attributes = getattr(parent, "attributes", None) or {}
        return "elixirml.module" not in attributes

    def on_module_end(self, call_id: str, outputs: Any | None, exception: BaseException | None = None) -> None:
        """End the module span (with the outputs when content is traced)."""
        span = self._span(call_id)
        if span is not None and outputs is not None and exception is None and self._content():
            to_dict = getattr(outputs, "to_dict", None)
            span.set_attribute("elixirml.module.outputs", _attribute(to_dict() if callable(to_dict) else outputs))
        self._end(call_id, exception)

    # ------------------------------------------------------------------ LM calls
    def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        """Open ``chat <model>`` with the request's GenAI attributes."""
        provider, model = _provider_and_model(str(getattr(instance, "model", "unknown")))
        settings = inputs.get("kwargs") or {}
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": provider,
            "gen_ai.request.model": model,
        }
        for key, name in (
            ("temperature", "gen_ai.request.temperature"),
            ("max_tokens", "gen_ai.request.max_tokens"),
            ("top_p", "gen_ai.request.top_p"),
            ("n", "gen_ai.request.choice.count"),
            ("seed", "gen_ai.request.seed"),
        ):
            value = settings.get(key)
            if isinstance(value, _SCALAR):
                attributes[name] = value
        if self._content():
            attributes["gen_ai.input.messages"] = _attribute(inputs.get("messages") or [])
        self._start(call_id, f"chat {model}", attributes, client=True)

    def on_lm_end(self, call_id: str, outputs: Any | None, exception: BaseException | None = None) -> None:
        """End the LM span with token usage, finish reasons and the response model."""
        span = self._span(call_id)
        response = getattr(outputs, "response", None)
        if span is not None and response is not None:
            usage = response.usage
            span.set_attribute("gen_ai.usage.input_tokens", int(usage.prompt_tokens))
            span.set_attribute("gen_ai.usage.output_tokens", int(usage.completion_tokens))
            reasons = [c.finish_reason for c in response.completions if c.finish_reason]
            if reasons:
                span.set_attribute("gen_ai.response.finish_reasons", reasons)
            if response.model:
                span.set_attribute("gen_ai.response.model", _provider_and_model(str(response.model))[1])
            span.set_attribute("elixirml.cached", bool(response.cached))
            if usage.cost:
                span.set_attribute("elixirml.cost", float(usage.cost))
            if self._content():
                span.set_attribute(
                    "gen_ai.output.messages",
                    _attribute([{"role": "assistant", "content": c.text} for c in response.completions]),
                )
        self._end(call_id, exception)

    # ------------------------------------------------------------------ adapters
    def on_adapter_format_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        """Open ``format <Adapter>``."""
        signature = inputs.get("signature")
        self._start(
            call_id,
            f"format {type(instance).__name__}",
            {
                "elixirml.adapter": type(instance).__name__,
                "elixirml.signature": getattr(signature, "__name__", str(signature)),
                "elixirml.demos": len(inputs.get("demos") or ()),
            },
        )

    def on_adapter_format_end(
        self, call_id: str, outputs: dict[str, Any] | None, exception: BaseException | None = None
    ) -> None:
        """End the format span (with the message count)."""
        span = self._span(call_id)
        if span is not None and isinstance(outputs, list):
            span.set_attribute("elixirml.messages", len(outputs))
        self._end(call_id, exception)

    def on_adapter_parse_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        """Open ``parse <Adapter>`` (with the completion when content is traced)."""
        attributes: dict[str, Any] = {"elixirml.adapter": type(instance).__name__}
        if self._content():
            attributes["elixirml.completion"] = str(inputs.get("completion", ""))
        self._start(call_id, f"parse {type(instance).__name__}", attributes)

    def on_adapter_parse_end(
        self, call_id: str, outputs: dict[str, Any] | None, exception: BaseException | None = None
    ) -> None:
        """End the parse span."""
        self._end(call_id, exception)

    # ------------------------------------------------------------------ tools
    def on_tool_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        """Open ``execute_tool <name>``."""
        name = str(getattr(instance, "name", type(instance).__name__))
        attributes: dict[str, Any] = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name}
        if self._content():
            attributes["gen_ai.tool.call.arguments"] = _attribute(inputs.get("kwargs") or {})
        self._start(call_id, f"execute_tool {name}", attributes)

    def on_tool_end(self, call_id: str, outputs: Any | None, exception: BaseException | None = None) -> None:
        """End the tool span."""
        span = self._span(call_id)
        if span is not None and exception is None and self._content():
            span.set_attribute("gen_ai.tool.call.result", _attribute(outputs))
        self._end(call_id, exception)

    # ------------------------------------------------------------------ evaluation and optimization
    def on_evaluate_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        """Open ``evaluate <Program>``."""
        attributes = {"elixirml.operation": "evaluate", **_program_attributes(instance)}
        self._start(call_id, f"evaluate {type(instance).__name__}", attributes)

    def on_evaluate_end(self, call_id: str, outputs: Any | None, exception: BaseException | None = None) -> None:
        """End the evaluation span with its score, size and errors."""
        span = self._span(call_id)
        if span is not None and outputs is not None:
            for name, value in (
                ("elixirml.evaluate.score", getattr(outputs, "score", None)),
                ("elixirml.evaluate.examples", len(getattr(outputs, "results", ()))),
                ("elixirml.evaluate.errors", getattr(outputs, "errors", None)),
            ):
                if isinstance(value, (int, float)):
                    span.set_attribute(name, value)
        self._end(call_id, exception)

    def on_compile_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        """Open ``compile <Optimizer>``: the parent of the run's trials."""
        program = inputs.get("program") or inputs.get("student")
        attributes: dict[str, Any] = {"elixirml.operation": "optimize", "elixirml.optimizer": type(instance).__name__}
        if program is not None:
            attributes.update(_program_attributes(program))
        self._start(call_id, f"compile {type(instance).__name__}", attributes)

    def on_compile_end(self, call_id: str, outputs: Any | None, exception: BaseException | None = None) -> None:
        """End the optimization span."""
        self._end(call_id, exception)

    def on_trial_end(self, call_id: str, instance: Any, trial: Any) -> None:
        """Record ``trial <n>``: it began ``wall_time`` seconds ago; attributes hold its variable values and scores."""
        attributes: dict[str, Any] = {
            "elixirml.operation": "trial",
            "elixirml.optimizer": type(instance).__name__,
            "elixirml.trial.number": int(trial.number),
            "elixirml.trial.score": float(trial.score),
            "elixirml.trial.status": str(trial.status),
            "elixirml.trial.full": bool(trial.full),
            "elixirml.trial.lm_calls": int(trial.lm_calls),
            "elixirml.trial.cost": float(trial.cost),
        }
        for name, value in dict(trial.configuration).items():
            attributes[f"elixirml.trial.variables.{name}"] = _attribute(value)
        for name, value in dict(trial.scores).items():
            attributes[f"elixirml.trial.scores.{name}"] = float(value)
        now = time.time_ns()
        began = now - int(float(trial.wall_time) * 1e9)
        span = self._tracer.start_span(f"trial {trial.number}", attributes=attributes, start_time=began)
        span.end(end_time=now)


def extract_trace_context(headers: Mapping[str, str]) -> Any:
    """The OpenTelemetry context of an incoming request's W3C ``traceparent`` / ``tracestate`` headers.

    For a server (ElixirML has none yet; ``em.serve`` will use this): run the request's program
    inside it, and its spans continue the caller's trace::

        token = opentelemetry.context.attach(extract_trace_context(request.headers))
        try:
            result = await program.acall(**inputs)
        finally:
            opentelemetry.context.detach(token)

    Header names are matched without regard to case. Without a valid ``traceparent`` the
    returned context has no parent span, and spans start a new trace.
    """
    _otel()
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    lowered = {str(key).lower(): value for key, value in headers.items()}
    return TraceContextTextMapPropagator().extract(lowered)
