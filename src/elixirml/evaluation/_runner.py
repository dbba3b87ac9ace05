"""Concurrent evaluation of a program over a dataset: async tasks, nothing lost, resumable."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import os
import time
import warnings
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..data import example_record
from ..errors import BudgetExceededError, ConfigurationError, LoadError, UserError
from ..lm import track_usage
from ..program import trace as open_trace
from ..runtime import ProgramSpec, ProgressDisplay, instrument_async, resolve_executor, run_sync, stream_bounded
from ..schema import Example, Prediction
from ._feedback import finite_score, split_feedback
from ._metrics import Metric, as_metric
from ._results import MEASURED, EvaluationResult, ExampleResult


def example_key(example: Example) -> str:
    """A stable identity of an example (for checkpoints)."""
    return hashlib.sha256(example_record(example)).hexdigest()[:32]


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def checkpoint_fingerprint(program: Any, metric_names: Sequence[str]) -> dict[str, str]:
    """What produced a checkpoint's records: the program's state, its signatures, and the metrics.

    Every record carries it; resuming compares it part by part, so a checkpoint written by
    another program (other demos, instructions, LM settings), another signature or another
    metric is not silently reused.
    """
    dump = getattr(program, "dump_state", None)
    state = dump() if callable(dump) else {}
    named = getattr(program, "named_predictors", None)
    signatures = (
        {name: str(getattr(p.signature, "signature", p.signature)) for name, p in named()} if callable(named) else {}
    )
    return {
        "program": f"{type(program).__name__}:{_digest(state)}",
        "signature": _digest(signatures),
        "metric": ",".join(metric_names),
    }


_RECORD_TYPES: dict[str, tuple[type, ...]] = {
    "key": (str,),
    "score": (int, float),
    "scores": (dict,),
    "prediction": (dict, type(None)),
    "latency": (int, float),
    "usage": (dict,),
}


def _valid_record(record: Any) -> bool:
    if not isinstance(record, dict):
        return False
    if not all(isinstance(record.get(name), kinds) for name, kinds in _RECORD_TYPES.items()):
        return False
    scores = record["scores"]
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in scores.values()) and isinstance(
        record.get("cost", 0.0), (int, float)
    )


def _record_json(key: str, result: ExampleResult, fingerprint: Mapping[str, str]) -> dict[str, Any]:
    prediction = dict(result.prediction.items()) if isinstance(result.prediction, (Example, Mapping)) else None
    record = {
        "key": key,
        "score": result.score,
        "scores": result.scores,
        "prediction": prediction,
        "error": f"{type(result.error).__name__}: {result.error}" if result.error else None,
        "latency": result.latency,
        "usage": result.usage,
        "cost": result.cost,
        "feedback": result.feedback,
        "fingerprint": dict(fingerprint),
    }
    loaded: dict[str, Any] = json.loads(json.dumps(record, default=str))
    return loaded


def _accept(
    where: str, records: Iterable[tuple[str, Any]], fingerprint: Mapping[str, str], resume: bool | str
) -> dict[str, dict[str, Any]]:
    """The finished, well-formed records that this program, signature and metric may reuse.

    Malformed records are reported in one warning (their examples run again). A record written
    by something else raises, naming what differs, unless ``resume="force"``.
    """
    done: dict[str, dict[str, Any]] = {}
    malformed: list[str] = []
    if resume is False:
        return done
    for label, record in records:
        if not _valid_record(record):
            malformed.append(label)
            continue
        theirs = record.get("fingerprint")
        if resume != "force" and theirs is not None and theirs != dict(fingerprint):
            differs = [
                f"{part} ({theirs.get(part)!r} there, {fingerprint[part]!r} now)"
                for part in fingerprint
                if not isinstance(theirs, dict) or theirs.get(part) != fingerprint[part]
            ]
            raise ConfigurationError(
                f"Checkpoint {where} was written by another program or metric: {', '.join(differs)} differ. "
                "Use another checkpoint, or pass resume='force' to reuse its results anyway "
                "(resume=False ignores them)."
            )
        if record.get("error") is None:
            done[record["key"]] = record
    if malformed:
        shown = ", ".join(malformed[:10]) + (f" and {len(malformed) - 10} more" if len(malformed) > 10 else "")
        warnings.warn(
            f"Checkpoint {where}: ignored {len(malformed)} malformed record(s) ({shown}); their examples run again.",
            RuntimeWarning,
            stacklevel=5,
        )
    return done


class _Checkpoint:
    """Finished examples appended to a JSON Lines file as they complete."""

    def __init__(self, path: str | os.PathLike[str], fingerprint: Mapping[str, str], resume: bool | str = True) -> None:
        self.path = Path(path)
        self.fingerprint = dict(fingerprint)
        lines: list[tuple[str, Any]] = []
        if self.path.exists():
            data = self.path.read_bytes()
            complete = data.rfind(b"\n") + 1
            if complete < len(data):
                # a last line cut short by a crash: drop it (that example runs again) so the
                # next record starts on a line of its own
                with self.path.open("r+b") as handle:
                    handle.truncate(complete)
            for number, raw in enumerate(data[:complete].decode("utf-8", errors="replace").splitlines(), 1):
                if not raw.strip():
                    continue
                try:
                    lines.append((f"line {number}", json.loads(raw)))
                except json.JSONDecodeError:
                    lines.append((f"line {number}", None))
        self.done = _accept(str(self.path), lines, self.fingerprint, resume)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = self.path.open("a", encoding="utf-8")

    def write(self, key: str, result: ExampleResult) -> None:
        self._handle.write(json.dumps(_record_json(key, result, self.fingerprint)) + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


class _StoreCheckpoint:
    """Finished examples kept in the store, one row each, committed as they complete."""

    def __init__(self, store: Any, name: str, fingerprint: Mapping[str, str], resume: bool | str = True) -> None:
        self.store = store
        self.name = name
        self.fingerprint = dict(fingerprint)
        rows = [(f"key {k}", r) for k, r in store.checkpoint_records(name).items()]
        self.done = _accept(f"{name!r} in {store!r}", rows, self.fingerprint, resume)

    def write(self, key: str, result: ExampleResult) -> None:
        self.store.add_checkpoint_record(self.name, key, _record_json(key, result, self.fingerprint))

    def close(self) -> None:
        """Nothing to release: every row is already committed."""


def _open_checkpoint(
    checkpoint: Any, program: Any, examples: list[Example], metric_names: Sequence[str], resume: bool | str = True
) -> Any:
    if checkpoint is None:
        return None
    if resume not in (True, False, "force"):
        raise ConfigurationError(f"resume= takes True, False or 'force', got {resume!r}")
    fingerprint = checkpoint_fingerprint(program, metric_names)
    if isinstance(checkpoint, (str, os.PathLike)):
        return _Checkpoint(checkpoint, fingerprint, resume)
    store, name = checkpoint if isinstance(checkpoint, tuple) else (checkpoint, None)
    if not hasattr(store, "checkpoint_records"):
        raise ConfigurationError("checkpoint= takes a file path, a Store, or a (Store, name) pair")
    if name is None:
        from ..data import Dataset

        name = f"{type(program).__name__}:{metric_names[0]}:{Dataset(examples).fingerprint()[:16]}"
    return _StoreCheckpoint(store, name, fingerprint, resume)


def _progress(total: int, enabled: bool | None, resumed: int) -> ProgressDisplay:
    """The evaluation's display: the bar with the running score, or lines with the count to run first."""
    enabled = enabled if total else False
    progress = ProgressDisplay("evaluate", enabled, total=total, unit="examples", label="evaluating")
    if progress.plain:
        progress.note(f"evaluate: {total - resumed} examples to run" + (f" ({resumed} resumed)" if resumed else ""))
    progress.update(resumed)
    return progress


