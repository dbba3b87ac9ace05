"""GEPA: reflective prompt evolution with a Pareto frontier, on the reference ``gepa`` package.

The ``gepa`` package is the search engine (candidate selection over the Pareto front of
validation examples, minibatch acceptance, budgets); this module is its adapter. A candidate
is the program's text variables (each predictor's instructions and every ``Variable.text``);
it runs through :func:`em.evaluate` with traces, and the reflective dataset is built from the
traces and the metric's :class:`~elixirml.Feedback`.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import math
import random
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..errors import ConfigurationError, LoadError, MissingDependencyError, OutputError, ProviderError
from ..evaluation import ExampleResult, FunctionMetric, split_feedback
from ..lm import is_truncated, track_usage
from ..program import Module
from ..schema import Example
from ..variables import VariableSpace
from ._base import OptimizationState, Optimizer, Trial, _StopOptimization
from ._choice import implicit_key
from ._propose import instruction_verdict
from ._search import other_variables, suggest_space

_log = logging.getLogger("elixirml.optimizers.gepa")

#: candidates GEPA is budgeted to find per preset (DSPy's numbers)
AUTO_CANDIDATES = {"light": 6, "medium": 12, "heavy": 18}
SELECTION = {
    "pareto": "pareto",
    "best": "current_best",
    "current_best": "current_best",
    "epsilon_greedy": "epsilon_greedy",
}


def _gepa_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gepa")
    except PackageNotFoundError:
        return "unknown"


def _gepa() -> Any:
    try:
        import gepa
    except ImportError:
        raise MissingDependencyError("gepa", "gepa", "em.optimizers.GEPA") from None
    return gepa


def text_components(program: Module) -> dict[str, str]:
    """The program's searchable text variables (instructions and ``Variable.text``) with their values."""
    space = program.variable_space()
    current = space.current()
    return {
        name: current[name]
        for name in space.searchable()
        if space[name].kind == "text" and isinstance(current.get(name), str)
    }


def auto_metric_calls(auto: str, valset_size: int, components: int, minibatch_size: int) -> int:
    """The metric-call budget of an ``auto`` preset.

    The seed is scored on the validation set; each of the preset's candidates is budgeted a
    parent and a child minibatch per component, plus one validation pass, and as much again
    for proposals that the minibatch test rejects.
    """
    candidates = AUTO_CANDIDATES[auto]
    per_candidate = valset_size + 2 * 2 * minibatch_size * max(1, components)
    return valset_size + candidates * per_candidate


@dataclasses.dataclass
class _Rollout:
    """One example's run, as GEPA's opaque trajectory: the result and predictor id -> name."""

    result: ExampleResult
    names: dict[int, str]


class _TextBudgetSpent(Exception):
    """The text search's share of the metric calls is spent (the other variables' share is left)."""


class _Logger:
    def log(self, message: str) -> None:
        _log.debug("%s", message)


REFLECTION_MAX_CHARS = 8000  # gepa's reflections are long instructions by design


def usable_reflection(text: str, current: str) -> bool:
    """Whether a reflected text is worth scoring: not empty, not the current one, not a loop of repeats.

    A weak reflection LM often loops on one sentence until its token limit; such a text is not
    tried (the component keeps its current text; with no new text at all, gepa skips the
    iteration's minibatch).
    """
    words = text.split()
    if not words or text.strip() == current.strip() or len(text) > REFLECTION_MAX_CHARS:
        return False
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) >= 4 and len(set(lines)) / len(lines) < 0.5:
        return False
    return len(words) < 12 or len(set(words)) / len(words) >= 0.3


