"""``Evaluate``: the class form of :func:`evaluate`, with DSPy's keyword names, tables and result files."""

from __future__ import annotations

import json
import os
import types
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pydantic

from ..errors import ConfigurationError
from ..runtime import run_sync
from ..schema import Example
from ._results import EvaluationResult, write_csv
from ._runner import aevaluate


class Evaluate:
    """Class form of :func:`evaluate`, with DSPy's keyword names.

    Args:
        devset: the examples.
        metric: the primary metric.
        concurrency: examples in flight at once (default 16; ``num_threads`` is DSPy's name).
        num_threads: same as ``concurrency``; the attribute reads what was given (None when
            neither was, as in DSPy) and setting it sets the concurrency.
        display_progress: show a progress bar.
        display_table: print a table of the results after the run (an int: that many rows;
            ``True``: 20).
        max_errors: stop after more than this many failures.
        save_as_csv: write the results to this CSV file after the run, in DSPy's layout: one row
            per example, its fields, the prediction's (``example_``/``pred_`` prefixes where
            both have a field) and a column named after the metric.
        save_as_json: write the same rows to this JSON file (a list of objects), as DSPy does.
            ElixirML's own report (summary and flat rows) is ``result.to_json(path)`` /
            ``result.to_csv(path)``.
        return_all_scores: accepted for DSPy code; every score is always in ``result.results``.
        **kwargs: more options of :func:`evaluate` (``metrics``, ``checkpoint``).

    Calling it returns an :class:`EvaluationResult`: ``result.score`` is the percentage and
    ``result.results`` iterates as DSPy's ``(example, prediction, score)`` triples.

    Raises:
        ConfigurationError: ``return_outputs=`` (removed in DSPy 3: read ``result.results``).
    """

    def __init__(
        self,
        *,
        devset: Iterable[Example | Mapping[str, Any]],
        metric: Any = None,
        concurrency: int | None = None,
        num_threads: int | None = None,
        display_progress: bool | None = None,
        display_table: bool | int = False,
        max_errors: int | None = None,
        save_as_csv: str | os.PathLike[str] | None = None,
        save_as_json: str | os.PathLike[str] | None = None,
        return_all_scores: bool = False,
        **kwargs: Any,
    ) -> None:
        if "return_outputs" in kwargs:
            raise ConfigurationError(
                "Evaluate(return_outputs=...) is not supported (DSPy 3 removed it too): the outputs are always in "
                "the result; iterate result.results for (example, prediction, score)."
            )
        self.devset = list(devset)
        self.metric = metric
        self._num_threads = num_threads if num_threads is not None else concurrency
        self.concurrency = self._num_threads or 16
        self.display_progress = display_progress
        self.display_table = display_table
        self.max_errors = max_errors
        self.save_as_csv = save_as_csv
        self.save_as_json = save_as_json
        self.return_all_scores = return_all_scores
        self.kwargs = kwargs

    @property
    def num_threads(self) -> int | None:
        """DSPy's name for the concurrency asked for: None when neither it nor ``concurrency`` was given."""
        return self._num_threads

    @num_threads.setter
    def num_threads(self, value: int | None) -> None:
        self._num_threads = value
        self.concurrency = value or 16

    def _options(self, overrides: dict[str, Any]) -> dict[str, Any]:
        options = {
            "concurrency": self.concurrency,
            "display_progress": self.display_progress,
            "max_errors": self.max_errors,
            **self.kwargs,
        }
        if overrides.get("num_threads") is not None:
            overrides["concurrency"] = overrides["num_threads"]
        overrides.pop("num_threads", None)
        options.update({k: v for k, v in overrides.items() if v is not None or k not in options})
        return options

    def _report(
        self, result: EvaluationResult, metric: Any, display_table: Any, save_as_csv: Any, save_as_json: Any
    ) -> EvaluationResult:
        table = self.display_table if display_table is None else display_table
        if table:
            print(result.table(20 if table is True else int(table)))
        csv_path = save_as_csv if save_as_csv is not None else self.save_as_csv
        json_path = save_as_json if save_as_json is not None else self.save_as_json
        if csv_path is None and json_path is None:
            return result
        rows = dspy_rows(result, metric_name(metric))
        if csv_path is not None:
            write_csv(csv_path, rows, _cell)
        if json_path is not None:
            Path(json_path).write_text(json.dumps([_plain(row) for row in rows]), encoding="utf-8")
        return result

    def __call__(
        self,
        program: Any,
        metric: Any = None,
        devset: Iterable[Example | Mapping[str, Any]] | None = None,
        *,
        display_table: bool | int | None = None,
        save_as_csv: str | os.PathLike[str] | None = None,
        save_as_json: str | os.PathLike[str] | None = None,
        **overrides: Any,
    ) -> EvaluationResult:
        """Evaluate ``program`` (optionally on another ``devset`` or with another ``metric``).

        DSPy's per-call options (``num_threads``, ``display_progress``, ``display_table``,
        ``save_as_csv``, ``save_as_json``) override the ones given to the constructor.
        """
        return run_sync(
            self.acall(
                program,
                metric,
                devset,
                display_table=display_table,
                save_as_csv=save_as_csv,
                save_as_json=save_as_json,
                **overrides,
            )
        )

    async def acall(
        self,
        program: Any,
        metric: Any = None,
        devset: Iterable[Example | Mapping[str, Any]] | None = None,
        *,
        display_table: bool | int | None = None,
        save_as_csv: str | os.PathLike[str] | None = None,
        save_as_json: str | os.PathLike[str] | None = None,
        **overrides: Any,
    ) -> EvaluationResult:
        """Evaluate asynchronously (same options as calling it)."""
        examples = self.devset if devset is None else list(devset)
        metric = metric or self.metric
        result = await aevaluate(program, examples, metric, **self._options(overrides))
        return self._report(result, metric, display_table, save_as_csv, save_as_json)


def metric_name(metric: Any) -> str:
    """The column DSPy names a metric's scores by: a function's name, else the metric's class name."""
    if isinstance(metric, types.FunctionType):
        return metric.__name__
    return type(metric).__name__


def dspy_rows(result: EvaluationResult, metric: str) -> list[dict[str, Any]]:
    """One dict per example as DSPy's ``Evaluate`` writes them to its CSV and JSON files.

    The example's fields, then the prediction's (a field both have is written twice, as
    ``example_<name>`` and ``pred_<name>``; a prediction that is not dict-like is one
    ``prediction`` column), then the score under the metric's name. A failed example has an
    empty prediction and scores 0.
    """
    rows = []
    for r in result.results:
        example = r.example.toDict()
        prediction = r.prediction if r.prediction is not None else {}
        if callable(getattr(prediction, "items", None)):
            predicted = dict(prediction.items())
            row = {(f"example_{k}" if k in predicted else k): v for k, v in example.items()}
            row.update({(f"pred_{k}" if k in example else k): v for k, v in predicted.items()})
        else:
            row = {**example, "prediction": prediction}
        row[metric] = r.score
        rows.append(row)
    return rows


def _plain(value: Any) -> Any:
    """A value as JSON data: models and examples as their fields, containers walked, the rest as text."""
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Example):
        return _plain(value.toDict())
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _cell(value: Any) -> Any:
    """A CSV cell: text and numbers as they are, anything else as JSON."""
    return value if value is None or isinstance(value, (str, int, float)) else json.dumps(_plain(value))
