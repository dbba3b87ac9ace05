"""The optimizer protocol, budgets, and results.

Every optimizer implements ``initialize`` / ``optimize_step`` / ``finalize``; ``compile`` drives
them under a budget (LM calls, cost, trials, wall time), prints the projected spend first,
shows progress with the best score so far, and stops cleanly at a limit, keeping the best.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import hashlib
import json
import math
import random
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ..errors import BudgetExceededError, ConfigurationError, ElixirMLError, LoadError, StoreError
from ..evaluation import EvaluationResult, aevaluate, as_metric
from ..lm import Usage, limit_calls, price_for, track_usage
from ..program import Module, configuration_from_json, configuration_to_json
from ..runtime import ProgressDisplay, active_callbacks, instrument, notify_callbacks, open_executor, run_sync
from ..schema import Example
from ._choice import choose_texts
from ._run import NOTHING_SPENT, CallLedger, OptimizerRun


@dataclasses.dataclass
class Trial:
    """One evaluated candidate.

    Attributes:
        number: its position in the run.
        configuration: the variable values it tried (JSON-ready; demos summarised).
        score: its score (percent) on the data it was evaluated on.
        scores: every objective by name (multi-objective searches).
        lm_calls: LM calls it spent.
        tokens: tokens it spent.
        cost: dollars it spent.
        wall_time: seconds it took.
        status: ``complete``, ``budget`` (stopped by a budget) or ``failed``.
        full: whether it was scored on the full validation set (not a minibatch).
    """

    number: int
    configuration: dict[str, Any]
    score: float
    scores: dict[str, float] = dataclasses.field(default_factory=dict)
    lm_calls: int = 0
    tokens: int = 0
    cost: float = 0.0
    wall_time: float = 0.0
    status: str = "complete"
    full: bool = True

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Trial:
        """The trial a store's trial row holds (``store.run(run_id)["trial_list"]``)."""
        return cls(
            number=row["number"],
            configuration=row["configuration"],
            score=row["score"],
            scores=row["scores"],
            lm_calls=row["lm_calls"],
            tokens=row["tokens"],
            cost=row["cost"],
            wall_time=row["wall_time"],
            status=row["status"],
            full=row["full"],
        )


@dataclasses.dataclass
class OptimizationResult:
    """What an optimization run did.

    Attributes:
        optimizer: the optimizer's name.
        best_score: the chosen program's validation score (percent).
        best_configuration: the chosen configuration.
        trials: every trial, in order.
        lm_calls, tokens, cost, wall_time: the run's total spend.
        stopped: why it ended early (``"max_lm_calls"``, ``"max_cost"``, ``"timeout"``,
            ``"max_trials"``) or None.
        run_id: the run's id (pass it as ``resume=`` to continue an interrupted run).
        pareto_front: for multi-objective searches, the Pareto-optimal trials.
        inert_variables: variables left out of the search because no value of theirs changed
            a request of a probe call (or only one of their values could run).
        details: what else the optimizer reports (for the search optimizers: the structure
            chosen first, how many structures were scored, how many proposed instructions
            were dropped for scoring below the original on the probe set).
        version: the store version the result was saved as (None without a store).
        save_error: why saving the result to the store failed (None when it was saved or
            there is no store); the optimized program is returned all the same.
    """

    optimizer: str
    best_score: float
    best_configuration: dict[str, Any]
    trials: list[Trial]
    lm_calls: int
    tokens: int
    cost: float
    wall_time: float
    stopped: str | None = None
    run_id: str = ""
    pareto_front: list[Trial] = dataclasses.field(default_factory=list)
    directions: dict[str, str] = dataclasses.field(default_factory=dict)
    inert_variables: list[str] = dataclasses.field(default_factory=list)
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
    version: dict[str, Any] | None = None
    save_error: BaseException | None = None
    _builder: Callable[[Mapping[str, Any]], Module] | None = dataclasses.field(default=None, repr=False)

    def select(self, **limits: float) -> Module:
        """Build the program for another Pareto point.

        Limits are ``max_<objective>=`` / ``min_<objective>=``; among the Pareto trials within
        them, the one best on the first objective is chosen.
        """
        if not self.pareto_front or self._builder is None:
            raise ConfigurationError("select() needs a multi-objective result (VariableSearch)")
        candidates = list(self.pareto_front)
        for key, bound in limits.items():
            kind, _, objective = key.partition("_")
            if kind not in ("max", "min") or objective not in self.directions:
                raise ConfigurationError(f"Unknown limit {key!r}; use max_/min_ with one of {list(self.directions)}")
            candidates = [
                t
                for t in candidates
                if (t.scores[objective] <= bound if kind == "max" else t.scores[objective] >= bound)
            ]
        if not candidates:
            raise ConfigurationError(f"No Pareto-optimal configuration satisfies {limits}")
        first = next(iter(self.directions))
        sign = 1 if self.directions[first] == "maximize" else -1
        best = max(candidates, key=lambda t: sign * t.scores[first])
        return self._builder(best.configuration)

    def summary(self) -> str:
        """A short text report."""
        lines = [
            f"{self.optimizer}: best score {self.best_score:.1f}% after {len(self.trials)} trial(s); "
            f"{self.lm_calls} LM calls, {self.tokens} tokens, ${self.cost:.4f}, {self.wall_time:.1f}s"
            + (f" (stopped: {self.stopped})" if self.stopped else "")
        ]
        for trial in self.trials:
            lines.append(
                f"  #{trial.number:<3} {trial.score:6.1f}%  {'full' if trial.full else 'mini'}  "
                f"calls {trial.lm_calls:<5} {trial.status}"
            )
        return "\n".join(lines)


