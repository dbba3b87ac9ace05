"""What each console page shows, computed from the store's plain dicts (no web framework here)."""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from markupsafe import Markup, escape

from ..evaluation import MEASURED
from ..program import interface_of
from ._plots import interval_plot, pareto_front, pareto_plot, trials_plot

Z95 = 1.96


def pretty(value: Any) -> str:
    """A value as readable text: strings as they are, anything else as indented JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def word_diff(before: str | None, after: str | None) -> Markup:
    """``before`` -> ``after`` with removed words in ``<del>`` and added ones in ``<ins>`` (all text escaped)."""
    a, b = (before or "").split(" "), (after or "").split(" ")
    out: list[str] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(str(escape(" ".join(a[i1:i2]))))
            continue
        if i2 > i1:
            out.append(f"<del>{escape(' '.join(a[i1:i2]))}</del>")
        if j2 > j1:
            out.append(f"<ins>{escape(' '.join(b[j1:j2]))}</ins>")
    return Markup(" ".join(out))


# ---------------------------------------------------------------------- programs
def predictors_of(state: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Predictor name -> its saved state (a single predictor program is named ``self``)."""
    predictors = state.get("predictors")
    if isinstance(predictors, Mapping):
        return {str(k): dict(v or {}) for k, v in predictors.items()}
    return {"self": dict(state)}


def fields_text(predictor: Mapping[str, Any]) -> str:
    """``question: str -> answer: str`` from a saved predictor's signature."""
    fields = (predictor.get("signature") or {}).get("fields") or []
    inputs = [f"{f['name']}: {f.get('type', 'str')}" for f in fields if f.get("kind") == "input"]
    outputs = [f"{f['name']}: {f.get('type', 'str')}" for f in fields if f.get("kind") == "output"]
    return f"{', '.join(inputs)} -> {', '.join(outputs)}"


def demo_text(demo: Any) -> str:
    """A saved demo as ``field: value`` lines (a saved Example keeps its values under ``data``)."""
    values = demo.get("data", demo) if isinstance(demo, Mapping) else demo
    if not isinstance(values, Mapping):
        return pretty(values)
    return "\n".join(f"{k}: {v if isinstance(v, str) else pretty(v)}" for k, v in values.items())