class _Adapter:
    """The ``gepa.GEPAAdapter`` of an ElixirML program (see the module docstring)."""

    def __init__(
        self,
        optimizer: GEPA,
        state: OptimizationState,
        components: Mapping[str, str],
        reflection: _Reflection,
        template: str | None,
    ) -> None:
        self.optimizer = optimizer
        self.state = state
        self.reflection = reflection
        self.template = template
        self.components = dict(components)
        space = state.program.variable_space()
        # component -> predictor name, for components that are a predictor's instructions
        self.predictor_of: dict[str, str] = {}
        for name, _ in state.program.named_predictors():
            key = implicit_key(name, "instructions")
            if key in self.components:
                self.predictor_of[key] = name
        self.space = space
        self.full_trials: dict[str, Trial] = {}
        self.seed_scores: list[float] | None = None
        metric = optimizer.metric
        self.per_predictor = isinstance(metric, FunctionMetric) and "pred_name" in _parameters(metric.fn)

    def build(self, candidate: Mapping[str, str]) -> Module:
        return self.state.program.with_configuration(dict(candidate))

    def evaluate(self, batch: list[Example], candidate: dict[str, str], capture_traces: bool = False) -> Any:
        gepa = _gepa()
        optimizer, state = self.optimizer, self.state
        if self.seed_scores is not None and not capture_traces and dict(candidate) == self.components:
            # a resumed run: the engine scores the seed first, and the earlier leg already did
            scores, self.seed_scores = self.seed_scores, None
            return gepa.EvaluationBatch(outputs=[None] * len(scores), scores=scores, trajectories=None)
        limit = _search(state).text_budget
        if limit is not None and optimizer.run.metric_calls + len(batch) > limit:
            raise _TextBudgetSpent  # never start an evaluation the budget cannot pay for
        started = time.perf_counter()
        with track_usage() as usage:
            program = self.build(candidate)
            result = optimizer.evaluate(program, batch, keep_traces=capture_traces)
        full = len(batch) == len(state.valset) and all(a is b for a, b in zip(batch, state.valset))
        trial = optimizer.record_trial(
            state, candidate, result, program, usage=usage, wall_time=time.perf_counter() - started, full=full
        )
        if full:
            self.full_trials.setdefault(_key(candidate), trial)  # the first validation pass of each candidate
        names = {id(p): n for n, p in program.named_predictors()}
        rollouts = [_Rollout(r, names) for r in result.results] if capture_traces else None
        return gepa.EvaluationBatch(
            outputs=[r.prediction for r in result.results],
            scores=[float(r.score) for r in result.results],
            trajectories=rollouts,
        )

    def make_reflective_dataset(
        self, candidate: dict[str, str], eval_batch: Any, components_to_update: list[str]
    ) -> dict[str, list[dict[str, Any]]]:
        rollouts: list[_Rollout] = list(eval_batch.trajectories or [])
        dataset: dict[str, list[dict[str, Any]]] = {}
        for component in components_to_update:
            predictor = self.predictor_of.get(component)
            records: list[dict[str, Any]] = []
            for rollout in rollouts:
                result = rollout.result
                entries = [e for e in result.trace or [] if rollout.names.get(id(e.predictor)) == predictor]
                if predictor is not None and entries:
                    entry = entries[-1]
                    outputs: Any = (
                        entry.prediction.to_dict() if entry.prediction is not None else f"Error: {entry.error}"
                    )
                    records.append(
                        {
                            "Inputs": dict(entry.inputs),
                            "Generated Outputs": outputs,
                            "Feedback": self._feedback(result, predictor, entries),
                        }
                    )
                else:  # a Variable.text, or a predictor this run never reached: the program's own view
                    records.append(
                        {
                            "Inputs": _inputs(result.example),
                            "Generated Outputs": _outputs(result),
                            "Feedback": self._feedback(result, None, []),
                        }
                    )
            dataset[component] = records
        return dataset

    def propose_new_texts(
        self,
        candidate: dict[str, str],
        reflective_dataset: Mapping[str, Sequence[Mapping[str, Any]]],
        components_to_update: list[str],
    ) -> dict[str, str]:
        """The reflective proposal of gepa (its prompt and extraction), with degenerate texts left out.

        A component whose reflection failed or was degenerate is left out of the result (it
        keeps its text); a reflection LM error is counted, not raised, so gepa does not ask
        again for the same reflection.
        """
        from gepa.strategies.instruction_proposal import InstructionProposalSignature

        new: dict[str, str] = {}
        for component in components_to_update:
            try:
                proposed = InstructionProposalSignature.run(
                    self.reflection,
                    {
                        "current_instruction_doc": candidate[component],
                        "dataset_with_feedback": list(reflective_dataset.get(component, [])),
                        "prompt_template": self.template,
                    },
                )["new_instruction"]
            except (OutputError, ProviderError) as exc:  # a setup error or a spent budget propagates
                self.reflection.failed += 1
                _log.warning("GEPA: the reflection on %s failed (%s: %s)", component, type(exc).__name__, exc)
                continue
            if not usable_reflection(proposed, candidate[component]):
                self.reflection.dropped += 1
                continue
            predictor = self.predictor_of.get(component)
            reason = None
            if predictor is not None:  # a predictor's instructions: the rule every optimizer's proposals meet
                signature = dict(self.state.program.named_predictors())[predictor].signature
                reason = instruction_verdict(proposed, signature, max_chars=REFLECTION_MAX_CHARS, min_distinct=0.3)
            self.state.proposal_log.append(
                {
                    "predictor": predictor or component,
                    "key": component,
                    "instruction": proposed,
                    "kept": reason is None,
                    "reason": reason or "on topic",
                }
            )
            if reason is None:
                new[component] = proposed
            else:
                self.reflection.dropped += 1
        return new

    def _feedback(self, result: ExampleResult, predictor: str | None, entries: Sequence[Any]) -> str:
        """The metric's feedback text; per predictor when the metric takes DSPy's ``pred_name``."""
        if result.error is not None:
            return f"The program failed on this input ({type(result.error).__name__}: {result.error}); score 0."
        text = result.feedback
        if self.per_predictor and predictor is not None and isinstance(self.optimizer.metric, FunctionMetric):
            pred_trace = [(e.predictor, dict(e.inputs), e.prediction) for e in entries]
            value = self.optimizer.metric.fn(result.example, result.prediction, None, predictor, pred_trace)
            _, text = split_feedback(value)
            text = text if text is not None else result.feedback
        if text:
            return text
        return f"This trajectory got a score of {result.score:g}."