RUN_STATE_FORMAT = 1


def _fingerprint(program: Module, train: Sequence[Example], val: Sequence[Example]) -> str:
    """SHA-256 of what a run optimizes: the program's class and state, the trainset and the valset."""
    from ..data import Dataset
    from ..program import class_path

    digest = hashlib.sha256()
    digest.update(class_path(type(program)).encode("utf-8"))
    digest.update(json.dumps(program.dump_state(), sort_keys=True, default=str).encode("utf-8"))
    digest.update(Dataset(list(train)).fingerprint().encode("ascii"))
    digest.update(Dataset(list(val)).fingerprint().encode("ascii"))
    return digest.hexdigest()


class _StopOptimization(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclasses.dataclass
class OptimizationState:
    """The state of one optimization run, shared by the protocol methods.

    Attributes:
        program, trainset, valset, rng: what the run optimizes, and its seeded random state.
        trials, best_score, best_configuration, best_program: every trial and the best so far.
        run_id, next_trial: the run's id and the next trial's number (unique across resumed legs).
        row_scores: each full trial's per-row scores (trial number -> scores in validation
            order), for paired comparisons.
        proposal_log: the fate of every proposed text; text_choice: the final choice between
            proposed and original texts (see ``optimizers._choice``); searched_best: the best
            score and configuration the search found before that choice (what a resumed leg
            searches on from), once it is made.
        search: the optimizer's own typed search state (each built-in optimizer has a dataclass
            for it: ``COPROState``, ``MIPROState``, ...), set by its ``initialize``.
        store: the store the run is recorded in (None without one).
        fingerprint: the SHA-256 of the program, trainset and valset (a resumed run must match).
        resumed: the search state an earlier leg kept (:meth:`Optimizer.resumed_state`).
        kept: the search state kept last (:meth:`Optimizer.save_run_state`).
        teacher: ``compile(teacher=...)``'s program.
        structure, structures_scored: the structure chosen first and how many were scored.
        instructions_dropped: proposals dropped on the probe set.
        inert: variables left out of the search (``last_result.inert_variables``).
        details: what else ``last_result.details`` reports.
        extra: a dict for optimizers you write (the built-in ones keep theirs in ``search``).
    """

    program: Module
    trainset: list[Example]
    valset: list[Example]
    rng: random.Random
    trials: list[Trial] = dataclasses.field(default_factory=list)
    best_score: float = -math.inf
    best_configuration: dict[str, Any] = dataclasses.field(default_factory=dict)
    best_program: Module | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    run_id: str = ""
    next_trial: int = 0
    row_scores: dict[int, list[float]] = dataclasses.field(default_factory=dict)
    proposal_log: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    text_choice: dict[str, Any] | None = None
    searched_best: tuple[float, dict[str, Any]] | None = None
    search: Any = None
    store: Any = None
    fingerprint: str = ""
    resumed: dict[str, Any] | None = None
    kept: dict[str, Any] | None = None
    teacher: Module | None = None
    structure: dict[str, Any] | None = None
    structures_scored: int | None = None
    instructions_dropped: int | None = None
    inert: list[str] = dataclasses.field(default_factory=list)
    details: dict[str, Any] = dataclasses.field(default_factory=dict)


class Optimizer:
    """Base class of optimizers.

    Args:
        metric: ``metric(example, prediction, trace=None)`` (or an ``em.metrics.Metric``).
        seed: seed of every random choice (runs are deterministic with a cached LM).
        max_lm_calls: hard cap on LM calls (cache hits are free).
        max_metric_calls: stop once this many examples have been scored (each example a
            candidate is evaluated on is one metric call, as in GEPA).
        max_cost: stop when this many dollars are spent.
        max_trials: stop after this many trials.
        timeout: stop after this many seconds.
        concurrency: examples evaluated at once.
        num_threads: DSPy's name for ``concurrency`` (honoured as it).
        display_progress: progress bar (default: when stderr is a terminal).
        n_workers: how many Ray workers evaluate candidates (default 1: in this process).
            ``MIPRO``, ``RandomSearch`` and ``VariableSearch`` also run this many trials at
            once against their one study; budgets (``max_lm_calls``, ``max_trials``,
            ``max_metric_calls``) hold across the workers. Without ``executor=`` it starts
            ``executor="ray"`` with ``num_workers=n_workers`` (``RAY_ADDRESS`` is honoured).
        executor: where evaluations run: ``None``/``"local"`` (this process), ``"ray"`` or an
            executor object such as ``em.RayExecutor(address="auto")`` (see ``em.evaluate``).
            Workers rebuild each candidate from its JSON state and importable class, so the
            program's class must be importable on the workers.
    """

    #: The name runs, progress lines and the store know it by (a subclass that sets none: its class name).
    name = "Optimizer"
    #: Attributes that ``compile(...)`` may override for one run (DSPy passes some there).
    run_options: tuple[str, ...] = ()
    #: Whether ``compile(resume=run_id)`` continues an unfinished run (others refuse it).
    resumable = False
    #: Whether the search state is kept in the store (``save_run_state``) rather than elsewhere.
    keeps_run_state = False

    def __init__(
        self,
        metric: Any = None,
        *,
        seed: int = 0,
        max_lm_calls: int | None = None,
        max_metric_calls: int | None = None,
        max_cost: float | None = None,
        max_trials: int | None = None,
        timeout: float | None = None,
        concurrency: int = 8,
        num_threads: int | None = None,
        display_progress: bool | None = None,
        n_workers: int = 1,
        executor: Any = None,
    ) -> None:
        if num_threads is not None:
            concurrency = num_threads
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ConfigurationError(f"concurrency (num_threads) must be an int >= 1, got {concurrency!r}")
        if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1:
            raise ConfigurationError(f"n_workers must be an int >= 1, got {n_workers!r}")
        self.n_workers = n_workers
        self.executor = executor
        self.metric = as_metric(metric) if metric is not None else None
        self.seed = seed
        self.budget: dict[str, Any] = {
            "max_lm_calls": max_lm_calls,
            "max_metric_calls": max_metric_calls,
            "max_cost": max_cost,
            "max_trials": max_trials,
            "timeout": timeout,
        }
        self.concurrency = concurrency
        self.display_progress = display_progress
        self.last_result: OptimizationResult | None = None
        # the run in progress (an idle one outside compile): budgets, spend, executor; compile makes a new one
        self.run = OptimizerRun(budget=dict(self.budget))

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in vars(cls) and cls.name == Optimizer.name:  # not "Optimizer" for every optimizer users write
            cls.name = cls.__name__

    # ------------------------------------------------------------------ protocol
    def initialize(self, state: OptimizationState) -> None:
        """Prepare the search (bootstrap demos, propose instructions, ...)."""

    def optimize_step(self, state: OptimizationState) -> bool:
        """Run one trial; return False when there is nothing left to try."""
        raise NotImplementedError

    def finalize(self, state: OptimizationState) -> Module:
        """Return the chosen program, proposed texts kept only when they beat the originals (:meth:`choose_texts`).

        Subclasses that override it set the best configuration and program, then call it.
        """
        self.choose_texts(state)
        if state.best_program is None:
            return state.program.deepcopy()
        return state.best_program

    def projected_calls(self, state: OptimizationState) -> int:
        """LM calls the run expects to make (for the printed projection)."""
        return 0

    def text_originals(self, state: OptimizationState) -> dict[str, str]:
        """The texts this optimizer proposes replacements for: variable name -> the program's own text.

        At the end of a run, a proposed text stays in the result only when it wins a paired
        comparison with these on the validation set (``optimizers._choice``). None by default:
        optimizers that propose instructions name them.
        """
        return {}

    def choose_texts(self, state: OptimizationState) -> dict[str, Any] | None:
        """The final choice between proposed and original texts, made once per run (see :meth:`text_originals`)."""
        if state.text_choice is None:
            searched = (state.best_score, dict(state.best_configuration))
            state.text_choice = choose_texts(self, state)
            state.searched_best = searched  # kept for a resumed leg: it searches on from the search's best
        return state.text_choice

    def score_on_valset(self, state: OptimizationState, configuration: Mapping[str, Any]) -> Trial | None:
        """Score ``configuration`` on the whole validation set as a trial; None when a budget stops it.

        Nothing is started once a budget is spent; the budget that stops it is the run's
        ``last_result.stopped`` (the run did not finish what it set out to do).
        """
        spent = self.budget_spent(state)
        if spent is not None:
            self.run.stopped = spent
            return None
        started = time.perf_counter()
        try:
            with track_usage() as usage:
                candidate = state.program.with_configuration(dict(configuration))
                result = self.evaluate(candidate, state.valset)
            return self.record_trial(
                state, configuration, result, candidate, usage=usage, wall_time=time.perf_counter() - started
            )
        except (_StopOptimization, BudgetExceededError) as stop:
            self.run.stopped = stop.reason if isinstance(stop, _StopOptimization) else "max_lm_calls"
            return None

    # ------------------------------------------------------------------ helpers for subclasses
    def teacher_for(self, state: OptimizationState) -> Module:
        """The program that bootstraps demos: ``compile(teacher=...)``'s, else a reset copy of the student."""
        given = state.teacher
        if given is not None:
            return given.deepcopy()
        structure = state.structure
        return (state.program.with_configuration(structure) if structure else state.program).reset_copy()

    def searchable(self, state: OptimizationState, names: Sequence[str]) -> tuple[Any, list[str]]:
        """Probe the program once per variable and keep what changes a request (see ``optimizers._probe``).

        Returns the space to search (unusable options removed) and the names to search; the
        left-out ones are warned about and listed in ``last_result.inert_variables``.
        """
        from ._probe import searchable_space

        space, kept, report = searchable_space(state.program, names, state.trainset[0])
        state.inert = list(report.inert)
        return space, kept

    def evaluate(self, program: Module, data: Sequence[Example], *, keep_traces: bool = False) -> EvaluationResult:
        """Score ``program`` on ``data`` with this optimizer's metric; budget stops surface as errors.

        Every example scored counts against ``max_metric_calls``; ``keep_traces`` keeps each
        example's predictor calls (``ExampleResult.trace``) for optimizers that reflect on them.
        """
        return self.evaluate_trials([(program, data)], keep_traces=keep_traces)[0][0]

    def trial_slots(self, state: OptimizationState, examples_per_trial: int, left: int) -> int:
        """How many trials to start at once: ``n_workers``, fewer when a budget or the search has less room.

        At least one: a trial the budget cannot pay for is stopped by :meth:`evaluate`'s own check.
        """
        slots = min(self.n_workers, left)
        if self.run.budget["max_trials"] is not None:
            slots = min(slots, self.run.budget["max_trials"] - len(state.trials))
        limit = self.run.budget["max_metric_calls"]
        if limit is not None and examples_per_trial > 0:
            slots = min(slots, (limit - self.run.metric_calls) // examples_per_trial)
        return max(1, slots)

    def evaluate_trials(
        self,
        jobs: Sequence[tuple[Module, Sequence[Example]]],
        *,
        metrics: Mapping[str, Any] | None = None,
        keep_traces: bool = False,
    ) -> list[tuple[EvaluationResult, Usage, float]]:
        """Evaluate several candidates at once (parallel trials): ``(result, usage, seconds)`` for each, in order.

        Each candidate is scored with this optimizer's metric (or ``metrics``, every objective
        under its name) on its own data; on an executor their examples share its workers. The
        candidates' examples count against ``max_metric_calls`` as with :meth:`evaluate`.
        """
        if metrics is None:
            if self.metric is None:
                raise ConfigurationError(f"{self.name} needs a metric")
            limit = self.run.budget["max_metric_calls"]
            needed = sum(len(data) for _, data in jobs)
            if limit is not None and self.run.metric_calls + needed > limit:
                raise _StopOptimization("max_metric_calls")  # never start an evaluation the budget cannot pay for
        else:
            needed = 0  # objectives: not counted as metric calls
        self.run.metric_calls += needed
        scored = 0

        def count(_: Any) -> None:
            nonlocal scored
            scored += 1

        async def one(program: Module, data: Sequence[Example]) -> tuple[EvaluationResult, Usage, float]:
            started = time.perf_counter()
            with track_usage() as usage:
                result = await aevaluate(
                    program,
                    list(data),
                    self.metric if metrics is None else None,
                    metrics=metrics,
                    concurrency=self.concurrency,
                    display_progress=False,
                    record=False,
                    keep_traces=keep_traces,
                    on_result=count,
                    executor=self.run.runner,
                )
            return result, usage, time.perf_counter() - started

        async def together() -> list[tuple[EvaluationResult, Usage, float]]:
            return list(await asyncio.gather(*(one(program, data) for program, data in jobs)))

        try:
            outcomes = run_sync(together())
        except BaseException:
            self.run.metric_calls -= max(0, needed - scored)  # cut short: only the examples scored were spent
            raise
        run = self.run
        if run.progress is not None and run.ledger is not None:  # inside a step, initialize too: a line when due
            run.progress.update(run.ledger.used, run.status)
        return outcomes

    def budget_spent(self, state: OptimizationState) -> str | None:
        """The budget that is spent (``"max_lm_calls"``, ``"max_metric_calls"``, ...), or None.

        Usable inside a step (GEPA's engine asks it between iterations); the driver asks it
        before every step.
        """
        run, budget = self.run, self.run.budget
        if run.ledger is not None and run.ledger.exhausted:
            return "max_lm_calls"
        if budget["max_metric_calls"] is not None and run.metric_calls >= budget["max_metric_calls"]:
            return "max_metric_calls"
        cost = budget["max_cost"]
        if cost is not None and run.usage is not None and run.usage.cost + float(run.spent_before["cost"]) >= cost:
            return "max_cost"
        if budget["timeout"] is not None and time.perf_counter() - run.started >= budget["timeout"]:
            return "timeout"
        if budget["max_trials"] is not None and len(state.trials) >= budget["max_trials"]:
            return "max_trials"
        return None

    def check_budget(self, state: OptimizationState, usage: Usage, started: float) -> None:
        """Raise the internal stop signal when a budget is spent."""
        reason = self.budget_spent(state)
        if reason is not None:
            raise _StopOptimization(reason)

    def record_trial(
        self,
        state: OptimizationState,
        configuration: Mapping[str, Any],
        result: EvaluationResult,
        program: Module,
        *,
        usage: Usage | None = None,
        wall_time: float | None = None,
        full: bool = True,
    ) -> Trial:
        """Add a trial; it becomes the best when it is a full evaluation with a higher score.

        Args:
            state: the run's state (what ``optimize_step`` was given).
            configuration: the values the candidate was built with (``with_configuration``).
            result: the candidate's evaluation (:meth:`evaluate`).
            program: the candidate.
            usage: the trial's LM usage; default: the evaluation's (``result.usage``). Pass it
                when the trial made LM calls outside ``result`` (proposals, bootstrapping).
            wall_time: the trial's seconds; default: the evaluation's (``result.wall_time``).
            full: whether ``result`` covers the whole validation set (only a full trial can
                become the best).

        Returns:
            The recorded :class:`Trial`.
        """
        if usage is None:
            usage = result.usage
        if wall_time is None:
            wall_time = result.wall_time
        budget_hit = any(isinstance(r.error, BudgetExceededError) for r in result.results)
        # unique across the legs of a resumed run: after every trial of this run and of earlier legs
        number = max(state.next_trial, max((t.number for t in state.trials), default=-1) + 1)
        state.next_trial = number + 1
        trial = Trial(
            number=number,
            configuration=configuration_to_json(configuration),
            score=result.score,
            scores={name: result.metric(name) for name in result.metric_names},
            lm_calls=usage.calls,
            tokens=usage.total_tokens,
            cost=usage.cost,
            wall_time=wall_time,
            status="budget" if budget_hit else "complete",
            full=full,
        )
        state.trials.append(trial)
        if full:
            state.row_scores[number] = [float(r.score) for r in sorted(result.results, key=lambda r: r.index)]
        callbacks = active_callbacks()
        if callbacks:
            notify_callbacks(callbacks, "on_trial_end", instance=self, trial=trial)
        store = state.store
        if store is not None:
            store.add_trial(state.run_id, dataclasses.asdict(trial))
        if full and not budget_hit and trial.score > state.best_score:
            state.best_score = trial.score
            state.best_configuration = dict(configuration)
            state.best_program = program
        if budget_hit:
            raise _StopOptimization("max_lm_calls")
        return trial

    # ------------------------------------------------------------------ driver
    @instrument("compile", instance="self")
    def compile(
        self,
        program: Module | None = None,
        trainset: Iterable[Example] | None = None,
        valset: Iterable[Example] | None = None,
        *,
        student: Module | None = None,
        teacher: Module | None = None,
        resume: str | None = None,
        save_as: str | None = None,
        requires_permission_to_run: bool = False,
        **options: Any,
    ) -> Module:
        """Optimize a copy of ``program`` (DSPy's ``student=`` works too); the input is untouched.

        Args:
            program: the program to optimize.
            trainset: labelled examples (inputs marked) to learn from.
            valset: examples to choose with (default: the trainset).
            student: DSPy's name for ``program``.
            teacher: the program that bootstraps demos (default: the student itself).
            resume: a previous run's ``run_id`` (optimizers that support resuming).
            save_as: the program name under which the configured store keeps the result
                (default: the program's class name). Runs and trials are recorded there too.
            requires_permission_to_run: as in DSPy: show the projected LM calls and ask before
                spending them (needs an interactive terminal).
            **options: budgets for this run (``max_lm_calls``, ``max_metric_calls``, ``max_cost``,
                ``max_trials``, ``timeout``) and the optimizer's own per-run options (``run_options``; for
                MIPRO ``max_bootstrapped_demos``, ``max_labeled_demos``, ``num_trials``, ...).
        """
        program = program if program is not None else student
        if program is None:
            raise ConfigurationError("compile() needs a program (or student=)")
        train = [e if isinstance(e, Example) else Example(e) for e in (trainset or [])]
        if not train:
            raise ConfigurationError("compile() needs a non-empty trainset")
        val = [e if isinstance(e, Example) else Example(e) for e in (valset or [])] or list(train)
        budget = {k: v for k, v in options.items() if k in self.budget}
        run_options = {k: v for k, v in options.items() if k in self.run_options}
        unknown = set(options) - set(budget) - set(run_options)
        if unknown:
            raise ConfigurationError(
                f"Unknown compile option(s) {sorted(unknown)} for {self.name}; budgets: {sorted(self.budget)}"
                + (f"; run options: {sorted(self.run_options)}" if self.run_options else "")
            )
        saved_options = {k: getattr(self, k) for k in run_options}
        for key, value in run_options.items():
            if value is not None:
                setattr(self, key, value)
        try:
            return self._compile(program, train, val, teacher, resume, save_as, requires_permission_to_run, budget)
        finally:
            for key, value in saved_options.items():
                setattr(self, key, value)

    def _compile(
        self,
        program: Module,
        train: list[Example],
        val: list[Example],
        teacher: Module | None,
        resume: str | None,
        save_as: str | None,
        ask: bool,
        budget: dict[str, Any],
    ) -> Module:
        self.run = run = OptimizerRun(budget={**self.budget, **{k: v for k, v in budget.items() if v is not None}})
        state = OptimizationState(
            program=program.deepcopy(),
            trainset=train,
            valset=val,
            rng=random.Random(self.seed),
            run_id=resume or uuid.uuid4().hex[:12],
        )
        if teacher is not None:
            state.teacher = teacher
        warn_placeholder_rows(self.name, train)
        if ask and not self._permission(state):
            return program.deepcopy()
        from ..program import configured_store

        store = configured_store()
        name = save_as or type(program).__name__
        before: dict[str, Any] = {"lm_calls": 0, "tokens": 0, "cost": 0.0}
        if resume is not None and store is None and (self.keeps_run_state or not self.resumable):
            raise ConfigurationError(
                f"{self.name} cannot resume run {resume!r}: no store is configured, so no run was kept; "
                "configure one (em.configure(store=...) or $ELIXIRML_STORE) before the run you want to resume"
            )
        if store is not None:
            state.store = store
            try:
                saved = self._resumable_state(store, state, resume, program, train, val)
                before = store.create_run(
                    state.run_id, self.name, {"budget": dict(run.budget), "seed": self.seed}, program=name
                )
            except BaseException:
                store.close()
                raise
            numbers = [t["number"] for t in before.get("trial_list", [])]
            state.next_trial = max(numbers, default=-1) + 1
            if resume is not None and before["status"] == "finished" and before.get("best_version_id") is not None:
                return self._finished(store, state, before, name, type(program))
            if saved is not None:
                self._restore(state, before, saved)
        base = {
            "lm_calls": max(int(before["lm_calls"]), int(self.run.spent_before["lm_calls"])),
            "tokens": max(int(before["tokens"]), int(self.run.spent_before["tokens"])),
            "cost": max(float(before["cost"]), float(self.run.spent_before["cost"])),
        }
        if before.get("status", "new") != "new":  # a resumed run: its budgets count what earlier legs spent
            self.run.spent_before.update(base)
        started = time.perf_counter()
        stopped: str | None = None
        keep = None if store is None or not self.resumable else self._keeper(store, state)
        ledger = CallLedger(self.run.budget["max_lm_calls"], int(self.run.spent_before["lm_calls"]), keep)
        try:
            with (
                limit_calls(ledger),
                track_usage() as usage,
                self._open_executor() as runner,
            ):
                run.ledger, run.usage, run.started, run.runner = ledger, usage, started, runner
                run.metric_calls = int(run.spent_before["metric_calls"])
                progress = ProgressDisplay(self.name, self.display_progress, unit="LM calls")
                run.progress, run.status = progress, "preparing the search"
                try:
                    try:
                        self._announce(state, progress)  # first: initialize may spend most of the run
                        self.initialize(state)
                        while True:
                            self.check_budget(state, usage, started)
                            more = self.optimize_step(state)
                            run.status = f"trials {len(state.trials)}, best {_best(state.best_score)}"
                            progress.update(ledger.used, run.status)
                            if not more:
                                break
                    except (_StopOptimization, BudgetExceededError) as stop:
                        stopped = stop.reason if isinstance(stop, _StopOptimization) else "max_lm_calls"
                        progress.note(f"stopped at budget limit {stopped}; keeping the best so far")
                    final = self.finalize(state)
                    stopped = stopped or run.stopped  # a budget that cut the final comparison short
                    choice = state.text_choice
                    if choice is not None and "changed" in choice:
                        verdict = "kept" if choice["kept"] == "proposed" else "not kept"
                        progress.note(f"{self.name}: proposed instructions {verdict}: {choice['reason']}")
                    progress.note(
                        f"{self.name}: done in {progress.elapsed():.0f}s: {len(state.trials)} trials, "
                        f"best {_best(state.best_score)}, {ledger.used} LM calls"
                        + (f" (stopped at {stopped})" if stopped else "")
                    )
                finally:
                    progress.close()
        except BaseException as exc:
            if store is not None:
                spent = self._spent(self.run.usage, ledger)
                self._abandon(store, state, "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed", spent)
            raise
        finally:
            run.runner = None  # the executor is closed; the spend stays readable
        totals = {k: v for k, v in self._spent(usage, ledger).items() if k != "metric_calls"}
        version, save_error = None, None
        if store is not None:
            version, save_error = self._save(store, state, final, name, stopped, totals)
        self.last_result = OptimizationResult(
            optimizer=self.name,
            best_score=state.best_score if state.best_score > -math.inf else 0.0,
            best_configuration=configuration_to_json(state.best_configuration),
            trials=state.trials,
            wall_time=time.perf_counter() - started,
            stopped=stopped,
            run_id=state.run_id,
            inert_variables=list(state.inert),
            details={
                **({"structure": configuration_to_json(state.structure)} if state.structure is not None else {}),
                **({"structures_scored": state.structures_scored} if state.structures_scored is not None else {}),
                **(
                    {"instructions_dropped": state.instructions_dropped}
                    if state.instructions_dropped is not None
                    else {}
                ),
                "metric_calls": self.run.metric_calls,
                **({"proposals": state.proposal_log} if state.proposal_log else {}),
                **({"instruction_choice": state.text_choice} if state.text_choice is not None else {}),
                **state.details,
            },
            version=version,
            save_error=save_error,
            **totals,
            **self._result_extras(state),
        )
        return final

    def _open_executor(self) -> Any:
        """The run's executor: ``executor=``, else Ray with ``n_workers`` workers when there are several."""
        if self.executor is None and self.n_workers == 1:
            return open_executor(None)
        executor = "ray" if self.executor is None else self.executor
        options = {"num_workers": self.n_workers} if executor == "ray" and self.n_workers > 1 else {}
        return open_executor(executor, **options)

    def _permission(self, state: OptimizationState) -> bool:
        """DSPy's ``requires_permission_to_run``: show the projected calls and ask on the terminal."""
        if not sys.stdin.isatty():
            raise ConfigurationError(
                "requires_permission_to_run=True asks on an interactive terminal, and there is none; pass "
                "requires_permission_to_run=False and cap the spend with max_lm_calls=... or max_cost=..."
            )
        answer = input(f"{self.name} projects about {self.projected_calls(state)} LM calls. Continue? [y/N] ")
        return answer.strip().lower() in ("y", "yes")

    def _save(
        self,
        store: Any,
        state: OptimizationState,
        final: Module,
        name: str,
        stopped: str | None,
        totals: dict[str, Any],
    ) -> tuple[dict[str, Any] | None, ElixirMLError | None]:
        """Save the result and close the run; a failure is returned (and warned about), never raised.

        The optimization's work is done by now: losing it to a busy database or a refused
        state would waste every LM call it made, so the program is returned either way.
        """
        version: dict[str, Any] | None = None
        error: ElixirMLError | None = None
        best = state.best_score if state.best_score > -math.inf else None
        try:
            try:
                version = store.save(final, name, tags=[self.name, state.run_id])
            except ElixirMLError as exc:
                error = exc
            try:
                store.finish_run(
                    state.run_id,
                    status=("stopped" if stopped else "finished") if error is None else "save_failed",
                    best_score=best,
                    best_version_id=version["id"] if version is not None else None,
                    **totals,
                )
                self._keep_spent(store, state, {**totals, "metric_calls": self.run.metric_calls})
            except StoreError as exc:
                error = error or exc
        finally:
            store.close()
        if error is not None:
            again = f", or compile(..., resume={state.run_id!r}) to try again" if self.resumable else ""
            warnings.warn(
                f"{self.name} finished run {state.run_id!r} but could not save the result as {name!r}: {error}. "
                f"The optimized program is returned; save it with em.Store().save(program, name){again}.",
                RuntimeWarning,
                stacklevel=3,
            )
        return version, error

    def _abandon(self, store: Any, state: OptimizationState, status: str, spent: dict[str, Any]) -> None:
        """Mark the run as ended (``failed`` or ``interrupted``) when the optimization raised.

        Its totals are what every leg spent (LM calls outside trials included), so a resumed
        run's budgets count them.
        """
        best = state.best_score if state.best_score > -math.inf else None
        try:
            current = store.run(state.run_id)
            store.finish_run(
                state.run_id,
                status=status,
                best_score=best,
                best_version_id=None,
                lm_calls=max(int(current["lm_calls"]), int(spent["lm_calls"])),
                tokens=max(int(current["tokens"]), int(spent["tokens"])),
                cost=max(float(current["cost"]), float(spent["cost"])),
            )
            self._keep_spent(store, state, spent)
        except StoreError:
            pass  # the optimization's own error is the one to report; runs() shows the run as interrupted
        finally:
            store.close()

    # ------------------------------------------------------------------ run state (resume)
    def save_run_state(self, state: OptimizationState, search: dict[str, Any]) -> None:
        """Keep the search state (JSON) of this run in the store, with what the run has spent so far.

        Optimizers that resume (``keeps_run_state``) call it after every step; a resumed run
        gets ``search`` back from :meth:`resumed_state`. Without a store nothing is kept.
        """
        state.kept = search
        store = state.store
        if store is None or not self.keeps_run_state:
            return
        self.run.kept = {**self._run_state(state), "spent": self._spent(self.run.usage, self.run.ledger)}
        if self.run.ledger is not None:
            self.run.ledger.keep()  # under the ledger's lock, so never below the LM calls it reserved
        else:
            self._keep_spent(store, state, self.run.kept["spent"])

    def _keeper(self, store: Any, state: OptimizationState) -> Callable[[int], None]:
        """What the run's call ledger writes: the run state kept last, with ``mark`` LM calls spent.

        The ledger writes from whichever thread makes an LM call, so it writes the run state
        :meth:`save_run_state` built on the optimizer's thread (its metric calls, which go with
        its search state, included); only the LM calls, tokens and cost are the ones spent by now.
        """
        self.run.kept = {**self._run_state(state), "spent": dict(self.run.spent_before)}

        def keep(mark: int) -> None:
            kept, now = self.run.kept, self._spent(self.run.usage)
            spent = {**kept["spent"], "lm_calls": max(mark, kept["spent"]["lm_calls"])}
            spent.update(tokens=now["tokens"], cost=now["cost"])
            store.set_run_state(state.run_id, self.name, {**kept, "spent": spent})

        return keep

    def resumed_state(self, state: OptimizationState) -> dict[str, Any] | None:
        """The search state an earlier leg of this run kept (None for a new run)."""
        return state.resumed

    def _spent(self, usage: Usage | None, ledger: CallLedger | None = None) -> dict[str, Any]:
        """What the run has spent: earlier legs and this one (its LM calls as the run's call budget counted them)."""
        before = self.run.spent_before
        calls = int(before["lm_calls"]) + (usage.calls if usage is not None else 0)
        return {
            "lm_calls": max(calls, ledger.used) if ledger is not None else calls,
            "tokens": int(before["tokens"]) + (usage.total_tokens if usage is not None else 0),
            "cost": float(before["cost"]) + (usage.cost if usage is not None else 0.0),
            "metric_calls": self.run.metric_calls,
        }

    def _keep_spent(self, store: Any, state: OptimizationState, spent: dict[str, Any]) -> None:
        """Write the run state kept last with ``spent`` (when the optimizer resumes)."""
        if not self.resumable:
            return  # nothing to resume from
        store.set_run_state(state.run_id, self.name, {**self._run_state(state), "spent": spent})

    def _run_state(self, state: OptimizationState) -> dict[str, Any]:
        """The run state to keep, but for its spend: the best so far and the search state kept last.

        The search state is None before a first step, and for MIPRO, whose study is elsewhere.
        """
        best = None
        # a leg stopped by a budget made its final choice: the next leg searches on from what the search found
        score, configuration = state.searched_best or (state.best_score, state.best_configuration)
        if score > -math.inf:
            best = {"score": score, "configuration": configuration_to_json(configuration)}
            try:
                json.dumps(best, allow_nan=False)
            except (TypeError, ValueError):
                best = None  # a value with no JSON form (an LM as a choice): the search state rebuilds it
        return {
            "format": RUN_STATE_FORMAT,
            "fingerprint": state.fingerprint,
            "best": best,
            "search": copy.deepcopy(state.kept),  # copies: a ledger write reads them on its thread
            # for the final paired comparison of proposed texts: no finished evaluation is run again
            "row_scores": {str(number): list(rows) for number, rows in state.row_scores.items()},
            "proposals": copy.deepcopy(state.proposal_log),
        }

    def _resumable_state(
        self,
        store: Any,
        state: OptimizationState,
        resume: str | None,
        program: Module,
        train: Sequence[Example],
        val: Sequence[Example],
    ) -> dict[str, Any] | None:
        """Check that ``resume=`` can be honoured; the run state an earlier leg kept, or None.

        Raises:
            ConfigurationError: the optimizer cannot resume an unfinished run, the run is
                another optimizer's, or it optimized another program or other data.
        """
        if self.keeps_run_state:
            state.fingerprint = _fingerprint(program, train, val)
        if resume is None:
            return None
        try:
            existing = store.run(resume)
        except LoadError:
            return None  # no such run yet: it starts under this id
        if existing["status"] == "finished" and existing.get("best_version_id") is not None:
            return None  # returned as it finished
        if not self.resumable:
            raise ConfigurationError(
                f"{self.name} cannot resume run {resume!r} (it ended {existing['status']!r}): {self.name} keeps no "
                "search state to continue from. Start a new run (leave out resume=), or use an optimizer that "
                "resumes (MIPRO, GEPA, SIMBA, COPRO, RandomSearch, VariableSearch)."
            )
        kept = store.run_state(resume)
        if kept is None:
            return None  # stopped before its first step was kept: it starts again (only that step is lost)
        if not self.keeps_run_state:  # its search state is elsewhere (MIPRO's study): only the spend is read
            return kept["state"] if kept["optimizer"] == self.name else None
        if kept["optimizer"] != self.name:
            raise ConfigurationError(
                f"Run {resume!r} is a {kept['optimizer']} run; resume it with {kept['optimizer']}, not {self.name}"
            )
        payload: dict[str, Any] = kept["state"]
        if payload.get("format") != RUN_STATE_FORMAT:
            raise ConfigurationError(
                f"Run {resume!r} was kept in run state format {payload.get('format')!r}; this version reads "
                f"format {RUN_STATE_FORMAT}. Start a new run."
            )
        if payload.get("fingerprint") != state.fingerprint:
            raise ConfigurationError(
                f"Run {resume!r} optimized another program or other data: resume= continues a run on the same "
                "program, trainset and valset. Start a new run (leave out resume=) for these."
            )
        return payload

    def _restore(self, state: OptimizationState, before: dict[str, Any], payload: dict[str, Any]) -> None:
        """Put back what an earlier leg kept: its spend, its trials, its best configuration and its search state."""
        spent = payload.get("spent") or {}
        self.run.spent_before = {key: spent.get(key, value) for key, value in NOTHING_SPENT.items()}
        if self.keeps_run_state and payload.get("search") is None:
            return  # only its spend was kept (stopped before its first step): the search starts again
        # MIPRO keeps its search in its study, but its trials, rows and proposals here as the others do
        state.trials = [Trial.from_row(t) for t in before.get("trial_list", [])]
        best = payload.get("best")
        if best is not None:
            state.best_score = float(best["score"])
            state.best_configuration = configuration_from_json(best["configuration"])
            state.best_program = state.program.with_configuration(state.best_configuration)
        state.row_scores.update({int(number): list(rows) for number, rows in payload.get("row_scores", {}).items()})
        state.proposal_log[:] = payload.get("proposals", [])
        if self.keeps_run_state:
            state.resumed = payload["search"]
            state.kept = payload["search"]

    def _finished(
        self, store: Any, state: OptimizationState, before: dict[str, Any], name: str, cls: type[Module]
    ) -> Module:
        """Resuming a run that already finished: return its saved result; nothing runs and nothing is saved again."""
        try:
            saved = store.get_version(before.get("program") or name, f"#{before['best_version_id']}")
            from ..program import build_program

            program = build_program({"class": saved["class_path"], "state": saved["state"]}, cls)
            store.finish_run(
                state.run_id,
                status="finished",
                best_score=before["best_score"],
                best_version_id=before["best_version_id"],
                lm_calls=before["lm_calls"],
                tokens=before["tokens"],
                cost=before["cost"],
            )
        finally:
            store.close()
        trials = [Trial.from_row(t) for t in before["trial_list"]]
        best_score = before["best_score"] if before["best_score"] is not None else 0.0
        best_trial = max((t for t in trials if t.full), key=lambda t: t.score, default=None)
        self.last_result = OptimizationResult(
            optimizer=self.name,
            best_score=best_score,
            best_configuration=best_trial.configuration if best_trial is not None else {},
            trials=trials,
            lm_calls=before["lm_calls"],
            tokens=before["tokens"],
            cost=before["cost"],
            wall_time=0.0,
            run_id=state.run_id,
            version={k: v for k, v in saved.items() if k not in ("state", "configuration", "space")},
        )
        return program

    def _result_extras(self, state: OptimizationState) -> dict[str, Any]:
        return {}

    def _announce(self, state: OptimizationState, progress: ProgressDisplay) -> None:
        calls = self.projected_calls(state)
        lm = state.program.get_lm()
        if lm is None:
            from ..settings import current

            lm = current().lm
        price = getattr(lm, "price", None) or (price_for(lm.model) if lm is not None else None)
        cost = "unknown cost" if price is None else f"about ${calls * (600 * price[0] + 100 * price[1]) / 1e6:.4f}"
        limit = self.run.budget["max_lm_calls"]
        progress.set_total(calls if limit is None else min(calls, limit))
        progress.note(
            f"{self.name}: projected {calls} LM calls ({cost})"
            + (f"; capped at {limit} calls" if limit is not None else "")
        )


def warn_placeholder_rows(optimizer: str, trainset: Sequence[Example]) -> None:
    """Warn when the training rows are placeholders (``"..."``, empty): what is learned from them means nothing."""
    if not trainset:
        return
    placeholder = sum(
        all(str(v).strip() in ("", "...", "…", "TODO", "None") for v in example.to_dict().values())
        for example in trainset
    )
    if placeholder * 2 >= len(trainset):
        warnings.warn(
            f"{optimizer}: {placeholder} of {len(trainset)} training rows hold only placeholders such as '...'; "
            "the optimization result means nothing. Give real examples with real answers.",
            UserWarning,
            stacklevel=4,
        )


def _best(best: float) -> str:
    return f"{best:.1f}%" if best > -math.inf else "-"
