"""Search optimizers: RandomSearch, MIPRO (Optuna TPE) and the multi-objective VariableSearch."""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

from ..errors import ConfigurationError, MissingDependencyError, OptionError
from ..evaluation import MEASURED, EvaluationResult, as_metric
from ..lm import Usage, track_usage
from ..program import Module, configuration_from_json, configuration_to_json, demo_from_json, demo_to_json
from ..schema import Example
from ..store import store_url
from ..variables import Variable, VariableSpace
from ._base import OptimizationState, Optimizer, Trial
from ._choice import implicit_key, instruction_originals
from ._fewshot import bootstrap_demos, labeled_demos
from ._propose import propose_instructions
from ._structure import choose_structure, distinct_structures, filter_instructions, structural_names

IMPLICIT = ("instructions", "demos")


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise MissingDependencyError("optuna", "optimize", "MIPRO and VariableSearch") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def other_variables(space: VariableSpace, *, include_text: bool = True) -> list[str]:
    """Searchable variables that are not a predictor's instructions or demos."""
    names = []
    for name in space.searchable():
        entry = space.entry(name)
        variable = entry.variable
        is_predictor = hasattr(entry.owner, "signature") and hasattr(entry.owner, "demos")
        if is_predictor and entry.local in IMPLICIT and entry.local not in _declared(entry.owner):
            continue
        if variable.kind == "demos":
            continue
        if variable.kind == "text" and (not include_text or not variable.candidates):
            continue
        names.append(name)
    return names


def _declared(owner: Any) -> set[str]:
    from ..variables import class_variables

    return {n for n, _ in class_variables(type(owner))}


def suggest(trial: Any, name: str, variable: Variable) -> Any:
    """Ask an Optuna trial for a value of ``variable``."""
    kind = variable.kind
    if kind == "float":
        return trial.suggest_float(name, variable.low, variable.high, log=variable.log, step=variable.step)
    if kind == "int":
        return trial.suggest_int(
            name, int(variable.low or 0), int(variable.high or 0), log=variable.log, step=int(variable.step or 1)
        )
    if kind == "bool":
        return trial.suggest_categorical(name, [False, True])
    if kind in ("choice", "module", "lm"):
        options = list(variable.options)
        if all(isinstance(o, (str, int, float, bool)) or o is None for o in options):
            return trial.suggest_categorical(name, options)
        return options[trial.suggest_categorical(name, list(range(len(options))))]
    if kind == "text":
        texts = [variable.default, *variable.candidates]
        return texts[trial.suggest_categorical(name, list(range(len(texts))))]
    raise ConfigurationError(f"Cannot search variable {name!r} of kind {kind}")


def suggest_space(trial: Any, space: VariableSpace, names: Sequence[str], base: Mapping[str, Any]) -> dict[str, Any]:
    """Values for ``names`` in dependency order, skipping variables whose condition does not hold."""
    values = dict(base)
    chosen: dict[str, Any] = {}
    for name in space._order:  # dependency order: conditions are decided before what they gate
        if name not in names or not space.is_active(name, values):
            continue
        values[name] = chosen[name] = suggest(trial, name, space[name])
    return chosen


def _full_minibatch(valset: Sequence[Example], size: int, rng: random.Random) -> list[Example]:
    return list(valset) if len(valset) <= size else rng.sample(list(valset), size)