def configuration_values(configuration: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Variable values to show: demos (long) are counted, everything else printed."""
    rows = []
    for key, value in sorted(configuration.items()):
        if isinstance(value, list) and key.endswith("demos"):
            rows.append((key, f"{len(value)} demos"))
        else:
            rows.append((key, pretty(value)))
    return rows


def version_diff(left: Mapping[str, Any], right: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """Everything the diff page shows for two versions (``changes`` is ``store.diff``'s answer)."""
    variables = []
    for key, change in changes["configuration"].items():
        if key.endswith("demos") or key.endswith("instructions"):
            continue  # shown per predictor, in full
        variables.append({"name": key, "from": pretty(change["from"]), "to": pretty(change["to"])})
    lp, rp = predictors_of(left["state"]), predictors_of(right["state"])
    predictors = []
    for name in sorted(set(lp) | set(rp)):
        before, after = lp.get(name) or {}, rp.get(name) or {}
        b_instr = (before.get("signature") or {}).get("instructions")
        a_instr = (after.get("signature") or {}).get("instructions")
        b_demos, a_demos = before.get("demos") or [], after.get("demos") or []
        entry = changes["predictors"].get(name, {})
        predictors.append(
            {
                "name": name,
                "type": entry.get("type"),
                "signature": entry.get("signature"),
                "instructions_changed": b_instr != a_instr,
                "instructions_from": b_instr or "",
                "instructions_to": a_instr or "",
                "instructions_diff": word_diff(b_instr, a_instr),
                "demos_changed": b_demos != a_demos,
                "demos_from": [demo_text(d) for d in b_demos],
                "demos_to": [demo_text(d) for d in a_demos],
                "decoding": (
                    {"from": pretty(before.get("decoding")), "to": pretty(after.get("decoding"))}
                    if before.get("decoding") != after.get("decoding")
                    else None
                ),
                "config": (
                    {"from": pretty(before.get("config") or {}), "to": pretty(after.get("config") or {})}
                    if (before.get("config") or {}) != (after.get("config") or {})
                    else None
                ),
            }
        )
    same = (
        not changes.get("class")
        and not variables
        and not any(
            p[key]
            for p in predictors
            for key in ("type", "signature", "instructions_changed", "demos_changed", "decoding", "config")
        )
    )
    return {"class": changes.get("class"), "variables": variables, "predictors": predictors, "same": same}


# ---------------------------------------------------------------------- runs
def direction(name: str) -> str:
    """``minimize`` for measured values (cost, latency, tokens), else ``maximize``."""
    return MEASURED.get(name, "maximize")


def run_view(run: Mapping[str, Any]) -> dict[str, Any]:
    """The run page: trial table rows, the score plot and, for several objectives, the Pareto front."""
    trials = list(run["trial_list"])
    view: dict[str, Any] = {"trials": [], "plot": None, "pareto": None, "objectives": []}
    if trials:
        view["plot"] = trials_plot(trials)
    objectives = [n for n in (trials[0]["scores"] if trials else {}) if all(n in t["scores"] for t in trials)]
    front: list[int] = []
    if len(objectives) >= 2:
        directions = {n: direction(n) for n in objectives}
        front = pareto_front(trials, objectives, directions)
        minimized = [n for n in objectives if directions[n] == "minimize"]
        maximized = [n for n in objectives if directions[n] == "maximize"]
        y_name = maximized[0] if maximized else objectives[0]
        x_name = minimized[0] if minimized else next(n for n in objectives if n != y_name)
        view["pareto"] = pareto_plot(trials, x_name, y_name, front, directions)
        view["objectives"] = [{"name": n, "direction": directions[n]} for n in objectives]
    best = run.get("best_score")
    for t in trials:
        view["trials"].append(
            {
                **t,
                "variables": configuration_values(t["configuration"]),
                "on_front": int(t["number"]) in front,
                "is_best": best is not None and t.get("full", True) and t["score"] == best,
            }
        )
    return view


# ---------------------------------------------------------------------- evaluations
def interval(summary: Mapping[str, Any], score: float) -> dict[str, Any]:
    """The score's 95% confidence interval (normal approximation from the stored standard error)."""
    stderr = summary.get("stderr")
    if not isinstance(stderr, (int, float)):
        return {"half": None, "low": None, "high": None}
    half = Z95 * float(stderr)
    return {"half": half, "low": max(0.0, score - half), "high": min(100.0, score + half)}


def evaluation_rows(evaluation: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per-example rows: inputs, labels, prediction, score, error, latency, tokens and cost."""
    keys = set(evaluation["summary"].get("input_keys") or [])
    primary = f"score.{evaluation['metric']}"
    rows = []
    for raw in evaluation["results"]:
        example = {k[len("example.") :]: v for k, v in raw.items() if k.startswith("example.")}
        inputs = {k: v for k, v in example.items() if k in keys} if keys else example
        labels = {k: v for k, v in example.items() if k not in keys} if keys else {}
        scores = {k[len("score.") :]: v for k, v in raw.items() if k.startswith("score.")}
        score = raw.get(primary, next(iter(scores.values()), 0.0))
        rows.append(
            {
                "index": raw.get("index"),
                "inputs": {k: pretty(v) for k, v in inputs.items()},
                "labels": {k: pretty(v) for k, v in labels.items()},
                "prediction": {
                    k[len("prediction.") :]: pretty(v) for k, v in raw.items() if k.startswith("prediction.")
                },
                "score": float(score or 0.0),
                "scores": scores,
                "error": raw.get("error") or "",
                "latency": raw.get("latency", 0.0),
                "tokens": raw.get("tokens", 0),
                "cost": raw.get("cost", 0.0),
            }
        )
    return rows


def filter_rows(rows: Sequence[dict[str, Any]], show: str) -> list[dict[str, Any]]:
    """``all``, ``errors`` (the program or metric raised) or ``wrong`` (no error, score below full marks)."""
    if show == "errors":
        return [r for r in rows if r["error"]]
    if show == "wrong":
        return [r for r in rows if not r["error"] and r["score"] < 1.0]
    return list(rows)


def comparison(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """Two evaluations side by side: headline numbers, intervals, and examples matched by position."""
    ia, ib = interval(a["summary"], a["score"]), interval(b["summary"], b["score"])
    plot = interval_plot(
        [
            (f"A #{a['id']} {a['program']}", a["score"], ia["half"]),
            (f"B #{b['id']} {b['program']}", b["score"], ib["half"]),
        ]
    )
    ra, rb = evaluation_rows(a), evaluation_rows(b)
    pairs = []
    for left, right in zip(ra, rb):
        changed = "same"
        if left["score"] < right["score"]:
            changed = "better"
        elif left["score"] > right["score"]:
            changed = "worse"
        pairs.append({"a": left, "b": right, "change": changed})
    overlap = (
        ia["half"] is not None and ib["half"] is not None and not (ia["high"] < ib["low"] or ib["high"] < ia["low"])
    )
    return {
        "a_interval": ia,
        "b_interval": ib,
        "plot": plot,
        "pairs": pairs,
        "same_data": a["dataset"] == b["dataset"],
        "overlap": overlap,
        "counts": {k: sum(1 for p in pairs if p["change"] == k) for k in ("better", "worse", "same")},
        "unmatched": abs(len(ra) - len(rb)),
    }


# ---------------------------------------------------------------------- traces
def span_rows(spans: Sequence[Mapping[str, Any]], total: float) -> list[dict[str, Any]]:
    """Spans in tree order (each after its parent, depth-first), with depth and waterfall offsets in percent."""
    children: dict[Any, list[Mapping[str, Any]]] = {}
    ids = {s["id"] for s in spans}
    for span in spans:
        parent = span.get("parent") if span.get("parent") in ids else None
        children.setdefault(parent, []).append(span)
    end = max([total, *((s["start"] or 0.0) + (s["duration"] or 0.0) for s in spans)]) or 1.0
    rows: list[dict[str, Any]] = []

    def walk(parent: Any, depth: int) -> None:
        for span in sorted(children.get(parent, []), key=lambda s: s["start"]):
            duration = span.get("duration")
            rows.append(
                {
                    **span,
                    "depth": depth,
                    "offset": 100.0 * (span["start"] or 0.0) / end,
                    "width": max(0.4, 100.0 * (duration or 0.0) / end),
                    "unfinished": duration is None,
                }
            )
            walk(span["id"], depth + 1)

    walk(None, 0)
    return rows


# ---------------------------------------------------------------------- try it
def input_fields(program: Any) -> list[dict[str, Any]]:
    """The form of "try it": one entry per input (name, JSON type, description, required).

    The inputs the server takes for the program (:func:`elixirml.program.interface_of`): its
    input schema, a predictor's signature, or the parameters of its ``forward``.
    """
    json_schema = interface_of("program", program).input_schema()
    required = set(json_schema.get("required", []))
    return [
        {
            "name": name,
            "type": _json_type(spec),
            "description": spec.get("description") or "",
            "required": name in required,
        }
        for name, spec in json_schema.get("properties", {}).items()
    ]


def _json_type(spec: Mapping[str, Any]) -> str:
    kind = spec.get("type")
    if kind is None and "anyOf" in spec:
        kinds = [s.get("type") for s in spec["anyOf"] if s.get("type") != "null"]
        kind = kinds[0] if len(kinds) == 1 else "object"
    return str(kind or "string")


def coerce_inputs(fields: Sequence[Mapping[str, Any]], submitted: Mapping[str, Any]) -> dict[str, Any]:
    """The form's text values as the types the schema asks for (JSON for lists and objects).

    Raises:
        ValueError: a value that does not parse as its field's type, naming the field.
    """
    out: dict[str, Any] = {}
    for field in fields:
        name, kind = field["name"], field["type"]
        if name not in submitted:
            continue
        value = submitted[name]
        if kind == "boolean":
            out[name] = value in (True, "true", "on", "1", 1)
            continue
        if not isinstance(value, str):
            out[name] = value
            continue
        if value == "" and not field["required"]:
            continue
        try:
            if kind == "integer":
                out[name] = int(value)
            elif kind == "number":
                out[name] = float(value)
            elif kind in ("array", "object"):
                out[name] = json.loads(value)
            else:
                out[name] = value
        except ValueError as exc:
            raise ValueError(f"Input {name!r} must be {kind}: {exc}") from None
    return out
