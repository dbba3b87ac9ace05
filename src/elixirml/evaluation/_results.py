"""What an evaluation produced: each example's result, the aggregates and reports, and comparing two evaluations."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError
from ..lm import Usage
from ..schema import Example

MEASURED = {"cost": "minimize", "latency": "minimize", "tokens": "minimize"}


@dataclasses.dataclass
class ExampleResult:
    """The outcome for one example.

    Attributes:
        index: position in the dataset.
        example: the example.
        prediction: the program's output (None when it failed).
        score: the primary metric's score (0.0 when the example failed).
        scores: every metric's score by name.
        error: the exception (program or metric), or None.
        latency: seconds spent on the example.
        usage: token usage of its LM calls.
        cost: dollars spent on its LM calls.
        resumed: whether it was read back from a checkpoint instead of run.
        metric_failed: whether ``error`` was raised by the metric (the program's output is
            kept in ``prediction``); a failed metric is not a wrong answer.
        feedback: the text the primary metric returned with its score (an
            :class:`~elixirml.Feedback`), or None.
        trace: the predictor calls of the run (``TraceEntry`` list) when the evaluation was
            asked to keep them (``keep_traces=True``), else None.
    """

    index: int
    example: Example
    prediction: Any
    score: float
    scores: dict[str, float]
    error: BaseException | None
    latency: float
    usage: dict[str, Any]
    cost: float
    resumed: bool = False
    metric_failed: bool = False
    feedback: str | None = None
    trace: list[Any] | None = None

    def __iter__(self) -> Iterator[Any]:
        """DSPy's view of a result: ``for example, prediction, score in result.results``."""
        return iter((self.example, self.prediction, self.score))


def _from_triple(index: int, triple: tuple[Any, Any, Any], metric: str) -> ExampleResult:
    """DSPy's ``(example, prediction, score)`` as an :class:`ExampleResult`."""
    example, prediction, score = triple
    value = float(score)
    return ExampleResult(index, example, prediction, value, {metric: value}, None, 0.0, {}, 0.0)


def write_csv(path: str | os.PathLike[str], rows: Sequence[Mapping[str, Any]], cell: Any) -> Path:
    """Write ``rows`` as CSV (the columns in the order they first appear; ``cell(value)`` writes a value)."""
    import csv

    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    target = Path(path)
    with target.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: cell(v) for k, v in row.items()})
    return target


def _stderr(values: Sequence[float]) -> float:
    n = len(values)
    if n < 2:
        return 0.0
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)