def _status(done: int, score_sum: float, errors: int) -> str:
    return f"score {100 * score_sum / max(done, 1):.1f}%" + (f" errors {errors}" if errors else "")


def _resolve_metrics(metric: Any, metrics: Mapping[str, Any] | None) -> list[tuple[str, Metric | str]]:
    resolved: list[tuple[str, Metric | str]] = []
    if metric is not None:
        m = as_metric(metric)
        resolved.append((m.name, m))
    for name, value in (metrics or {}).items():
        if isinstance(value, str):
            if value not in MEASURED:
                raise ConfigurationError(f"Measured metric {value!r} unknown; use one of {sorted(MEASURED)}")
            resolved.append((name, value))
        else:
            resolved.append((name, as_metric(value)))
    if not resolved:
        raise ConfigurationError("evaluate needs a metric")
    names = [n for n, _ in resolved]
    if len(set(names)) != len(names):
        raise ConfigurationError(f"Metric names must be unique, got {names}")
    return resolved


async def _score(metric: Metric, example: Example, prediction: Any, trace: Any) -> tuple[float, str | None]:
    """The metric's score and the feedback text it returned with it (None for a bare number)."""
    value = metric.calculate(example, prediction, trace)
    if asyncio.iscoroutine(value) or isinstance(value, Awaitable):
        value = await value
    score, feedback = split_feedback(value)
    return finite_score(score, metric.name), feedback