@dataclasses.dataclass
class RandomSearchState:
    """RandomSearch's search state.

    Attributes:
        space: the searchable space (unusable options removed), when variables are searched.
        others: the searched variables that are not structural.
        candidates: trial number -> the candidate index it scored.
    """

    space: VariableSpace | None = None
    others: list[str] = dataclasses.field(default_factory=list)
    candidates: dict[int, int] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class MIPROState:
    """MIPRO's search state.

    Attributes:
        study: the Optuna study of the run.
        instructions: predictor -> instruction candidates (the original first).
        demo_sets: predictor -> demo-set candidates (zero demos first).
        full: trial number (as text) -> whole-validation-set score, for the trials scored on it.
        space: the searchable space; others: its variables searched besides instructions and demos.
    """

    study: Any
    instructions: dict[str, list[str]]
    demo_sets: dict[str, list[list[Example]]]
    space: VariableSpace
    others: list[str]
    full: dict[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class VariableSearchState:
    """VariableSearch's search state.

    Attributes:
        study: the Optuna study of the run.
        space: the searchable space; names: its variables searched.
        instructions: instruction variable name -> its candidates (a ``Variable.text``).
        front: the Pareto-optimal trials, once the run is over.
    """

    study: Any
    space: VariableSpace
    names: list[str]
    instructions: dict[str, Variable]
    front: list[Trial] = dataclasses.field(default_factory=list)


def _random(state: OptimizationState) -> RandomSearchState:
    search = state.search
    assert isinstance(search, RandomSearchState)
    return search


def _mipro(state: OptimizationState) -> MIPROState:
    search = state.search
    assert isinstance(search, MIPROState)
    return search


def _variables(state: OptimizationState) -> VariableSearchState:
    search = state.search
    assert isinstance(search, VariableSearchState)
    return search


class RandomSearch(Optimizer):
    """Try candidate programs and keep the best on the validation set.

    Candidates: zero-shot, labelled demos, and bootstrapped demo sets from shuffled trainsets
    of random sizes; with ``search_variables`` each candidate after the first also samples the
    program's other variables (temperature, module choice, decoding, ...).

    Args:
        metric: the score to maximise.
        num_candidates: programs to try.
        max_bootstrapped_demos: the most bootstrapped demos per predictor.
        max_labeled_demos: the most demos per predictor.
        search_variables: also sample the program's other variables.
        restrict: try only these candidates, by number: 0 the program as given (zero-shot), 1
            labelled demos, 2 demos bootstrapped in trainset order, 3 and up bootstrapped from
            shuffled trainsets (any iterable; also a per-run option of ``compile``).
            ``BootstrapFewShotWithRandomSearch`` numbers them from -3, as DSPy's seeds.
        **kwargs: as for :class:`Optimizer`.

    Raises:
        OptionError: ``restrict`` names no candidate of ``num_candidates`` (at compile).
    """

    name = "RandomSearch"
    run_options = ("num_candidates", "max_bootstrapped_demos", "max_labeled_demos", "restrict")
    #: The number ``restrict`` gives the first candidate (the zero-shot program).
    first_candidate: ClassVar[int] = 0
    resumable = True
    keeps_run_state = True

    def __init__(
        self,
        metric: Any,
        num_candidates: int = 8,
        max_bootstrapped_demos: int = 4,
        max_labeled_demos: int = 16,
        *,
        search_variables: bool = True,
        restrict: Iterable[int] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(metric, **kwargs)
        self.num_candidates = num_candidates
        self.max_bootstrapped_demos = max_bootstrapped_demos
        self.max_labeled_demos = max_labeled_demos
        self.search_variables = search_variables
        self.restrict = restrict

    @property
    def restrict(self) -> frozenset[int] | None:
        """The candidates to try, by number (None: all of them)."""
        return self._restrict

    @restrict.setter
    def restrict(self, value: Iterable[int] | None) -> None:
        self._restrict = frozenset(value) if value is not None else None  # a one-use iterator is read once

    def _allowed(self, first: int) -> list[int]:
        """The candidate indexes from ``first`` on that ``restrict`` lets through."""
        restrict = self.restrict
        return [
            i for i in range(first, self.num_candidates) if restrict is None or i + self.first_candidate in restrict
        ]

    def projected_calls(self, state: OptimizationState) -> int:
        """The structures first (on a sample, the program as given too), then the candidates on the whole valset.

        Structure trials stand for the first candidates; each bootstrapped candidate runs the
        teacher in whole batches of ``concurrency`` until about 3 x its demos (an estimate: few
        passing rows mean more runs).
        """
        per_run = max(1, len(state.program.named_predictors()))
        val = len(state.valset)
        structures = 0
        if self.search_variables:
            with warnings.catch_warnings():  # initialize warns about the variables it leaves out, once
                warnings.simplefilter("ignore")
                space, names = self.searchable(state, other_variables(state.program.variable_space()))
            structures = len(distinct_structures(state, space, structural_names(space, names), self.seed)) - 1
        structures = min(structures, self.num_candidates)
        sample = min(max(50, val // 2), val)
        evaluations = (sample if structures else 0) + structures * sample + (self.num_candidates - structures) * val
        batch = max(1, self.concurrency)
        teacher_runs = min(len(state.trainset), math.ceil(self.max_bootstrapped_demos * 3 / batch) * batch)
        bootstrapped = max(0, self.num_candidates - max(2, structures))
        return (evaluations + bootstrapped * teacher_runs) * per_run

    def _candidate_demos(self, state: OptimizationState, index: int) -> dict[str, list[Example]]:
        program = state.program
        names = [n for n, _ in program.named_predictors()]
        if index == 0:
            return {n: [] for n in names}
        rng = random.Random(self.seed * 1000 + index)
        if index == 1:
            chosen = labeled_demos(state.trainset, self.max_labeled_demos, rng)
            return {n: list(chosen) for n in names}
        train = list(state.trainset)
        size = self.max_bootstrapped_demos
        if index > 2:
            rng.shuffle(train)
            size = rng.randint(1, max(1, self.max_bootstrapped_demos))
        assert self.metric is not None
        demos, used = bootstrap_demos(
            self.teacher_for(state), train, self.metric, max_demos=size, concurrency=self.concurrency
        )
        out = {}
        for n in names:
            boot = demos.get(n, [])[:size]
            room = max(0, min(self.max_labeled_demos, size * 2) - len(boot))
            out[n] = boot + labeled_demos(train, room, rng, used)
        return out

    def initialize(self, state: OptimizationState) -> None:
        if not self._allowed(0):
            last = self.first_candidate + self.num_candidates - 1
            raise OptionError(
                f"{self.name}: restrict={sorted(self.restrict or ())} names no candidate; the candidates are "
                f"numbered {self.first_candidate} to {last} (num_candidates={self.num_candidates}), so no program "
                "would be evaluated. Pass numbers in that range, or restrict=None for all."
            )
        resumed = self.resumed_state(state)
        search = RandomSearchState()
        state.search = search
        if self.search_variables:
            space, names = self.searchable(state, other_variables(state.program.variable_space()))
            structural = structural_names(space, names)
            search.space, search.others = space, [n for n in names if n not in structural]
            if resumed is not None:  # an earlier leg of this run chose it (its trials were restored)
                state.structure = configuration_from_json(resumed["structure"])
            else:
                state.structure = choose_structure(
                    self, state, space, structural, sample_size=max(50, len(state.valset) // 2)
                )
        candidates = resumed["candidates"] if resumed is not None else {}
        search.candidates = {int(k): v for k, v in candidates.items()}  # trial number -> candidate index
        if resumed is not None and state.best_program is None and resumed.get("best") is not None:
            best = int(resumed["best"])  # a best configuration with no JSON form: built again from its index
            state.best_configuration = self._candidate(state, best)
            state.best_program = state.program.with_configuration(state.best_configuration)
        self._keep(state)

    def _keep(self, state: OptimizationState) -> None:
        """Keep what a resumed run needs: the chosen structure and which candidate each trial scored."""
        candidates = _random(state).candidates
        best = max(
            (t for t in state.trials if t.number in candidates and t.full and t.status == "complete"),
            key=lambda t: t.score,
            default=None,
        )
        self.save_run_state(
            state,
            {
                "structure": configuration_to_json(state.structure or {}),
                "candidates": {str(k): v for k, v in candidates.items()},
                "best": candidates[best.number] if best is not None else None,
            },
        )

    def _candidate(self, state: OptimizationState, index: int) -> dict[str, Any]:
        config: dict[str, Any] = {implicit_key(n, "demos"): d for n, d in self._candidate_demos(state, index).items()}
        search = _random(state)
        if self.search_variables and index > 0 and search.space is not None:
            sampled = search.space.sample(random.Random(self.seed * 7919 + index))
            config.update(state.structure or {})
            config.update({k: sampled[k] for k in search.others if k in sampled})
        return config

    def optimize_step(self, state: OptimizationState) -> bool:
        # the next candidate: after those this run scored (in earlier legs too); the structure trials
        # stand for the first candidates (the program as given, in each structure)
        first = max(_random(state).candidates.values(), default=len(state.trials) - 1) + 1
        allowed = self._allowed(first)
        if not allowed:
            return False
        indices = allowed[: self.trial_slots(state, len(state.valset), len(allowed))]
        configs: list[dict[str, Any]] = []
        spent: list[Usage] = []
        for index in indices:  # building a candidate may bootstrap demos: its calls count in its trial
            with track_usage() as building:
                configs.append(self._candidate(state, index))
            spent.append(building)
        candidates = [state.program.with_configuration(config) for config in configs]
        outcomes = self.evaluate_trials([(candidate, state.valset) for candidate in candidates])
        try:
            for index, config, candidate, before, (result, usage, seconds) in zip(
                indices, configs, candidates, spent, outcomes
            ):
                usage.add(before)  # the trial's calls: building its candidate, then evaluating it
                trial = self.record_trial(state, config, result, candidate, usage=usage, wall_time=seconds)
                _random(state).candidates[trial.number] = index
        finally:
            self._keep(state)
        return len(indices) < len(allowed)


def upper_bound(percent: float, n: int, z: float = 1.96) -> float:
    """The upper end of the 95% Wilson interval of an accuracy (in %) measured on ``n`` examples."""
    if n <= 0:
        return 100.0
    p = percent / 100
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return 100 * (centre + half)


def _params_key(params: dict[str, Any]) -> str:
    """A configuration's Optuna parameters as one comparable key."""
    return json.dumps(params, sort_keys=True, default=str)


AUTO = {
    "light": {"num_candidates": 4, "num_trials": 20, "minibatch_size": 25, "full_eval_steps": 5},
    "medium": {"num_candidates": 8, "num_trials": 40, "minibatch_size": 35, "full_eval_steps": 5},
    "heavy": {"num_candidates": 12, "num_trials": 80, "minibatch_size": 50, "full_eval_steps": 10},
}


class MIPRO(Optimizer):
    """Instructions x demo sets x every other variable, searched with Optuna's TPE sampler.

    0. Probe the program (no LM call) and leave out variables that change no request.
    1. Score the program as given on the validation set (the result is never worse there).
    2. Structure first: score each predictor's prompt format x decoding mode, with the original
       instructions and demos, on a sample of ``max(2 x minibatch, 50)`` validation examples,
       and keep the best (``last_result.details["structure"]``).
    3. Bootstrap demo-set candidates per predictor (always including zero demos).
    4. Propose instruction candidates with an LM, grounded in a dataset summary, the program's
       structure and bootstrapped demos (the current instruction stays a candidate); keep only
       those that score at least as well as the original on a probe set of 16 training examples
       (``details["instructions_dropped"]`` counts the others).
    5. Search instruction x demo set x the program's other variables (module choice,
       temperature, LM choice, ...) with TPE around the chosen structure, scoring trials on
       minibatches of the validation set and, every few trials, the best so far on all of it;
       at the end, promote configurations to the whole set while their minibatch interval
       still reaches the best whole-set score.

    Trials are stored as they finish in an Optuna study in the store database, so a killed run
    continues with ``compile(..., resume=run_id)``; with the LM cache no finished call is paid
    twice.

    Args:
        metric: the score to maximise.
        auto: ``"light"``, ``"medium"`` or ``"heavy"`` (candidates, trials, minibatch size).
        proposer_lm: the LM that proposes instructions (default: the task LM).
        num_candidates: instruction and demo-set candidates per predictor (overrides ``auto``).
        num_trials: search trials (overrides ``auto``).
        minibatch_size: examples per minibatch trial.
        max_bootstrapped_demos: bootstrapped demos per demo set.
        max_labeled_demos: the most demos per set.
        storage: an Optuna storage URL (default: the store database).
        seed: the seed of every random choice.
        max_promotions: at the end, the most configurations promoted from minibatches to the whole
            validation set (promotion stops earlier once no interval reaches the best score).
        **kwargs: as for :class:`Optimizer`.
    """

    name = "MIPRO"
    resumable = True
    run_options = ("num_candidates", "num_trials", "minibatch_size", "max_bootstrapped_demos", "max_labeled_demos")

    def __init__(
        self,
        metric: Any,
        auto: str | None = "light",
        *,
        proposer_lm: Any = None,
        num_candidates: int | None = None,
        num_trials: int | None = None,
        minibatch_size: int | None = None,
        max_bootstrapped_demos: int = 4,
        max_labeled_demos: int = 4,
        storage: str | None = None,
        seed: int = 0,
        max_promotions: int = 4,
        **kwargs: Any,
    ) -> None:
        super().__init__(metric, seed=seed, **kwargs)
        if auto is not None and auto not in AUTO:
            raise ConfigurationError(f"auto must be one of {list(AUTO)} or None, got {auto!r}")
        preset = AUTO[auto or "light"]
        self.auto = auto
        self.proposer_lm = proposer_lm
        self.num_candidates = num_candidates or preset["num_candidates"]
        self.num_trials = num_trials or preset["num_trials"]
        self.minibatch_size = minibatch_size or preset["minibatch_size"]
        self.full_eval_steps = preset["full_eval_steps"]
        self.max_bootstrapped_demos = max_bootstrapped_demos
        self.max_labeled_demos = max_labeled_demos
        self.storage = storage
        self.structure_sample = max(2 * self.minibatch_size, 50)
        self.max_promotions = max_promotions

    def text_originals(self, state: OptimizationState) -> dict[str, str]:
        return instruction_originals(state.program)

    def projected_calls(self, state: OptimizationState) -> int:
        """Every phase's calls: baseline, structures, bootstrapping, proposals and their probe, trials, promotions.

        Structures are probed (no LM call) to count the distinct ones; promotions are counted at
        their most (``max_promotions``), and so is the final paired comparison of a proposed
        instruction (one more pass over the validation set).
        """
        predictors = max(1, len(state.program.named_predictors()))
        val = len(state.valset)
        mini = min(self.minibatch_size, val)
        with warnings.catch_warnings():  # initialize warns about the variables it leaves out, once
            warnings.simplefilter("ignore")
            # as initialize: the searchable space (a decoding this LM cannot use is not probed: the probe would raise)
            space, others = self.searchable(state, other_variables(state.program.variable_space()))
        names = structural_names(space, others)
        structures = len(distinct_structures(state, space, names, self.seed)) - 1
        sample = min(self.structure_sample, val)
        fulls = 0 if val <= self.minibatch_size else self.num_trials // self.full_eval_steps + 1
        promotions = 0 if val <= self.minibatch_size else self.max_promotions
        bootstrap = (self.num_candidates - 2) * self.max_bootstrapped_demos * 2 * predictors
        proposals = 1 + (self.num_candidates - 1) * predictors
        probe = (1 + (self.num_candidates - 1) * predictors) * min(16, len(state.trainset))
        evaluations = (
            val  # the program as given
            + structures * sample
            + probe
            + self.num_trials * mini
            + (fulls + promotions + 1) * val  # full evaluations, promotions, the final paired comparison
            + (val if structures and val > self.structure_sample else 0)  # the chosen structure on the whole set
        )
        return evaluations * predictors + bootstrap + proposals

    # ------------------------------------------------------------------ setup
    def _demo_sets(self, state: OptimizationState) -> dict[str, list[list[Example]]]:
        program = state.program
        names = [n for n, _ in program.named_predictors()]
        sets: dict[str, list[list[Example]]] = {n: [[]] for n in names}
        rng = random.Random(self.seed)
        labeled = labeled_demos(state.trainset, self.max_labeled_demos, rng)
        for n in names:
            sets[n].append(list(labeled))
        assert self.metric is not None
        for k in range(max(0, self.num_candidates - 2)):
            train = list(state.trainset)
            random.Random(self.seed * 1000 + k).shuffle(train)
            demos, used = bootstrap_demos(
                self.teacher_for(state),
                train,
                self.metric,
                max_demos=self.max_bootstrapped_demos,
                concurrency=self.concurrency,
            )
            for n in names:
                boot = demos.get(n, [])
                room = max(0, self.max_labeled_demos - len(boot))
                sets[n].append(boot + labeled_demos(train, room, rng, used))
        return sets

    def initialize(self, state: OptimizationState) -> None:
        optuna = _optuna()
        space, others = self.searchable(state, other_variables(state.program.variable_space()))
        structural = structural_names(space, others)
        others = [n for n in others if n not in structural]
        study_name = f"elixirml-mipro-{state.run_id}"
        storage = self.storage or store_url()
        sampler = optuna.samplers.TPESampler(
            seed=self.seed,
            n_startup_trials=min(8, max(2, self.num_trials // 3)),
            constant_liar=self.n_workers > 1,  # trials asked before others are told: do not ask the same one
        )
        study = optuna.create_study(
            study_name=study_name, storage=storage, direction="maximize", sampler=sampler, load_if_exists=True
        )
        attrs = study.user_attrs
        if "instructions" in attrs:  # resuming: reuse the candidates of the interrupted run
            state.structure = dict(attrs.get("structure", {}))
            state.instructions_dropped = int(attrs.get("instructions_dropped", 0))
            instructions = attrs["instructions"]
            demo_sets = {n: [[demo_from_json(d) for d in s] for s in sets] for n, sets in attrs["demo_sets"].items()}
            for trial in study.trials:
                if trial.state == optuna.trial.TrialState.RUNNING:
                    study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        else:
            baseline = self._evaluate_baseline(state)
            state.structure = choose_structure(
                self, state, space, structural, sample_size=self.structure_sample, baseline=baseline
            )
            if state.structure and len(state.valset) > self.structure_sample:
                # it won on a sample: scored on the whole set now, it is the result even if the search is cut short
                self.score_on_valset(state, state.structure)
            demo_sets = self._demo_sets(state)
            lm = self.proposer_lm or state.program.get_lm()
            proposed = propose_instructions(
                state.program,
                state.trainset,
                demo_sets,
                self.num_candidates,
                lm=lm,
                rng=random.Random(self.seed),
                log=state.proposal_log,
            )
            instructions, dropped = filter_instructions(self, state, proposed, state.structure)
            state.instructions_dropped = dropped
            study.set_user_attr("structure", configuration_to_json(state.structure))
            study.set_user_attr("instructions_dropped", dropped)
            study.set_user_attr("instructions", instructions)
            study.set_user_attr(
                "demo_sets", {n: [[demo_to_json(d) for d in s] for s in sets] for n, sets in demo_sets.items()}
            )
        state.search = MIPROState(
            study=study,
            instructions=instructions,
            demo_sets=demo_sets,
            full=dict(attrs.get("full", {})),
            space=space,
            others=others,
        )
        restored = bool(state.trials)  # from the store's trial rows (every trial, numbered as the run numbered them)
        for trial in study.trials:  # trials finished before a resume still count
            if not restored and trial.state == optuna.trial.TrialState.COMPLETE:
                state.trials.append(
                    Trial(
                        number=trial.number,
                        configuration=trial.user_attrs.get("config", {}),
                        score=float(trial.value),
                        full=bool(trial.user_attrs.get("full", False)),
                        lm_calls=int(trial.user_attrs.get("lm_calls", 0)),
                    )
                )
        for number, score in _mipro(state).full.items():
            if score > state.best_score:
                state.best_score = score
                state.best_configuration = self._config_from_params(state, self._params_of(study, int(number)))

    def _evaluate_baseline(self, state: OptimizationState) -> EvaluationResult:
        """Score the program as given on the whole validation set: the result never does worse."""
        started = time.perf_counter()
        with track_usage() as usage:
            result = self.evaluate(state.program, state.valset)
        self.record_trial(
            state, {}, result, state.program.deepcopy(), usage=usage, wall_time=time.perf_counter() - started
        )
        return result

    def _params_of(self, study: Any, number: int) -> dict[str, Any]:
        return dict(study.trials[number].params)

    def _config_from_params(self, state: OptimizationState, params: Mapping[str, Any]) -> dict[str, Any]:
        search = _mipro(state)
        config: dict[str, Any] = dict(state.structure or {})
        for name, texts in search.instructions.items():
            config[implicit_key(name, "instructions")] = texts[params[f"{name}::instruction"]]
            config[implicit_key(name, "demos")] = search.demo_sets[name][params[f"{name}::demos"]]
        space = search.space
        for name in search.others:
            if name in params:
                variable = space[name]
                value = params[name]
                if variable.kind == "text":
                    value = [variable.default, *variable.candidates][value]
                elif variable.kind in ("choice", "module", "lm") and not all(
                    isinstance(o, (str, int, float, bool)) or o is None for o in variable.options
                ):
                    value = list(variable.options)[value]
                config[name] = value
        return config

    # ------------------------------------------------------------------ search
    def _ask(self, state: OptimizationState, study: Any) -> tuple[Any, dict[str, Any], list[Example]]:
        """One new trial of the study: the Optuna trial, its configuration and its minibatch."""
        trial = study.ask()
        params: dict[str, Any] = {}
        search = _mipro(state)
        for name, texts in search.instructions.items():
            params[f"{name}::instruction"] = trial.suggest_categorical(f"{name}::instruction", list(range(len(texts))))
            params[f"{name}::demos"] = trial.suggest_categorical(
                f"{name}::demos", list(range(len(search.demo_sets[name])))
            )
        config = self._config_from_params(state, params)
        config.update(suggest_space(trial, search.space, search.others, search.space.current()))
        minibatch = _full_minibatch(state.valset, self.minibatch_size, random.Random(self.seed * 104729 + trial.number))
        return trial, config, minibatch

    def optimize_step(self, state: OptimizationState) -> bool:
        optuna = _optuna()
        search = _mipro(state)
        study = search.study
        done = len([t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE])
        if done >= self.num_trials:
            self._promote_close_calls(state)
            return False
        slots = self.trial_slots(state, min(self.minibatch_size, len(state.valset)), self.num_trials - done)
        asked = [self._ask(state, study) for _ in range(slots)]
        told, full_eval_due = 0, False
        try:
            candidates = [state.program.with_configuration(config) for _, config, _ in asked]
            outcomes = self.evaluate_trials([(c, minibatch) for c, (_, _, minibatch) in zip(candidates, asked)])
            for (trial, config, minibatch), candidate, (result, usage, seconds) in zip(asked, candidates, outcomes):
                full = len(minibatch) == len(state.valset)
                trial.set_user_attr("config", configuration_to_json(config))
                trial.set_user_attr("full", full)
                trial.set_user_attr("lm_calls", usage.calls)
                self.record_trial(state, config, result, candidate, usage=usage, wall_time=seconds, full=full)
                study.tell(trial, result.score)
                told += 1
                if full:
                    search.full[str(trial.number)] = result.score
                    study.set_user_attr("full", search.full)
                elif (done + told) % self.full_eval_steps == 0:
                    full_eval_due = True
        finally:
            for trial, _, _ in asked[told:]:  # a stop or an error: the trials not told are failed ones
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
        if full_eval_due:  # every full_eval_steps trials, the best so far on the whole validation set
            self._full_eval_best(state)
        return True

    def _ranked_groups(self, state: OptimizationState) -> list[list[Any]]:
        """Minibatch trials grouped by configuration (not yet scored on the whole set), best mean first.

        TPE often tries a configuration more than once, each time on another minibatch: the mean
        of those scores ranks it (one lucky minibatch does not); ties go to the more often tried,
        then the earliest.
        """
        optuna = _optuna()
        search = _mipro(state)
        trials = search.study.trials  # one read of the study's storage
        scored = {_params_key(trials[int(number)].params) for number in search.full}
        groups: dict[str, list[Any]] = {}
        for trial in trials:
            if trial.state == optuna.trial.TrialState.COMPLETE:
                key = _params_key(trial.params)
                if key not in scored:
                    groups.setdefault(key, []).append(trial)
        return sorted(groups.values(), key=lambda ts: (-sum(t.value for t in ts) / len(ts), -len(ts), ts[0].number))

    def _full_eval_best(self, state: OptimizationState) -> None:
        """Score the configuration with the best mean minibatch score on the whole validation set, once."""
        ranked = self._ranked_groups(state)
        if not ranked:
            return
        first = ranked[0][0]
        config = self._config_from_params(state, first.params)
        started = time.perf_counter()
        with track_usage() as usage:
            candidate = state.program.with_configuration(config)
            result = self.evaluate(candidate, state.valset)
        search = _mipro(state)
        search.full[str(first.number)] = result.score
        search.study.set_user_attr("full", search.full)
        self.record_trial(state, config, result, candidate, usage=usage, wall_time=time.perf_counter() - started)

    def _promote_close_calls(self, state: OptimizationState) -> None:
        """At the end, promote configurations to the whole validation set while they may still win.

        The next configuration by mean minibatch score is scored on the whole set as long as the
        upper end of its 95% interval (over every minibatch example it was scored on) reaches the
        best whole-set score so far: how many are promoted follows the score differences seen.
        At most ``max_promotions``; the first is always promoted.
        """
        for promoted in range(self.max_promotions):
            ranked = self._ranked_groups(state)
            if not ranked:
                return
            group = ranked[0]
            mean = sum(t.value for t in group) / len(group)
            seen = len(group) * min(self.minibatch_size, len(state.valset))
            if promoted and upper_bound(mean, seen) < state.best_score:
                return
            self._full_eval_best(state)

    def finalize(self, state: OptimizationState) -> Module:
        if state.best_program is None and state.best_configuration:
            state.best_program = state.program.with_configuration(state.best_configuration)
        return super().finalize(state)


class VariableSearch(Optimizer):
    """Multi-objective search over the program's VariableSpace with Optuna.

    Objectives are metrics (maximised unless they say otherwise) and measured values:
    ``"cost"``, ``"latency"``, ``"tokens"`` (minimised). The returned program is the Pareto
    point closest to the ideal one (objectives scaled to [0, 1] over the front);
    ``last_result.pareto_front`` lists every Pareto-optimal trial and
    ``last_result.select(max_cost=...)`` builds another.

    Args:
        metrics: objectives: a list (``[accuracy, "cost", "latency"]``) or a name -> objective dict.
        directions: per objective, ``"maximize"`` or ``"minimize"`` (default: from each metric).
        n_trials: trials to run (default 24, the light budget).
        sampler: ``"tpe"`` (default, good for small budgets) or ``"nsga2"``.
        instruction_candidates: also search predictor instructions: a number of candidates to
            propose with an LM (as MIPRO does), or predictor name -> list of instructions.
        proposer_lm: the LM that proposes instructions (default: the task LM).
        seed: the seed of every random choice.
        **kwargs: as for :class:`Optimizer`.
    """

    name = "VariableSearch"
    resumable = True
    keeps_run_state = True

    def __init__(
        self,
        metrics: Sequence[Any] | Mapping[str, Any],
        directions: Sequence[str] | None = None,
        *,
        n_trials: int = 24,
        sampler: str = "tpe",
        instruction_candidates: int | Mapping[str, Sequence[str]] | None = None,
        proposer_lm: Any = None,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(None, seed=seed, **kwargs)
        self.instruction_candidates = instruction_candidates
        self.proposer_lm = proposer_lm
        items = (
            list(metrics.items())
            if isinstance(metrics, Mapping)
            else [(m if isinstance(m, str) else as_metric(m).name, m) for m in metrics]
        )
        if not items:
            raise ConfigurationError("VariableSearch needs at least one objective")
        self.objectives: dict[str, Any] = {}
        dirs: list[str] = []
        for name, objective in items:
            if isinstance(objective, str):
                if objective not in MEASURED:
                    raise ConfigurationError(f"Unknown measured objective {objective!r}; use {sorted(MEASURED)}")
                self.objectives[name] = objective
                dirs.append(MEASURED[objective])
            else:
                metric = as_metric(objective)
                self.objectives[name] = metric
                dirs.append(metric.direction)
        if directions is not None:
            if len(directions) != len(items) or any(d not in ("maximize", "minimize") for d in directions):
                raise ConfigurationError(
                    f"directions must list 'maximize'/'minimize' for each of {len(items)} objectives"
                )
            dirs = list(directions)
        self.directions = dict(zip(self.objectives, dirs))
        self.n_trials = n_trials
        if sampler not in ("tpe", "nsga2"):
            raise ConfigurationError("sampler must be 'tpe' or 'nsga2'")
        self.sampler = sampler

    def projected_calls(self, state: OptimizationState) -> int:
        return self.n_trials * len(state.valset) * max(1, len(state.program.named_predictors()))

    def initialize(self, state: OptimizationState) -> None:
        optuna = _optuna()
        if self.sampler == "tpe":
            sampler = optuna.samplers.TPESampler(
                seed=self.seed, n_startup_trials=min(10, max(2, self.n_trials // 3)), constant_liar=self.n_workers > 1
            )
        else:
            sampler = optuna.samplers.NSGAIISampler(seed=self.seed, population_size=max(4, min(20, self.n_trials // 3)))
        study = optuna.create_study(directions=list(self.directions.values()), sampler=sampler)
        space, names = self.searchable(state, other_variables(state.program.variable_space()))
        structural = structural_names(space, names)
        names = [n for n in names if n not in structural]
        resumed = self.resumed_state(state)
        if resumed is not None:  # an earlier leg: its structure, instructions and trials (the sampler learns them)
            state.structure = configuration_from_json(resumed["structure"])
            kept_texts = {
                key: Variable.text(texts[0], candidates=texts[1:]) for key, texts in resumed["instructions"].items()
            }
            for kept in resumed["trials"]:
                study.add_trial(
                    optuna.trial.create_trial(
                        params=kept["params"],
                        distributions={
                            name: optuna.distributions.json_to_distribution(d)
                            for name, d in kept["distributions"].items()
                        },
                        values=kept["values"],
                    )
                )
            state.search = VariableSearchState(study=study, space=space, names=names, instructions=kept_texts)
            return
        primary = next((m for m in self.objectives.values() if not isinstance(m, str)), None)
        if structural and primary is not None:  # structure first, judged by the first metric objective
            self.metric = primary
            try:
                state.structure = choose_structure(
                    self, state, space, structural, sample_size=len(state.valset), record=False
                )
            finally:
                self.metric = None
        instructions: dict[str, Variable] = {}
        choices = self.instruction_candidates
        if isinstance(choices, int) and choices > 1:
            lm = self.proposer_lm or state.program.get_lm()
            choices = propose_instructions(
                state.program,
                state.trainset,
                {},
                choices,
                lm=lm,
                rng=random.Random(self.seed),
                log=state.proposal_log,
            )
        if isinstance(choices, Mapping):
            current = dict(state.program.named_predictors())
            for predictor, texts in choices.items():
                if predictor not in current:
                    raise ConfigurationError(f"No predictor {predictor!r}; predictors: {list(current)}")
                original = current[predictor].signature.instructions
                others = [t for t in texts if t != original]
                if others:
                    instructions[implicit_key(predictor, "instructions")] = Variable.text(original, candidates=others)
        if not names and not instructions:
            raise ConfigurationError("VariableSearch found no variables to search in this program")
        state.search = VariableSearchState(study=study, space=space, names=names, instructions=instructions)
        self._keep(state)

    def _keep(self, state: OptimizationState) -> None:
        """Keep what a resumed run needs: the structure, the instruction candidates and the study's trials."""
        optuna = _optuna()
        search = _variables(state)
        trials = [
            {
                "params": trial.params,
                "distributions": {
                    name: optuna.distributions.distribution_to_json(d) for name, d in trial.distributions.items()
                },
                "values": trial.values,
            }
            for trial in search.study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.COMPLETE])
        ]
        instructions = {key: [v.default, *v.candidates] for key, v in search.instructions.items()}
        self.save_run_state(
            state,
            {
                "structure": configuration_to_json(state.structure or {}),
                "instructions": instructions,
                "trials": trials,
            },
        )

    def optimize_step(self, state: OptimizationState) -> bool:
        if len(state.trials) >= self.n_trials:
            return False
        search = _variables(state)
        study, space = search.study, search.space
        asked = []
        for _ in range(self.trial_slots(state, 0, self.n_trials - len(state.trials))):
            trial = study.ask()
            config = {
                **(state.structure or {}),
                **suggest_space(trial, space, search.names, space.current()),
            }
            for key, variable in search.instructions.items():
                config[key] = suggest(trial, key, variable)
            asked.append((trial, config, state.program.with_configuration(config)))
        outcomes = self.evaluate_trials([(c, state.valset) for _, _, c in asked], metrics=self.objectives)
        names = list(self.objectives)
        try:
            for (trial, config, candidate), (result, usage, seconds) in zip(asked, outcomes):
                record = self.record_trial(state, config, result, candidate, usage=usage, wall_time=seconds)
                values = [result.metric(n) for n in names]
                record.scores = dict(zip(names, values))
                study.tell(trial, values)
        finally:
            self._keep(state)
        return len(state.trials) < self.n_trials

    def _front(self, state: OptimizationState) -> list[Trial]:
        names = list(self.objectives)
        signs = [1 if self.directions[n] == "maximize" else -1 for n in names]
        complete = [t for t in state.trials if t.status == "complete"]
        front = []
        for t in complete:
            dominated = False
            for other in complete:
                if other is t:
                    continue
                better_or_equal = all(s * other.scores[n] >= s * t.scores[n] for n, s in zip(names, signs))
                strictly = any(s * other.scores[n] > s * t.scores[n] for n, s in zip(names, signs))
                if better_or_equal and strictly:
                    dominated = True
                    break
            if not dominated:
                front.append(t)
        return front

    def finalize(self, state: OptimizationState) -> Module:
        front = self._front(state)
        if isinstance(state.search, VariableSearchState):
            state.search.front = front
        if not front:
            return state.program.deepcopy()
        names = list(self.objectives)
        lows = {n: min(t.scores[n] for t in front) for n in names}
        highs = {n: max(t.scores[n] for t in front) for n in names}

        def distance(t: Trial) -> float:
            total = 0.0
            for n in names:
                span = highs[n] - lows[n] or 1.0
                scaled = (t.scores[n] - lows[n]) / span
                gap = 1 - scaled if self.directions[n] == "maximize" else scaled
                total += gap * gap
            return math.sqrt(total)

        chosen = min(front, key=distance)
        state.best_score = chosen.score
        state.best_configuration = self._configuration(state, chosen)
        return state.program.with_configuration(state.best_configuration)

    def _searched(self, state: OptimizationState) -> set[str]:
        """The variables the run searched (none when it stopped before its search was set up)."""
        search = state.search
        if not isinstance(search, VariableSearchState):
            return set(state.structure or {})
        return {*search.names, *search.instructions, *(state.structure or {})}

    def _configuration(self, state: OptimizationState, trial: Trial) -> dict[str, Any]:
        names = self._searched(state)
        return {k: v for k, v in trial.configuration.items() if k in names}

    def _result_extras(self, state: OptimizationState) -> dict[str, Any]:
        program = state.program
        names = self._searched(state)

        def build(config: Mapping[str, Any]) -> Module:
            return program.with_configuration({k: v for k, v in config.items() if k in names})

        front = state.search.front if isinstance(state.search, VariableSearchState) else []
        return {"pareto_front": front, "directions": dict(self.directions), "_builder": build}