@dataclasses.dataclass(init=False, repr=False)
class EvaluationResult:
    """Everything an evaluation produced, in input order.

    ``repr()`` is DSPy's (``EvaluationResult(score=..., results=<list of N results>)``);
    ``str()`` (and ``print``) gives the summary: score and standard error, errors, tokens,
    cost and time.

    Args:
        results: :class:`ExampleResult` objects, or DSPy's ``(example, prediction, score)``
            triples (then they are numbered in order, without usage or timings).
        metric_names: names of the metrics (default ``["metric"]``).
        directions: ``"maximize"``/``"minimize"`` per metric (default: maximize).
        aggregates: the aggregate of each metric (default: the mean of the scores).
        wall_time: seconds the evaluation took.
        total: how many examples were asked for (default: as many as ``results``).
        stopped: True when ``max_errors`` stopped the run early.
        score: DSPy's keyword: the primary score in percent, instead of ``aggregates``.

    Attributes:
        results: one :class:`ExampleResult` per finished example, in input order.
        metric_names: names of the metrics (the first is the primary one).
        directions: ``"maximize"``/``"minimize"`` per metric.
        aggregates: the aggregate of each metric (not scaled).
        wall_time: seconds the evaluation took.
        total: how many examples were asked for.
        stopped: True when ``max_errors`` stopped the run early.
    """

    results: list[ExampleResult]
    metric_names: list[str]
    directions: dict[str, str]
    aggregates: dict[str, float]
    wall_time: float
    total: int
    stopped: bool

    def __init__(
        self,
        results: Sequence[ExampleResult | tuple[Any, Any, Any]],
        metric_names: Sequence[str] | None = None,
        directions: Mapping[str, str] | None = None,
        aggregates: Mapping[str, float] | None = None,
        wall_time: float = 0.0,
        total: int | None = None,
        stopped: bool = False,
        *,
        score: float | None = None,
    ) -> None:
        self.metric_names = list(metric_names or ["metric"])
        primary = self.metric_names[0]
        self.results = [
            r if isinstance(r, ExampleResult) else _from_triple(i, r, primary) for i, r in enumerate(results)
        ]
        self.directions = dict(directions or dict.fromkeys(self.metric_names, "maximize"))
        if aggregates is None:
            scores = [r.score for r in self.results]
            aggregates = {primary: score / 100.0 if score is not None else sum(scores) / max(len(scores), 1)}
        self.aggregates = dict(aggregates)
        self.wall_time = wall_time
        self.total = len(self.results) if total is None else total
        self.stopped = stopped

    @property
    def score(self) -> float:
        """The primary metric, aggregated over finished examples (failed ones score 0), in percent."""
        return 100.0 * self.aggregates.get(self.metric_names[0], 0.0)

    def metric(self, name: str) -> float:
        """The aggregate of metric ``name`` (not scaled)."""
        return self.aggregates[name]

    @property
    def stderr(self) -> float:
        """Standard error of the primary score, in percent."""
        return 100.0 * _stderr([r.score for r in self.results])

    @property
    def errors(self) -> int:
        """How many examples failed (program or metric error)."""
        return sum(1 for r in self.results if r.error is not None)

    @property
    def metric_errors(self) -> int:
        """How many examples the metric raised on (counted in :attr:`errors`, scored 0)."""
        return sum(1 for r in self.results if r.metric_failed)

    @property
    def usage(self) -> Usage:
        """Token usage summed over every example."""
        total = Usage()
        for r in self.results:
            total.add(Usage.from_dict(r.usage))
        return total

    @property
    def cost(self) -> float:
        """Dollars spent."""
        return sum(r.cost for r in self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __repr__(self) -> str:
        return f"EvaluationResult(score={self.score}, results=<list of {len(self.results)} results>)"

    def __str__(self) -> str:
        usage = self.usage
        return (
            f"EvaluationResult(score={self.score:.1f}% ± {self.stderr:.1f}, n={len(self.results)}/{self.total}, "
            f"errors={self.errors}{f' (metric failed on {self.metric_errors})' if self.metric_errors else ''}, "
            f"tokens={usage.total_tokens}, cost=${self.cost:.4f}, "
            f"time={self.wall_time:.1f}s{', stopped early' if self.stopped else ''})"
        )

    # ------------------------------------------------------------------ reports
    def rows(self) -> list[dict[str, Any]]:
        """One flat dict per example (inputs, outputs, scores, error, latency, tokens, cost)."""
        out = []
        for r in self.results:
            row: dict[str, Any] = {"index": r.index}
            row.update({f"example.{k}": v for k, v in r.example.items()})
            if isinstance(r.prediction, (Example, Mapping)):
                row.update({f"prediction.{k}": v for k, v in dict(r.prediction.items()).items()})
            row.update({f"score.{k}": v for k, v in r.scores.items()})
            if r.feedback is not None:
                row["feedback"] = r.feedback
            row.update(
                {
                    "error": f"{type(r.error).__name__}: {r.error}" if r.error else "",
                    "latency": round(r.latency, 4),
                    "tokens": r.usage.get("total_tokens", 0),
                    "cost": r.cost,
                }
            )
            out.append(row)
        return out

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`rows` as CSV."""
        return write_csv(path, self.rows(), lambda v: json.dumps(v, default=str) if isinstance(v, (list, dict)) else v)

    def summary(self) -> dict[str, Any]:
        """The headline numbers as a dict."""
        usage = self.usage
        return {
            "score": self.score,
            "stderr": self.stderr,
            "metrics": dict(self.aggregates),
            "n": len(self.results),
            "total": self.total,
            "errors": self.errors,
            "program_errors": self.errors - self.metric_errors,
            "metric_errors": self.metric_errors,
            "tokens": usage.total_tokens,
            "lm_calls": usage.calls,
            "cost": self.cost,
            "wall_time": self.wall_time,
            "stopped": self.stopped,
        }

    def to_json(self, path: str | os.PathLike[str] | None = None) -> str:
        """The summary and rows as JSON; written to ``path`` when given."""
        text = json.dumps({"summary": self.summary(), "results": self.rows()}, default=str, indent=2)
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    def to_pandas(self) -> Any:
        """The rows as a pandas DataFrame (needs pandas)."""
        try:
            import pandas as pd
        except ImportError:
            from ..errors import MissingDependencyError

            raise MissingDependencyError("pandas", "pandas", "EvaluationResult.to_pandas") from None
        return pd.DataFrame(self.rows())

    def table(self, limit: int = 20) -> str:
        """A text table of the first ``limit`` examples and the summary."""
        lines = [str(self)]
        for r in self.results[:limit]:
            inputs = ", ".join(
                f"{k}={str(v)[:30]!r}"
                for k, v in (r.example.inputs().items() if r.example.input_keys else r.example.items())
            )
            outcome = f"error {type(r.error).__name__}" if r.error else f"score {r.score:.2f}"
            lines.append(f"  #{r.index:<4} {outcome:<22} {inputs}")
        if len(self.results) > limit:
            lines.append(f"  ... {len(self.results) - limit} more")
        return "\n".join(lines)


def compare(
    a: EvaluationResult, b: EvaluationResult, *, n_boot: int = 2000, seed: int = 0, confidence: float = 0.95
) -> dict[str, float]:
    """Paired bootstrap comparison of two evaluations on the same examples.

    Returns the mean difference ``b - a`` of the primary scores (in percentage points), its
    confidence interval, and the share of resamples in which ``b`` beats ``a``.
    """
    import random

    left = {r.index: r.score for r in a.results}
    right = {r.index: r.score for r in b.results}
    common = sorted(set(left) & set(right))
    if not common:
        raise ConfigurationError("compare needs two evaluations over the same examples")
    diffs = [right[i] - left[i] for i in common]
    rng = random.Random(seed)
    means = []
    for _ in range(n_boot):
        sample = [diffs[rng.randrange(len(diffs))] for _ in diffs]
        means.append(sum(sample) / len(sample))
    means.sort()
    tail = (1 - confidence) / 2
    low = means[int(tail * n_boot)]
    high = means[min(n_boot - 1, int((1 - tail) * n_boot))]
    return {
        "difference": 100 * sum(diffs) / len(diffs),
        "ci_low": 100 * low,
        "ci_high": 100 * high,
        "p_b_better": sum(1 for m in means if m > 0) / n_boot,
        "n": len(common),
    }
