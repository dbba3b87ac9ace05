"""``/metrics`` in the Prometheus text format (version 0.0.4), written by hand: no client library."""

from __future__ import annotations

from ._state import LATENCY_BUCKETS, ServeState


def _label(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: object) -> str:
    return "{" + ",".join(f'{key}="{_label(value)}"' for key, value in labels.items()) + "}"


def render_metrics(state: ServeState) -> str:
    """Requests, errors, latency histogram, tokens and cost per program and version; deploy state."""
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")

    stats = sorted(state.stats.items())
    family("elixirml_requests_total", "counter", "Program runs served, by program and version.")
    for (name, number), s in stats:
        lines.append(f"elixirml_requests_total{_labels(program=name, version=number)} {s.requests}")
    family("elixirml_request_errors_total", "counter", "Program runs that failed, by program and version.")
    for (name, number), s in stats:
        lines.append(f"elixirml_request_errors_total{_labels(program=name, version=number)} {s.errors}")
    family("elixirml_requests_in_flight", "gauge", "Program runs in progress, by program and version.")
    for (name, number), s in stats:
        lines.append(f"elixirml_requests_in_flight{_labels(program=name, version=number)} {s.in_flight}")
    family("elixirml_request_duration_seconds", "histogram", "Latency of program runs in seconds.")
    for (name, number), s in stats:
        cumulative = 0
        for bound, count in zip((*LATENCY_BUCKETS, float("inf")), s.buckets):
            cumulative += count
            le = "+Inf" if bound == float("inf") else repr(bound)
            lines.append(
                f"elixirml_request_duration_seconds_bucket{_labels(program=name, version=number, le=le)} {cumulative}"
            )
        lines.append(f"elixirml_request_duration_seconds_sum{_labels(program=name, version=number)} {s.latency_sum}")
        lines.append(f"elixirml_request_duration_seconds_count{_labels(program=name, version=number)} {s.requests}")
    family("elixirml_tokens_total", "counter", "LM tokens used by program runs, by kind.")
    for (name, number), s in stats:
        for kind, value in (("prompt", s.prompt_tokens), ("completion", s.completion_tokens)):
            lines.append(f"elixirml_tokens_total{_labels(program=name, version=number, kind=kind)} {value}")
    family("elixirml_cost_usd_total", "counter", "Estimated LM cost of program runs in US dollars.")
    for (name, number), s in stats:
        lines.append(f"elixirml_cost_usd_total{_labels(program=name, version=number)} {s.cost}")
    family("elixirml_live_version", "gauge", "The version answering each program's requests.")
    for name, deployment in sorted(state.deployments.items()):
        lines.append(f"elixirml_live_version{_labels(program=name)} {deployment.live.number}")
    family("elixirml_canary_traffic", "gauge", "Share of requests sent to each program's canary version.")
    for name, deployment in sorted(state.deployments.items()):
        version = deployment.canary.number if deployment.canary is not None else 0
        lines.append(f"elixirml_canary_traffic{_labels(program=name, version=version)} {deployment.traffic}")
    family("elixirml_rejected_total", "counter", "Requests refused before reaching a program, by reason.")
    for reason, count in sorted(state.rejected.items()):
        lines.append(f"elixirml_rejected_total{_labels(reason=reason)} {count}")
    family("elixirml_http_in_flight", "gauge", "HTTP requests in progress.")
    lines.append(f"elixirml_http_in_flight {state.in_flight}")
    return "\n".join(lines) + "\n"
