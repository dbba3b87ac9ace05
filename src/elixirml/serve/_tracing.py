"""Each served request continues the caller's W3C trace (``traceparent``) and has a trace id.

With OpenTelemetry installed (the ``otel`` extra), the request runs inside a server span whose
parent is the incoming ``traceparent``; the program's spans (``OpenTelemetryCallback``) become
its children. Without it, the trace id is still taken from ``traceparent``, or made up, so
every response names one.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from collections.abc import Iterator, Mapping
from typing import Any

_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")


def _incoming_trace_id(headers: Mapping[str, str]) -> str | None:
    match = _TRACEPARENT.match(str(headers.get("traceparent", "")).strip().lower())
    if match is None or set(match.group(1)) == {"0"}:
        return None
    return match.group(1)


def _opentelemetry() -> Any:
    try:
        from opentelemetry import context, trace
    except ImportError:
        return None
    return context, trace


def _no_provider(trace: Any) -> bool:
    """Whether no tracer provider is set (OpenTelemetry's API alone: every span would be a no-op)."""
    return isinstance(trace.get_tracer_provider(), (trace.ProxyTracerProvider, trace.NoOpTracerProvider))


@contextlib.contextmanager
def request_trace(
    headers: Mapping[str, str], name: str, attributes: Mapping[str, Any], tracer_provider: Any = None
) -> Iterator[str]:
    """Run the block in a server span continuing ``headers``' trace; yields the trace id (32 hex).

    The span comes from ``tracer_provider`` (default: the global one); with neither, and no
    ``traceparent`` to continue, no span is made (it would be a no-op) and the trace id is new.
    """
    otel = _opentelemetry()
    incoming = _incoming_trace_id(headers)
    if otel is None or (incoming is None and tracer_provider is None and _no_provider(otel[1])):
        yield incoming or secrets.token_hex(16)  # no span would be recorded, no trace continued: none is made
        return
    from ..runtime import extract_trace_context

    _, trace = otel
    parent = extract_trace_context(headers)
    tracer = trace.get_tracer("elixirml.serve", tracer_provider=tracer_provider)
    with tracer.start_as_current_span(
        name, context=parent, kind=trace.SpanKind.SERVER, attributes=dict(attributes)
    ) as span:
        span_context = span.get_span_context()
        trace_id = format(span_context.trace_id, "032x") if span_context.is_valid else None
        yield trace_id or incoming or secrets.token_hex(16)
