"""Per-call cost of callbacks and OpenTelemetry on a scripted LM (see docs/benchmarks.md).

Usage: python bench/observability.py MODE   (MODE: off | callback | otel)

- ``off``: nothing configured (what every call pays for the hooks: one flag read each);
- ``callback``: one ``em.callbacks.Callback`` whose methods do nothing (the dispatch);
- ``otel``: ``OpenTelemetryCallback`` on the SDK with a ``SimpleSpanProcessor`` and an exporter
  that drops every span (the spans themselves; needs the ``otel`` extra).

Run each mode in its own process and alternate them (and the code before a change, from a
worktree): the machine is noisy. Prints one JSON line with microseconds per call, best of 7
runs of 1,000 calls, for Predict and ChainOfThought.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from overhead import ours  # the same timing loop as the overhead benchmark

import elixirml as em


def configure(mode: str) -> None:
    """Set up the callbacks ``mode`` names."""
    if mode == "otel":
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

        class Drop(SpanExporter):
            def export(self, spans: Any) -> SpanExportResult:
                return SpanExportResult.SUCCESS

        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(Drop()))
        em.configure(callbacks=[em.callbacks.OpenTelemetryCallback(provider)])
    elif mode == "callback":
        em.configure(callbacks=[em.callbacks.Callback()])
    elif mode != "off":
        raise SystemExit(f"unknown mode {mode!r}; use off, callback or otel")


def main() -> None:
    """Measure the mode given on the command line."""
    mode = sys.argv[1] if len(sys.argv) > 1 else "off"
    configure(mode)
    predict = ours(em.Predict, {"answer": "x"}, 1000, repeats=7) * 1e6
    cot = ours(em.ChainOfThought, {"reasoning": "r", "answer": "x"}, 1000, repeats=7) * 1e6
    print(json.dumps({"mode": mode, "predict_us": round(predict, 1), "cot_us": round(cot, 1)}))


if __name__ == "__main__":
    main()