async def run_example(
    program: Any,
    index: int,
    example: Example,
    *,
    metrics: Sequence[tuple[str, Metric | str]],
    keep_traces: bool = False,
) -> ExampleResult:
    """Run ``program`` on one example and score it with every metric (the first is the primary one).

    This is what an evaluation does per example, here or on a distributed worker.
    """
    primary = metrics[0][0]
    inputs = example.inputs() if example.input_keys is not None else example
    began = time.perf_counter()
    prediction: Any = None
    error: BaseException | None = None
    scores: dict[str, float] = {}
    feedback: str | None = None
    metric_failed = False
    with track_usage() as usage, open_trace() as entries:
        try:
            prediction = await program.acall(**dict(inputs.items()))
        except BudgetExceededError as exc:
            error = exc
        except UserError:  # a setup mistake (no LM, a missing extra, a bad signature) stops the run
            raise
        except Exception as exc:
            error = exc
    latency = time.perf_counter() - began
    if error is None:
        for name, m in metrics:
            if isinstance(m, str):
                scores[name] = {"cost": usage.cost, "latency": latency, "tokens": float(usage.total_tokens)}[m]
                continue
            try:
                scores[name], text = await _score(m, example, prediction, entries)
            except UserError:
                raise
            except Exception as exc:
                error = exc
                metric_failed = True
                break
            if name == primary:
                feedback = text
    if error is not None:
        scores = {name: 0.0 for name, _ in metrics}
    return ExampleResult(
        index=index,
        example=example,
        prediction=prediction,
        score=scores.get(primary, 0.0),
        scores=scores,
        error=error,
        latency=latency,
        usage=usage.as_dict(),
        cost=usage.cost,
        metric_failed=metric_failed,
        feedback=feedback,
        trace=list(entries) if keep_traces else None,
    )


@instrument_async("evaluate", instance="program")
async def aevaluate(
    program: Any,
    devset: Iterable[Example | Mapping[str, Any]],
    metric: Any = None,
    *,
    metrics: Mapping[str, Any] | None = None,
    concurrency: int = 16,
    max_errors: int | None = None,
    checkpoint: Any = None,
    display_progress: bool | None = None,
    on_result: Callable[[ExampleResult], None] | None = None,
    record: bool = True,
    resume: bool | str = True,
    keep_traces: bool = False,
    executor: Any = None,
) -> EvaluationResult:
    """Evaluate ``program`` on ``devset`` with asyncio tasks (see :func:`evaluate`)."""
    runner = resolve_executor(executor)
    examples = [e if isinstance(e, Example) else Example(e) for e in devset]
    resolved = _resolve_metrics(metric, metrics)
    store = _open_checkpoint(checkpoint, program, examples, [n for n, _ in resolved], resume)
    results: dict[int, ExampleResult] = {}
    keys = [example_key(e) for e in examples] if store is not None else []
    start = time.perf_counter()

    if store is not None:
        for index, key in enumerate(keys):
            saved = store.done.get(key)
            if saved is not None:
                results[index] = ExampleResult(
                    index=index,
                    example=examples[index],
                    prediction=Prediction(saved["prediction"] or {}),
                    score=float(saved["score"]),
                    scores={k: float(v) for k, v in saved["scores"].items()},
                    error=None,
                    latency=float(saved["latency"]),
                    usage=saved["usage"],
                    cost=float(saved.get("cost", 0.0)),
                    resumed=True,
                    feedback=saved["feedback"] if isinstance(saved.get("feedback"), str) else None,
                )

    pending = [i for i in range(len(examples)) if i not in results]
    progress = _progress(len(examples), display_progress, len(results))
    score_sum = sum(r.score for r in results.values())
    errors = 0
    stopped = False
    try:
        outcomes: AsyncGenerator[tuple[int, Any], None]
        if runner is None:
            jobs = [
                (lambda i=i: run_example(program, i, examples[i], metrics=resolved, keep_traces=keep_traces))
                for i in pending
            ]
            outcomes = stream_bounded(jobs, concurrency)
        else:
            work = functools.partial(run_example, metrics=resolved, keep_traces=keep_traces)
            items = [(i, examples[i]) for i in pending]
            outcomes = runner.stream(ProgramSpec.of(program), work, items, concurrency=concurrency)
        async with contextlib.aclosing(outcomes):
            async for _, outcome in outcomes:
                assert isinstance(outcome, ExampleResult)
                outcome.example = examples[outcome.index]
                results[outcome.index] = outcome
                if store is not None:
                    store.write(keys[outcome.index], outcome)
                if on_result is not None:
                    on_result(outcome)
                score_sum += outcome.score
                errors += outcome.error is not None
                progress.update(len(results), _status(len(results), score_sum, errors))
                if max_errors is not None and errors > max_errors:
                    stopped = True
                    break
    finally:
        progress.close()
        if progress.plain:
            progress.note(
                f"evaluate: done in {progress.elapsed():.0f}s: {len(results)} examples; "
                + _status(len(results), score_sum, errors)
            )
        if store is not None:
            store.close()
    ordered = [results[i] for i in sorted(results)]
    aggregates: dict[str, float] = {}
    directions: dict[str, str] = {}
    for name, m in resolved:
        values = [r.scores.get(name, 0.0) for r in ordered]
        if isinstance(m, str):
            aggregates[name] = sum(values) / len(values) if values else 0.0
            directions[name] = MEASURED[m]
        else:
            aggregates[name] = m.aggregate(values)
            directions[name] = m.direction
    evaluation = EvaluationResult(
        results=ordered,
        metric_names=[n for n, _ in resolved],
        directions=directions,
        aggregates=aggregates,
        wall_time=time.perf_counter() - start,
        total=len(examples),
        stopped=stopped,
    )
    _warn_metric_errors(evaluation)
    if record:
        _record(program, examples, evaluation)
    return evaluation