def _parameters(fn: Any) -> set[str]:
    try:
        return set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return set()


def _key(candidate: Mapping[str, str]) -> str:
    return json.dumps(dict(candidate), sort_keys=True)


def _inputs(example: Example) -> dict[str, Any]:
    return dict((example.inputs() if example.input_keys is not None else example).items())


def _outputs(result: ExampleResult) -> Any:
    prediction = result.prediction
    if prediction is None:
        return f"Error: {result.error}"
    return prediction.to_dict() if hasattr(prediction, "to_dict") else str(prediction)


class _Tracker:
    """A gepa callback that keeps every candidate scored on the validation set, with its parents.

    ``keep(engine_state)`` is called at the start of every iteration (the run state is written
    there); a resumed run skips the engine's new event for the seed, which it already has.
    """

    def __init__(self, keep: Callable[[Any], None] | None = None) -> None:
        self.candidates: list[dict[str, Any]] = []
        self.keep = keep
        self.skip_seed = False

    def on_valset_evaluated(self, event: Mapping[str, Any]) -> None:
        if self.skip_seed and int(event["candidate_idx"]) == 0:
            self.skip_seed = False
            return
        self.candidates.append(
            {
                "index": int(event["candidate_idx"]),
                "texts": dict(event["candidate"]),
                "parents": [p for p in event["parent_ids"] if p is not None],
                "scores": {int(k): float(v) for k, v in event["scores_by_val_id"].items()},
                "score": 100.0 * float(event["average_score"]),
            }
        )

    def on_iteration_start(self, event: Mapping[str, Any]) -> None:
        if self.keep is not None:
            self.keep(event["state"])


class _Carried(BaseException):
    """Carries an error out of a gepa callback: gepa logs and drops an ``Exception`` raised in one."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class _NoJSON(Exception):
    """A value of the engine's state has no JSON form (a newer gepa keeps something else)."""


