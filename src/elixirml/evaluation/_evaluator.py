"""``Evaluate``: the class form of :func:`evaluate`, with DSPy's keyword names, tables and result files."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import ConfigurationError
from ..runtime import run_sync
from ..schema import Example
from ._results import EvaluationResult
from ._runner import aevaluate


class Evaluate:
    """Class form of :func:`evaluate`, with DSPy's keyword names.

    Args:
        devset: the examples.
        metric: the primary metric.
        concurrency: examples in flight at once (``num_threads`` is DSPy's name; both are
            readable and settable as attributes).
        num_threads: same as ``concurrency``.
        display_progress: show a progress bar.
        display_table: print a table of the results after the run (an int: that many rows;
            ``True``: 20).
        max_errors: stop after more than this many failures.
        save_as_csv: write the results to this CSV file after the run.
        save_as_json: write the summary and results to this JSON file after the run.
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
        self.concurrency = concurrency or num_threads or 16
        self.display_progress = display_progress
        self.display_table = display_table
        self.max_errors = max_errors
        self.save_as_csv = save_as_csv
        self.save_as_json = save_as_json
        self.return_all_scores = return_all_scores
        self.kwargs = kwargs

    @property
    def num_threads(self) -> int:
        """DSPy's name for :attr:`concurrency`."""
        return self.concurrency

    @num_threads.setter
    def num_threads(self, value: int) -> None:
        self.concurrency = value

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
        self, result: EvaluationResult, display_table: Any, save_as_csv: Any, save_as_json: Any
    ) -> EvaluationResult:
        table = self.display_table if display_table is None else display_table
        if table:
            print(result.table(20 if table is True else int(table)))
        csv_path = save_as_csv if save_as_csv is not None else self.save_as_csv
        if csv_path is not None:
            result.to_csv(csv_path)
        json_path = save_as_json if save_as_json is not None else self.save_as_json
        if json_path is not None:
            result.to_json(json_path)
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
        result = await aevaluate(program, examples, metric or self.metric, **self._options(overrides))
        return self._report(result, display_table, save_as_csv, save_as_json)