def _warn_metric_errors(evaluation: EvaluationResult) -> None:
    """Say out loud that the metric raised: those examples score 0 without being wrong."""
    failed = [r for r in evaluation.results if r.metric_failed]
    if not failed:
        return
    first = failed[0]
    warnings.warn(
        f"The metric {evaluation.metric_names[0]!r} raised on {len(failed)} of {len(evaluation.results)} examples "
        f"(scored 0, counted in result.metric_errors, not as wrong answers); the first, example #{first.index}: "
        f"{type(first.error).__name__}: {first.error}. Fix the metric: it is called metric(example, prediction), "
        "with trace= when it takes one.",
        RuntimeWarning,
        stacklevel=2,
    )


def _record(program: Any, examples: list[Example], result: EvaluationResult) -> None:
    """Write the evaluation to the configured store, if there is one."""
    from ..data import Dataset
    from ..program import configured_store

    store = configured_store()
    if store is None:
        return
    try:
        rows = json.loads(json.dumps(result.rows(), default=str))
        summary = json.loads(json.dumps(result.summary(), default=str))
        keys = examples[0].input_keys if examples else None
        summary["input_keys"] = sorted(keys) if keys else []  # which example.* columns are inputs
        stored = getattr(program, "__dict__", {}).get("_elixirml_stored")  # set by Store.save / load
        version_id = None
        if stored is not None:
            try:
                version_id = store.get_version(stored[0], stored[1])["id"]
            except LoadError:  # saved in another store than the one configured
                version_id = None
        store.add_evaluation(
            program_name=stored[0] if stored is not None else type(program).__name__,
            dataset_fingerprint=Dataset(examples).fingerprint(),
            metric=result.metric_names[0],
            score=result.score,
            n=len(result.results),
            errors=result.errors,
            summary=summary,
            results=rows,
            version_id=version_id,
        )
    finally:
        store.close()


def evaluate(
    program: Any,
    devset: Iterable[Example | Mapping[str, Any]],
    metric: Any = None,
    **kwargs: Any,
) -> EvaluationResult:
    """Evaluate ``program`` on ``devset``: concurrent async tasks, every result kept in input order.

    Options (keywords):
        program: any Module (called with each example's inputs).
        devset: examples (with inputs marked) or dicts.
        metric: the primary metric (function or :class:`~elixirml.metrics.Metric`).
        metrics: more metrics by name; the strings ``"cost"``, ``"latency"`` and ``"tokens"``
            name measured values (to minimize).
        concurrency: examples in flight at once.
        max_errors: stop after more than this many failures (everything finished is returned).
        checkpoint: a JSON Lines file path, an ``em.Store`` or a ``(store, name)`` pair; finished
            examples are written as they complete, and a re-run with the same checkpoint
            evaluates only the examples missing from it (failed ones are tried again). Each
            record carries a fingerprint of the program's state, signature and metrics.
        resume: ``True`` (default) reuses a checkpoint's results when its fingerprint matches
            and raises :class:`~elixirml.errors.ConfigurationError` naming what differs when
            not; ``"force"`` reuses them anyway; ``False`` ignores them.
        display_progress: a progress bar with the running score (default: when stderr is a terminal).
        on_result: called with each :class:`ExampleResult` as it finishes.
        record: write the evaluation to the configured store (when one is configured).
        keep_traces: keep each example's predictor calls in ``ExampleResult.trace`` (the
            reflective optimizers read them).
        executor: where the examples run: ``None``/``"local"`` (asyncio tasks here), ``"ray"``
            (a default :class:`~elixirml.RayExecutor`) or an executor object. Workers rebuild
            the program from its class path and JSON state; this process scores nothing twice
            and owns the checkpoint.
        **kwargs: the options above, by keyword.
    """
    return run_sync(aevaluate(program, devset, metric, **kwargs))


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
