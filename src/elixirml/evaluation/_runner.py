"""Concurrent evaluation of a program over a dataset: async tasks, nothing lost, resumable."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
import warnings
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from ..errors import BudgetExceededError, ConfigurationError, LoadError, UserError
from ..lm import track_usage
from ..program import trace as open_trace
from ..runtime import ProgramSpec, ProgressDisplay, instrument_async, resolve_executor, run_sync, stream_bounded
from ..schema import Example
from ._checkpoint import example_key, open_checkpoint, resumed_result
from ._feedback import finite_score, split_feedback
from ._metrics import Metric, as_metric
from ._results import MEASURED, EvaluationResult, ExampleResult


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
    store = open_checkpoint(checkpoint, program, examples, [n for n, _ in resolved], resume)
    results: dict[int, ExampleResult] = {}
    keys = [example_key(e) for e in examples] if store is not None else []
    start = time.perf_counter()

    if store is not None:
        for index, key in enumerate(keys):
            saved = store.done.get(key)
            if saved is not None:
                results[index] = resumed_result(index, examples[index], saved)

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