def to_json(value: Any) -> Any:
    """The engine's state (dicts with int keys, sets, tuples, counters) as JSON; :func:`from_json` reverses it."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            return {"__float__": repr(value)}
        return value
    if isinstance(value, list):
        return [to_json(v) for v in value]
    if isinstance(value, tuple):
        return {"__tuple__": [to_json(v) for v in value]}
    if isinstance(value, (set, frozenset)):
        try:
            items = sorted(value)
        except TypeError:
            items = list(value)
        return {"__set__": [to_json(v) for v in items]}
    if isinstance(value, Counter):
        return {"__counter__": [[to_json(k), v] for k, v in value.items()]}
    if type(value) is dict or isinstance(value, defaultdict):
        return {"__items__": [[to_json(k), to_json(v)] for k, v in value.items()]}
    raise _NoJSON(f"{type(value).__name__} has no JSON form")


def from_json(value: Any) -> Any:
    """The value :func:`to_json` wrote."""
    if isinstance(value, list):
        return [from_json(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "__float__" in value:
        return float(value["__float__"])
    if "__tuple__" in value:
        return tuple(from_json(v) for v in value["__tuple__"])
    if "__set__" in value:
        return {from_json(v) for v in value["__set__"]}
    if "__counter__" in value:
        return Counter({from_json(k): v for k, v in value["__counter__"]})
    if "__items__" in value:
        return {from_json(k): from_json(v) for k, v in value["__items__"]}
    raise LoadError(f"Malformed GEPA run state: {value!r}")


#: engine fields that are not kept: runtime hooks, and what this adapter never turns on
_NOT_KEPT = frozenset({"_budget_hooks", "evaluation_cache", "best_outputs_valset"})


class _Reflection:
    """Gepa's ``LanguageModel`` (``prompt -> text``) over an ElixirML LM.

    An answer cut off at the token limit is used as it is, not retried: gepa takes the new
    text from what was written, and a small model that writes on until its limit would write
    the same again. It keeps the run's counts of reflections: ``asked`` (LM calls),
    ``truncated`` (answers cut off), and, counted by the adapter, ``dropped`` (degenerate
    texts) and ``failed`` (LM calls that raised after their retries).
    """

    COUNTS = ("asked", "truncated", "dropped", "failed")

    def __init__(self, lm: Any) -> None:
        self.lm = lm
        self.asked = self.truncated = self.dropped = self.failed = 0

    def counts(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.COUNTS}

    def restore(self, kept: Mapping[str, Any]) -> None:
        """Put back the counts of a kept run state (one kept before a count existed has none of it)."""
        for name in self.COUNTS:
            setattr(self, name, int(kept.get(name, 0)))

    def none_usable(self) -> bool:
        """Whether reflections were asked for and none gave a text to try."""
        return bool(self.asked) and self.dropped + self.failed >= self.asked

    def __call__(self, prompt: str | list[dict[str, Any]]) -> str:
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        self.asked += 1
        response = self.lm.request(messages, allow_truncated=True)
        if is_truncated(response):
            self.truncated += 1
        return response.completions[0].text if response.completions else ""


@dataclasses.dataclass
class GEPAState:
    """GEPA's search state: the text search (gepa's engine), then the tuning of the other variables.

    Attributes:
        components: the texts evolved (variable name -> the program's own text).
        phase: ``"text"`` (gepa's search) or ``"variables"`` (TPE over the other variables).
        text_budget: the metric calls the text search may spend (None: unlimited).
        trials_planned: the other variables' trials (0: none to tune).
        space, names: the other variables' searchable space and the names searched.
        engine: the gepa adapter and tracker of the text search, once it started.
        summarized: whether the text search's candidates were summarised into ``details``.
        unkept: whether the engine state could not be kept as JSON (warned once).
        front_trials: the trials of the Pareto front's candidates.
        texts: the texts the other variables are tuned with.
        study: the other variables' Optuna study; variable_trials: its finished trials (JSON);
            variable_done: how many.
    """

    components: dict[str, str]
    text_budget: int | None
    trials_planned: int
    phase: str = "text"
    space: VariableSpace | None = None
    names: list[str] = dataclasses.field(default_factory=list)
    engine: tuple[_Adapter, _Tracker] | None = None
    summarized: bool = False
    unkept: bool = False
    front_trials: list[Trial] = dataclasses.field(default_factory=list)
    texts: dict[str, Any] = dataclasses.field(default_factory=dict)
    study: Any = None
    variable_trials: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    variable_done: int = 0


def _search(state: OptimizationState) -> GEPAState:
    search = state.search
    assert isinstance(search, GEPAState)
    return search


class GEPA(Optimizer):
    """Reflective prompt evolution (GEPA) over the program's text variables, with a Pareto frontier.

    Each iteration picks a candidate from the Pareto front of validation examples (or the best
    one), runs it on a minibatch of training examples with traces, shows the reflection LM the
    inputs, outputs and the metric's feedback (return :class:`~elixirml.Feedback` from the metric),
    and asks for a better text for one component (a predictor's instructions or a
    ``Variable.text``); the new candidate is kept when it beats its parent on that minibatch and
    is then scored on the validation set. The search engine is the reference ``gepa`` package
    (``pip install 'elixirml[gepa]'``).

    Beyond DSPy: after the text search, the program's other variables (numbers, choices, modules,
    LMs) are tuned with Optuna's TPE for the best texts (``variable_trials`` trials on the
    validation set), and ``last_result.details`` keeps every candidate with its lineage
    (``"candidates"``) and the Pareto front over validation examples (``"pareto_front"``).

    With a store configured the engine's state (candidates, per-example scores, Pareto front,
    counters), the random state and the minibatch sampler are kept as JSON at every iteration,
    then the tuning trials, so ``compile(..., resume=run_id)`` continues an interrupted run
    (never through gepa's pickled run directory; see docs/optimizers.md).

    Args:
        metric: ``metric(example, prediction, trace=None)`` returning a number or a
            :class:`~elixirml.Feedback`. A metric that takes DSPy's ``pred_name`` and
            ``pred_trace`` is asked again per predictor for feedback about that step.
        auto: ``"light"``, ``"medium"`` or ``"heavy"``: a metric-call budget sized for 6, 12
            or 18 candidates (see :func:`auto_metric_calls`); or None with ``max_metric_calls``.
        max_metric_calls: the metric-call budget (examples scored), instead of ``auto``.
        max_full_evals: DSPy's third form of budget: this many passes over trainset + valset.
        reflection_lm: the LM that reads the feedback and writes new texts (default: the
            program's LM, else the configured one). A strong model reflects far better.
        candidate_selection: ``"pareto"`` (sample from the Pareto front, GEPA's default) or
            ``"best"`` (always improve the best so far).
        reflection_minibatch_size: training examples per reflection step.
        skip_perfect_score: do not reflect on a minibatch the candidate already solves.
        use_merge: also try merging two candidates of the front (GEPA's merge proposer).
        reflection_prompt_template: gepa's prompt template (with ``<curr_param>`` and ``<side_info>``).
        search_variables: tune the program's non-text variables after the text search.
        variable_trials: trials of that tuning.
        track_stats: accepted for DSPy code; the candidates are always in ``last_result.details``.
        seed: the seed of every random choice.
        **kwargs: as for :class:`Optimizer` (``max_lm_calls``, ``timeout``, ...).
    """

    name = "GEPA"
    run_options = ("reflection_minibatch_size", "variable_trials")
    resumable = True
    keeps_run_state = True

    def __init__(
        self,
        metric: Any,
        *,
        auto: str | None = None,
        max_metric_calls: int | None = None,
        max_full_evals: int | None = None,
        reflection_lm: Any = None,
        candidate_selection: str = "pareto",
        candidate_selection_strategy: str | None = None,
        reflection_minibatch_size: int = 3,
        skip_perfect_score: bool = True,
        use_merge: bool = False,
        reflection_prompt_template: str | None = None,
        search_variables: bool = True,
        variable_trials: int = 8,
        track_stats: bool = False,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(metric, seed=seed, max_metric_calls=max_metric_calls, **kwargs)
        if metric is None:
            raise ConfigurationError("GEPA needs a metric (it may return em.Feedback(score, feedback=...))")
        if sum(x is not None for x in (auto, max_metric_calls, max_full_evals)) != 1:
            raise ConfigurationError(
                "GEPA needs exactly one budget: auto='light' | 'medium' | 'heavy', "
                "max_metric_calls=N or max_full_evals=N"
            )
        if auto is not None and auto not in AUTO_CANDIDATES:
            raise ConfigurationError(f"auto must be one of {list(AUTO_CANDIDATES)}, got {auto!r}")
        selection = candidate_selection_strategy or candidate_selection
        if selection not in SELECTION:
            raise ConfigurationError(f"candidate_selection must be one of {sorted(SELECTION)}, got {selection!r}")
        if self.metric is not None and self.metric.direction != "maximize":
            raise ConfigurationError("GEPA maximizes its metric; pass a metric whose direction is 'maximize'")
        self.auto = auto
        self.max_full_evals = max_full_evals
        self.track_stats = track_stats
        self.reflection_lm = reflection_lm
        self.candidate_selection = SELECTION[selection]
        self.reflection_minibatch_size = reflection_minibatch_size
        self.skip_perfect_score = skip_perfect_score
        self.use_merge = use_merge
        self.reflection_prompt_template = reflection_prompt_template
        self.search_variables = search_variables
        self.variable_trials = variable_trials

    def projected_calls(self, state: OptimizationState) -> int:
        per_run = max(1, len(state.program.named_predictors()))
        limit = self._metric_budget(state) or 0
        return limit * per_run + limit // max(1, 2 * self.reflection_minibatch_size)

    def _metric_budget(self, state: OptimizationState) -> int | None:
        """The run's metric-call budget: ``max_metric_calls``, ``max_full_evals`` or ``auto``, the smallest."""
        budget: int | None = self.run.budget["max_metric_calls"]
        if self.max_full_evals is not None:  # DSPy's unit: passes over the training and validation sets
            budget = self.max_full_evals * (len(state.trainset) + len(state.valset))
        if self.auto is not None:
            components = len(text_components(state.program))
            preset = auto_metric_calls(self.auto, len(state.valset), components, self.reflection_minibatch_size)
            budget = preset if budget is None else min(budget, preset)
        return budget

    def initialize(self, state: OptimizationState) -> None:
        _gepa()
        components = text_components(state.program)
        if not components:
            raise ConfigurationError("GEPA found no text to evolve: the program has no predictor or Variable.text")
        self.run.budget["max_metric_calls"] = self._metric_budget(state)
        total = self.run.budget["max_metric_calls"]
        space: VariableSpace | None = None
        names: list[str] = []
        if self.search_variables and self.variable_trials > 0:
            space, names = self.searchable(state, other_variables(state.program.variable_space(), include_text=False))
        trials = self.variable_trials if names else 0
        if total is not None and trials:
            # the variables' trials are paid out of the budget: at most half of it, the rest is GEPA's
            trials = min(trials, total // 2 // max(1, len(state.valset)))
        state.search = GEPAState(
            components=components,
            text_budget=None if total is None else total - trials * len(state.valset),
            trials_planned=trials,
            space=space,
            names=names,
        )
        resumed = self.resumed_state(state)
        if resumed is not None and resumed["phase"] == "variables":  # the text search was over: tune on
            self._restore_variables(state, resumed)

    def optimize_step(self, state: OptimizationState) -> bool:
        search = _search(state)
        if search.phase == "text":
            search.phase = "variables"
            self._evolve_texts(state)
            self.choose_texts(state)  # the texts the other variables are tuned with: proposed ones only if they won
            state.searched_best = None  # the choice is part of the search here: the tuning's best is kept from now on
            return self._prepare_variables(state)
        return self._variable_trial(state)

    # ------------------------------------------------------------------ text search (gepa)
    def _evolve_texts(self, state: OptimizationState) -> None:
        gepa = _gepa()
        lm = self.reflection_lm or state.program.get_lm()
        if lm is None:
            from ..settings import current

            lm = current().lm
        if lm is None:
            raise ConfigurationError("GEPA needs a reflection_lm (or a configured LM) to write new texts")
        if self.reflection_prompt_template is not None:
            for placeholder in ("<curr_param>", "<side_info>"):
                if placeholder not in self.reflection_prompt_template:
                    raise ConfigurationError(f"reflection_prompt_template must contain {placeholder}")
        from gepa.strategies.batch_sampler import EpochShuffledBatchSampler

        search = _search(state)
        adapter = _Adapter(self, state, search.components, _Reflection(lm), self.reflection_prompt_template)
        tracker = _Tracker()
        search.engine = (adapter, tracker)
        # the random state, the candidate selector and the minibatch sampler are ours, so a run state can keep them
        rng = random.Random(self.seed)
        sampler = EpochShuffledBatchSampler(minibatch_size=self.reflection_minibatch_size, rng=rng)
        resumed = self.resumed_state(state)
        pending = self._restore_text(state, resumed, adapter, tracker) if resumed is not None else None

        def keep(engine: Any) -> None:
            nonlocal pending
            try:
                if pending is not None:  # the resumed engine's first iteration: it becomes the kept one
                    for key, value in from_json(pending["engine"]).items():
                        setattr(engine, key, value)
                    version, internal, gauss = pending["rng"]
                    rng.setstate((version, tuple(internal), gauss))
                    for key, value in from_json(pending["sampler"]).items():
                        setattr(sampler, key, value)
                    pending = None
                self._keep_text(state, engine, rng, sampler)
            except Exception as exc:  # not lost in gepa's callback handling: the run stops with it
                raise _Carried(exc) from exc

        tracker.keep = keep
        stop: list[str] = []
        unscored = False

        def spent(_: Any) -> bool:
            reason = self.budget_spent(state)
            if reason is not None:
                stop.append(reason)
            return reason is not None

        try:
            gepa.optimize(
                seed_candidate=dict(search.components),
                trainset=list(state.trainset),
                valset=list(state.valset),
                adapter=adapter,
                candidate_selection_strategy=self._selector(rng),
                skip_perfect_score=self.skip_perfect_score,
                batch_sampler=sampler,
                use_merge=self.use_merge,
                max_metric_calls=search.text_budget,
                stop_callbacks=[spent],
                logger=_Logger(),
                callbacks=[tracker],
                track_best_outputs=False,
                display_progress_bar=False,
                seed=self.seed,
                raise_on_exception=True,
            )
        except _TextBudgetSpent:
            unscored = not adapter.full_trials  # not even the program as given was scored
        except _Carried as carried:
            raise carried.error from carried.error.__cause__
        finally:
            self._summarize(state)
        if unscored:  # the budget stopped the run before it began, not at the text search's own end
            raise _StopOptimization("max_metric_calls")
        if stop and stop[0] != "max_metric_calls":
            raise _StopOptimization(stop[0])

    def _selector(self, rng: random.Random) -> Any:
        from gepa.strategies.candidate_selector import (
            CurrentBestCandidateSelector,
            EpsilonGreedyCandidateSelector,
            ParetoCandidateSelector,
        )

        if self.candidate_selection == "pareto":
            return ParetoCandidateSelector(rng=rng)
        if self.candidate_selection == "current_best":
            return CurrentBestCandidateSelector()
        return EpsilonGreedyCandidateSelector(epsilon=0.1, rng=rng)  # gepa's own epsilon

    # ------------------------------------------------------------------ run state (resume)
    def _keep_text(self, state: OptimizationState, engine: Any, rng: random.Random, sampler: Any) -> None:
        """Keep the text search at the start of an iteration: the engine's state, our random state and sampler."""
        search = _search(state)
        if state.store is None or search.engine is None:
            return
        adapter, tracker = search.engine
        try:
            kept = {
                "phase": "text",
                "gepa": _gepa_version(),
                "engine": to_json({k: v for k, v in vars(engine).items() if k not in _NOT_KEPT}),
                "sampler": to_json({k: v for k, v in vars(sampler).items() if k != "rng"}),
                "rng": to_json(list(rng.getstate())),
                "candidates": to_json(tracker.candidates),
                "full_trials": {key: trial.number for key, trial in adapter.full_trials.items()},
                **adapter.reflection.counts(),
            }
        except _NoJSON as exc:
            if not search.unkept:
                search.unkept = True
                warnings.warn(
                    f"GEPA cannot keep this gepa version's engine state as JSON ({exc}); run {state.run_id!r} "
                    "will not resume its text search",
                    RuntimeWarning,
                    stacklevel=2,
                )
            return
        self.save_run_state(state, kept)

    def _restore_text(
        self, state: OptimizationState, resumed: dict[str, Any], adapter: _Adapter, tracker: _Tracker
    ) -> dict[str, Any]:
        """Put back what the adapter and tracker had; the engine's state is put back at its first iteration."""
        if resumed.get("gepa") != _gepa_version():
            raise ConfigurationError(
                f"Run {state.run_id!r} was kept by gepa {resumed.get('gepa')}, and gepa {_gepa_version()} is "
                "installed: its engine state may not fit. Resume with that gepa version, or start a new run."
            )
        rng = from_json(resumed["rng"])
        tracker.candidates = from_json(resumed["candidates"])
        tracker.skip_seed = True
        adapter.reflection.restore(resumed)
        by_number = {t.number: t for t in state.trials}
        adapter.full_trials = {k: by_number[n] for k, n in resumed["full_trials"].items() if n in by_number}
        seed = next(c for c in tracker.candidates if c["index"] == 0)
        if sorted(seed["scores"]) == list(range(len(state.valset))):
            adapter.seed_scores = [seed["scores"][i] for i in range(len(state.valset))]
        return {**resumed, "rng": rng}

    def _keep_variables(self, state: OptimizationState) -> None:
        """Keep the tuning of the other variables after each of its trials (the text search is over)."""
        search = _search(state)
        self.save_run_state(
            state,
            {
                "phase": "variables",
                "details": to_json(state.details),
                "front_trials": [t.number for t in search.front_trials],
                "texts": search.texts,
                "variable_trials": list(search.variable_trials),
                "text_choice": state.text_choice,
                "proposals": state.proposal_log,
            },
        )

    def _restore_variables(self, state: OptimizationState, resumed: dict[str, Any]) -> None:
        by_number = {t.number: t for t in state.trials}
        search = _search(state)
        search.phase = "variables"
        search.summarized = True
        search.front_trials = [by_number[n] for n in resumed["front_trials"] if n in by_number]
        search.texts = dict(resumed["texts"])
        search.variable_trials = list(resumed["variable_trials"])
        search.variable_done = len(resumed["variable_trials"])
        state.details.update(from_json(resumed["details"]))
        state.text_choice = resumed.get("text_choice")
        state.proposal_log[:] = resumed.get("proposals", [])
        if search.trials_planned and state.best_program is not None:
            self._new_study(state)

    def _summarize(self, state: OptimizationState) -> None:
        """Candidates with lineage and the Pareto front over validation examples, from what was scored."""
        search = _search(state)
        assert search.engine is not None
        adapter, tracker = search.engine
        candidates = tracker.candidates
        by_example: dict[int, list[int]] = {}
        for example in range(len(state.valset)):
            scored = [(c["scores"][example], c["index"]) for c in candidates if example in c["scores"]]
            if scored:
                best = max(s for s, _ in scored)
                by_example[example] = [i for s, i in scored if s == best]
        front = sorted({i for ids in by_example.values() for i in ids})
        for candidate in candidates:
            trial = adapter.full_trials.get(_key(candidate["texts"]))
            candidate["trial"] = trial.number if trial is not None else None
            del candidate["scores"]
        reflection = adapter.reflection
        if reflection.none_usable():
            warnings.warn(
                f"GEPA: none of its {reflection.asked} reflections gave a usable text ({reflection.dropped} "
                f"degenerate, {reflection.failed} failed; {reflection.truncated} cut off at the token limit), so "
                "no new text was tried. The reflection LM may be too weak for this task: pass "
                "reflection_lm= a stronger model.",
                RuntimeWarning,
                stacklevel=2,
            )
        search.summarized = True
        state.details = {
            "reflections": reflection.asked,
            "reflections_truncated": reflection.truncated,
            "reflections_dropped": reflection.dropped,
            "reflections_failed": reflection.failed,
            "candidates": candidates,
            "pareto_front": {"candidates": front, "by_example": by_example},
        }
        search.front_trials = [
            adapter.full_trials[_key(c["texts"])]
            for c in candidates
            if c["index"] in front and _key(c["texts"]) in adapter.full_trials
        ]

    # ------------------------------------------------------------------ other variables (TPE)
    def _prepare_variables(self, state: OptimizationState) -> bool:
        search = _search(state)
        search.texts, search.variable_trials, search.variable_done = dict(state.best_configuration), [], 0
        self._keep_variables(state)
        if not search.trials_planned or state.best_program is None:
            return False
        self._new_study(state)
        return True

    def _new_study(self, state: OptimizationState) -> None:
        """The TPE study of the other variables, with the trials an earlier leg finished told to it."""
        from ._search import _optuna

        optuna = _optuna()
        search = _search(state)
        done = search.variable_trials
        # a resumed study samples on from another seed: it knows the finished trials, not the sampler's random state
        seed = self.seed + len(done)
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(4, search.trials_planned))
        study = optuna.create_study(direction="maximize", sampler=sampler)
        for trial in done:
            study.add_trial(
                optuna.trial.create_trial(
                    params=trial["params"],
                    distributions={
                        n: optuna.distributions.json_to_distribution(d) for n, d in trial["distributions"].items()
                    },
                    value=trial["value"],
                )
            )
        search.study = study

    def _variable_trial(self, state: OptimizationState) -> bool:
        search = _search(state)
        if search.variable_done >= search.trials_planned or search.study is None or search.space is None:
            return False
        limit = self.run.budget["max_metric_calls"]
        if limit is not None and self.run.metric_calls + len(state.valset) > limit:
            raise _StopOptimization("max_metric_calls")
        study, space = search.study, search.space
        trial = study.ask()
        config = {**search.texts, **suggest_space(trial, space, search.names, space.current())}
        started = time.perf_counter()
        with track_usage() as usage:
            candidate = state.program.with_configuration(config)
            result = self.evaluate(candidate, state.valset)
        self.record_trial(state, config, result, candidate, usage=usage, wall_time=time.perf_counter() - started)
        study.tell(trial, result.score)
        from ._search import _optuna

        distribution_to_json = _optuna().distributions.distribution_to_json
        search.variable_trials.append(
            {
                "params": dict(trial.params),
                "distributions": {n: distribution_to_json(d) for n, d in trial.distributions.items()},
                "value": result.score,
            }
        )
        search.variable_done += 1
        self._keep_variables(state)
        return search.variable_done < search.trials_planned

    def text_originals(self, state: OptimizationState) -> dict[str, str]:
        search = state.search
        return dict(search.components if isinstance(search, GEPAState) else text_components(state.program))

    def finalize(self, state: OptimizationState) -> Module:
        search = state.search
        if isinstance(search, GEPAState) and search.engine is not None and not search.summarized:
            self._summarize(state)
        return super().finalize(state)

    def _result_extras(self, state: OptimizationState) -> dict[str, Any]:
        front = state.search.front_trials if isinstance(state.search, GEPAState) else []
        assert self.metric is not None
        return {"pareto_front": front, "directions": {self.metric.name: "maximize"} if front else {}}
