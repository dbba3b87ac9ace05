"""Few-shot optimizers: LabeledFewShot and BootstrapFewShot, and the bootstrap routine they share."""

from __future__ import annotations

import asyncio
import inspect
import math
import random
import time
import typing
import warnings
from collections.abc import Sequence
from typing import Any

from ..errors import AssertionFailed, BudgetExceededError, MetricError
from ..evaluation import Metric, finite_score, split_feedback
from ..lm import track_usage
from ..program import Module, forced_settings, trace
from ..runtime import run_sync
from ..schema import Example
from ._base import OptimizationState, Optimizer


def _passes(score: Any, threshold: float | None, metric: str) -> bool:
    value = finite_score(split_feedback(score)[0], metric)
    return value >= threshold if threshold is not None else value > 0


class _TeacherFailed:
    """A teacher run that raised: its exception, for :func:`bootstrap_demos` to count (and maybe raise)."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


async def _run_teacher(
    teacher: Module, example: Example, metric: Metric, threshold: float | None, round_index: int
) -> list[Any] | _TeacherFailed | None:
    """Run the teacher on one example; its trace if the output passes the metric and every hard assertion.

    The teacher's own exception comes back as a :class:`_TeacherFailed`, for the caller to count;
    an assertion that still failed after its retries gives None, as a failing metric does.
    """
    inputs = dict((example.inputs() if example.input_keys is not None else example).items())
    with trace() as entries:
        try:
            overrides = {"rollout_id": round_index, "temperature": 1.0} if round_index else {}
            with forced_settings(best_effort=("temperature",), **overrides):
                prediction = await teacher.acall(**inputs)
        except BudgetExceededError:
            raise
        except AssertionFailed:
            return None
        except Exception as exc:
            return _TeacherFailed(exc)
        score = metric.calculate(example, prediction, entries)
        if inspect.isawaitable(score):
            score = await score
    try:
        passed = _passes(score, threshold, metric.name)
    except MetricError as exc:  # one example's metric failed: it gives no demo, the run goes on
        warnings.warn(f"{exc}. The example gives no demo.", RuntimeWarning, stacklevel=1)
        return None
    if not passed:
        return None
    if any(not a["passed"] and a["hard"] for e in entries for a in e.assertions):
        return None
    return list(entries)


def bootstrap_demos(
    teacher: Module,
    trainset: Sequence[Example],
    metric: Metric,
    *,
    max_demos: int,
    max_rounds: int = 1,
    threshold: float | None = None,
    concurrency: int = 8,
    max_errors: int | None = None,
) -> tuple[dict[str, list[Example]], set[int]]:
    """Collect demos per predictor name from successful teacher runs, in trainset order.

    A teacher run that raises gives no demo; with ``max_errors``, the run that makes that many
    failures raises its exception instead (DSPy's ``max_errors``).

    Returns (demos by predictor name, indexes of the trainset examples that produced demos).
    """
    names = {id(p): name for name, p in teacher.named_predictors()}
    demos: dict[str, list[Example]] = {name: [] for name in names.values()}
    used: set[int] = set()
    errors = 0
    if max_demos <= 0:
        return demos, used
    for round_index in range(max_rounds):
        pending = [i for i in range(len(trainset)) if i not in used]
        for start in range(0, len(pending), concurrency):
            if len(used) >= max_demos:
                return demos, used
            chunk = pending[start : start + concurrency]

            async def run_chunk(
                indexes: list[int] = chunk, r: int = round_index
            ) -> list[list[Any] | _TeacherFailed | None]:
                # Every run finishes before a budget stop is raised: a call already sent is counted,
                # not cancelled on the way back (that lost calls from the run's count).
                runs = await asyncio.gather(
                    *(_run_teacher(teacher, trainset[i], metric, threshold, r) for i in indexes),
                    return_exceptions=True,
                )
                for outcome in runs:
                    if isinstance(outcome, BaseException):
                        raise outcome
                return typing.cast("list[list[Any] | _TeacherFailed | None]", runs)

            for index, entries in zip(chunk, run_sync(run_chunk())):
                if isinstance(entries, _TeacherFailed):
                    errors += 1
                    if max_errors is not None and errors >= max_errors:
                        raise entries.error
                    continue
                if entries is None or len(used) >= max_demos:
                    continue
                used.add(index)
                for entry in entries:
                    name = names.get(id(entry.predictor))
                    if name is None or entry.prediction is None:
                        continue
                    fields = list(entry.predictor.signature.input_fields)
                    record = {**entry.inputs, **entry.prediction.to_dict()}
                    demos[name].append(Example(record).with_inputs(*[f for f in fields if f in record]))
    return demos, used


def labeled_demos(
    trainset: Sequence[Example], k: int, rng: random.Random, exclude: set[int] | None = None
) -> list[Example]:
    """Up to ``k`` raw trainset examples (not in ``exclude``), sampled with ``rng``."""
    skip = exclude or set()
    pool = [e for i, e in enumerate(trainset) if i not in skip]
    return rng.sample(pool, min(k, len(pool)))


class LabeledFewShot(Optimizer):
    """Give every predictor ``k`` labelled examples from the trainset as demos (no LM calls).

    Args:
        k: demos per predictor.
        sample: sample randomly with the seed (True) or take the first ``k`` (False).
        **kwargs: as for :class:`Optimizer`.
    """

    name = "LabeledFewShot"

    def __init__(self, k: int = 16, *, sample: bool = True, **kwargs: Any) -> None:
        super().__init__(kwargs.pop("metric", None), **kwargs)
        self.k = k
        self.sample = sample

    def optimize_step(self, state: OptimizationState) -> bool:
        chosen = labeled_demos(state.trainset, self.k, state.rng) if self.sample else state.trainset[: self.k]
        program = state.program.reset_copy()
        for _, predictor in program.named_predictors():
            predictor.demos = list(chosen)
        state.best_program = program
        state.best_configuration = {f"{n}.demos": list(chosen) for n, _ in program.named_predictors()}
        return False


class BootstrapFewShot(Optimizer):
    """Run a teacher on the trainset and keep the traces that pass the metric as demos.

    Args:
        metric: decides which runs become demos (and its ``metric_threshold``).
        max_bootstrapped_demos: bootstrapped demos per predictor.
        max_labeled_demos: total demos per predictor, filled up with raw labelled examples.
        max_rounds: passes over failing examples (later passes sample at temperature 1.0).
        metric_threshold: minimum score for a run to count (default: any truthy score).
        teacher: the program that produces traces (default: the student itself).
        max_errors: a teacher run that raises gives no demo; the one that makes this many
            failures stops the compile with its exception (DSPy's option; default: never).
        **kwargs: as for :class:`Optimizer`.

    The program it returns is marked compiled (``_compiled = True``, as DSPy marks it): DSPy's
    ``named_parameters()`` of a program holding it as a part leaves it out.
    """

    name = "BootstrapFewShot"
    run_options = ("max_bootstrapped_demos", "max_labeled_demos", "max_rounds")

    def __init__(
        self,
        metric: Any,
        max_bootstrapped_demos: int = 4,
        max_labeled_demos: int = 16,
        max_rounds: int = 1,
        *,
        metric_threshold: float | None = None,
        teacher: Module | None = None,
        max_errors: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(metric, **kwargs)
        self.max_bootstrapped_demos = max_bootstrapped_demos
        self.max_labeled_demos = max_labeled_demos
        self.max_rounds = max_rounds
        self.metric_threshold = metric_threshold
        self.teacher = teacher
        self.max_errors = max_errors

    def projected_calls(self, state: OptimizationState) -> int:
        """Teacher runs in whole batches of ``concurrency`` (a batch runs at once) until about 3 x the demos wanted."""
        per_run = max(1, len(state.program.named_predictors()))
        if self.max_bootstrapped_demos <= 0:
            return 0
        batch = max(1, self.concurrency)
        wanted = self.max_bootstrapped_demos * 3
        return min(len(state.trainset), math.ceil(wanted / batch) * batch) * per_run

    def optimize_step(self, state: OptimizationState) -> bool:
        assert self.metric is not None
        started = time.perf_counter()
        given = state.teacher or self.teacher
        teacher = (given or state.program).deepcopy()
        student = state.program.reset_copy()
        with track_usage():
            demos, used = bootstrap_demos(
                teacher,
                state.trainset,
                self.metric,
                max_demos=self.max_bootstrapped_demos,
                max_rounds=self.max_rounds,
                threshold=self.metric_threshold,
                concurrency=self.concurrency,
                max_errors=self.max_errors,
            )
        config: dict[str, Any] = {}
        for name, predictor in student.named_predictors():
            chosen = demos.get(name, [])[: self.max_bootstrapped_demos]
            room = max(0, self.max_labeled_demos - len(chosen))
            predictor.demos = chosen + labeled_demos(state.trainset, room, state.rng, used)
            config[f"{name}.demos" if name != "self" else "demos"] = list(predictor.demos)
        student._compiled = True
        state.best_program = student
        state.best_configuration = config
        state.details["bootstrap_seconds"] = time.perf_counter() - started
        return False
