"""Callbacks and OpenTelemetry tracing: see what programs do.

``em.callbacks.Callback`` has DSPy 3.4's ``BaseCallback`` method names; register callbacks with
``em.configure(callbacks=[...])`` or ``with em.context(callbacks=[...]):``.
:class:`OpenTelemetryCallback` turns every call into an OpenTelemetry span (the ``otel``
extra); :func:`extract_trace_context` continues an incoming W3C ``traceparent``.
See ``docs/observability.md``.
"""

from .runtime import ACTIVE_CALL_ID, Callback, CompletionTexts, OpenTelemetryCallback, extract_trace_context

__all__ = ["ACTIVE_CALL_ID", "Callback", "CompletionTexts", "OpenTelemetryCallback", "extract_trace_context"]
