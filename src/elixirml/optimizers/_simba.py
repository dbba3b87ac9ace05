"""SIMBA: stochastic introspective mini-batch ascent (rules and demos from high-variance examples)."""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from typing import Any

from ..errors import ConfigurationError, OutputError, ProviderError
from ..evaluation import EvaluationResult, ExampleResult
from ..lm import track_usage
from ..program import Module, Predict, configuration_from_json, configuration_to_json, forced_settings
from ..schema import Example, InputField, OutputField, Signature
from ._base import OptimizationState, Optimizer
from ._choice import implicit_key, instruction_originals
from ._propose import instruction_verdict


class OfferFeedback(Signature):
    """Two runs of the same step of a language-model program on the same input: one scored better than the other. Write one short rule (one or two sentences) for the step's instructions that would make it behave like the better run. Answer with the rule only."""  # noqa: E501

    step_signature: str = InputField(desc="the inputs and outputs of the step")
    current_instruction: str = InputField(desc="the step's instruction")
    better_run: str = InputField(desc="inputs, outputs, score and feedback of the better run, as JSON")
    worse_run: str = InputField(desc="inputs, outputs, score and feedback of the worse run, as JSON")
    rule: str = OutputField(desc="the rule to add to the instruction")


def _softmax_pick(rng: Any, scores: list[float], temperature: float, k: int) -> list[int]:
    """``k`` indexes drawn (with replacement) with probability softmax(score / temperature)."""
    top = max(scores)
    weights = [math.exp((s - top) / max(temperature, 1e-6)) for s in scores]
    return [rng.choices(range(len(scores)), weights=weights)[0] for _ in range(k)]


@dataclasses.dataclass
class SIMBAState:
    """SIMBA's search state.

    Attributes:
        pool: the candidate programs, each ``{"config": ..., "scores": [minibatch scores]}``;
            the first is the program as given.
        step: the next step.
        rules: every rule the LM wrote.
        final: pool index -> validation score, for the pool programs scored at the end.
    """

    pool: list[dict[str, Any]] = dataclasses.field(default_factory=lambda: [{"config": {}, "scores": []}])
    step: int = 0
    rules: list[str] = dataclasses.field(default_factory=list)
    final: dict[int, float] = dataclasses.field(default_factory=dict)

    def to_json(self, rng: random.Random) -> dict[str, Any]:
        """What a resumed run needs, with the run's random state."""
        return {
            "step": self.step,
            "pool": [{"config": configuration_to_json(p["config"]), "scores": list(p["scores"])} for p in self.pool],
            "rules": list(self.rules),
            "rng": list(rng.getstate()),
            "final": {str(k): v for k, v in self.final.items()},
        }


def _search(state: OptimizationState) -> SIMBAState:
    search = state.search
    assert isinstance(search, SIMBAState)
    return search


class SIMBA(Optimizer):
    """Stochastic introspective mini-batch ascent (DSPy's ``SIMBA``).

    Each step samples a minibatch, runs ``num_candidates`` programs from the pool (chosen by
    softmax over their scores) on it, each at another temperature, and ranks the examples by
    how much their scores vary across those runs. For the most variable examples it builds a
    new program from the better run: either the LM compares the better run with the worse one
    and writes a rule appended to each step's instructions, or the better run's steps become
    demos. New programs are scored on the same minibatch and join the pool; at the end the best
    programs of the pool are scored on the validation set and the best one is returned (the
    program as given is one of them, so the result is never worse there).

    With a store configured the pool, step, rules and random state are kept after every step,
    so ``compile(..., resume=run_id)`` continues an interrupted run (see docs/optimizers.md).

    Args:
        metric: the score to maximise (an :class:`~elixirml.Feedback`'s text is shown to the LM).
        bsize: examples per minibatch.
        num_candidates: runs per example per step, and new programs per step.
        max_steps: steps.
        max_demos: the most demos per predictor (0: rules only).
        prompt_model: the LM that writes rules (default: the program's LM).
        temperature_for_sampling: softmax temperature of the choice of source programs.
        temperature_for_candidates: the lowest temperature of the runs (they spread up to 1.0).
        num_final: pool programs scored on the validation set at the end.
        **kwargs: as for :class:`Optimizer`.
    """

    name = "SIMBA"
    run_options = ("bsize", "num_candidates", "max_steps", "max_demos")
    resumable = True
    keeps_run_state = True

    def __init__(
        self,
        metric: Any = None,
        *,
        bsize: int = 32,
        num_candidates: int = 6,
        max_steps: int = 8,
        max_demos: int = 4,
        prompt_model: Any = None,
        temperature_for_sampling: float = 0.2,
        temperature_for_candidates: float = 0.2,
        num_final: int = 3,
        **kwargs: Any,
    ) -> None:
        super().__init__(metric, **kwargs)
        if metric is None:
            raise ConfigurationError("SIMBA needs a metric")
        for label, value in (("bsize", bsize), ("num_candidates", num_candidates), ("max_steps", max_steps)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"SIMBA needs {label} >= 1, got {value!r}")
        self.bsize = bsize
        self.num_candidates = num_candidates
        self.max_steps = max_steps
        self.max_demos = max_demos
        self.prompt_model = prompt_model
        self.temperature_for_sampling = temperature_for_sampling
        self.temperature_for_candidates = temperature_for_candidates
        self.num_final = num_final

    def text_originals(self, state: OptimizationState) -> dict[str, str]:
        return instruction_originals(state.program)

    def projected_calls(self, state: OptimizationState) -> int:
        per_run = max(1, len(state.program.named_predictors()))
        batch = min(self.bsize, len(state.trainset))
        per_step = 2 * self.num_candidates * batch * per_run + self.num_candidates * per_run
        return self.max_steps * per_step + (self.num_final + 1) * len(state.valset) * per_run

    def initialize(self, state: OptimizationState) -> None:
        if not state.program.named_predictors():
            raise ConfigurationError("SIMBA found no predictor in this program")
        resumed = self.resumed_state(state)
        if resumed is not None:  # an earlier leg of this run: its pool, step, rules and random state
            version, internal, gauss = resumed["rng"]
            state.rng.setstate((version, tuple(internal), gauss))
            state.search = SIMBAState(
                pool=[
                    {"config": configuration_from_json(p["config"]), "scores": list(p["scores"])}
                    for p in resumed["pool"]
                ],
                step=int(resumed["step"]),
                rules=list(resumed["rules"]),
                final={int(k): float(v) for k, v in resumed["final"].items()},
            )
            return
        state.search = SIMBAState()
        self._keep(state)

    def _keep(self, state: OptimizationState) -> None:
        """Keep the search state in the store after a step (a resumed run repeats only the step in progress)."""
        self.save_run_state(state, _search(state).to_json(state.rng))

    # ------------------------------------------------------------------ one step
    def optimize_step(self, state: OptimizationState) -> bool:
        search = _search(state)
        if search.step >= self.max_steps:
            self._final(state)
            return False
        step = search.step
        pool = search.pool
        batch = state.rng.sample(state.trainset, min(self.bsize, len(state.trainset)))
        averages = [sum(p["scores"]) / len(p["scores"]) if p["scores"] else 0.0 for p in pool]
        sources = _softmax_pick(state.rng, averages, self.temperature_for_sampling, self.num_candidates)
        runs: list[tuple[int, EvaluationResult, dict[int, str]]] = []
        for j, source in enumerate(sources):
            spread = 0.0 if self.num_candidates == 1 else j / (self.num_candidates - 1)
            temperature = self.temperature_for_candidates + (1.0 - self.temperature_for_candidates) * spread
            with forced_settings(rollout_id=step * 1000 + j, temperature=temperature, best_effort=("temperature",)):
                result, names = self._run(state, pool[source]["config"], batch, keep_traces=True)
                runs.append((source, result, names))
        buckets = []
        for i in range(len(batch)):
            outcomes = sorted(
                ((result.results[i], source, names) for source, result, names in runs), key=lambda o: -o[0].score
            )
            gap = outcomes[0][0].score - outcomes[-1][0].score
            buckets.append((gap, outcomes[0][0].score, i, outcomes))
        buckets.sort(key=lambda b: (-b[0], -b[1], b[2]))
        for gap, best, _, outcomes in buckets[: self.num_candidates]:
            if gap <= 0 and best <= 0:
                continue  # every run failed alike: nothing to learn from this example
            better, source, names = outcomes[0]
            worse, _, worse_names = outcomes[-1]
            use_demo = self.max_demos > 0 and (gap <= 0 or state.rng.random() < 0.5)
            config = (
                self._with_demo(state, pool[source]["config"], better, names)
                if use_demo
                else self._with_rule(state, pool[source]["config"], (better, names), (worse, worse_names))
            )
            if config is None:
                continue
            result, _ = self._run(state, config, batch)
            pool.append({"config": config, "scores": [result.score]})
        for source, result, _ in runs:
            pool[source]["scores"].append(result.score)
        search.step = step + 1
        self._keep(state)
        return True

    def _run(
        self, state: OptimizationState, config: dict[str, Any], data: list[Example], *, keep_traces: bool = False
    ) -> tuple[EvaluationResult, dict[int, str]]:
        """Score ``config`` on ``data``; also returns the run program's predictor id -> name (to read traces)."""
        started = time.perf_counter()
        with track_usage() as usage:
            program = state.program.with_configuration(config)
            result = self.evaluate(program, data, keep_traces=keep_traces)
        full = data is state.valset
        self.record_trial(
            state, config, result, program, usage=usage, wall_time=time.perf_counter() - started, full=full
        )
        return result, {id(p): n for n, p in program.named_predictors()}

    # ------------------------------------------------------------------ strategies
    def _with_demo(
        self, state: OptimizationState, config: dict[str, Any], run: ExampleResult, names: dict[int, str]
    ) -> dict[str, Any] | None:
        """The better run's steps appended as demos (the oldest dropped beyond ``max_demos``)."""
        program = state.program.with_configuration(config)
        new = dict(config)
        added = False
        for entry in run.trace or []:
            name = names.get(id(entry.predictor))
            if name is None or entry.prediction is None:
                continue
            fields = [f for f in entry.predictor.signature.input_fields if f in entry.inputs]
            demo = Example({**entry.inputs, **entry.prediction.to_dict()}).with_inputs(*fields)
            key = implicit_key(name, "demos")
            current = list(new.get(key, dict(program.named_predictors())[name].demos))
            new[key] = [*current, demo][-self.max_demos :]
            added = True
        return new if added else None

    def _with_rule(
        self,
        state: OptimizationState,
        config: dict[str, Any],
        better_run: tuple[ExampleResult, dict[int, str]],
        worse_run: tuple[ExampleResult, dict[int, str]],
    ) -> dict[str, Any] | None:
        """A rule the LM draws from the better run against the worse one, appended to each step it ran."""
        (better, names), (worse, worse_names) = better_run, worse_run
        lm = self.prompt_model or state.program.get_lm()
        write = Predict(OfferFeedback, lm=lm)
        worse_by_name = {worse_names.get(id(e.predictor)): e for e in worse.trace or []}
        new = dict(config)
        for entry in better.trace or []:
            name = names.get(id(entry.predictor))
            if name is None:
                continue
            instruction = entry.predictor.signature.instructions
            try:
                rule = str(
                    write(
                        step_signature=str(entry.predictor.signature.signature),
                        current_instruction=instruction,
                        better_run=_describe(entry, better),
                        worse_run=_describe(worse_by_name.get(name), worse),
                    ).rule
                ).strip()
            except (OutputError, ProviderError):  # an unusable answer; a setup error or a spent budget propagates
                continue
            if rule in instruction:
                continue
            reason = instruction_verdict(rule, entry.predictor.signature)
            state.proposal_log.append(
                {"predictor": name, "instruction": rule, "kept": reason is None, "reason": reason or "on topic"}
            )
            if reason is not None:
                continue
            new[implicit_key(name, "instructions")] = f"{instruction}\n{rule}"
            _search(state).rules.append(rule)
        return new if new != config else None

    # ------------------------------------------------------------------ end
    def _final(self, state: OptimizationState) -> None:
        """Score the program as given and the best pool programs on the validation set."""
        pool = _search(state).pool
        ranked = sorted(
            range(1, len(pool)),
            key=lambda i: (-(sum(pool[i]["scores"]) / len(pool[i]["scores"])) if pool[i]["scores"] else 0.0, i),
        )
        done = _search(state).final
        for index in [0, *ranked[: self.num_final]]:
            if index in done:
                continue  # scored before this run was resumed (the best so far was restored with it)
            result, _ = self._run(state, pool[index]["config"], state.valset)
            done[index] = result.score
            self._keep(state)

    def finalize(self, state: OptimizationState) -> Module:
        search = state.search if isinstance(state.search, SIMBAState) else SIMBAState(pool=[])
        pool = search.pool
        details: dict[str, Any] = {"rules": list(search.rules), "pool_size": len(pool)}
        if state.best_program is None and len(pool) > 1:
            # stopped by a budget before the validation pass: the best minibatch mean is all there is to go by
            best = max(pool, key=lambda p: sum(p["scores"]) / len(p["scores"]) if p["scores"] else -1.0)
            state.best_configuration = dict(best["config"])
            state.best_program = state.program.with_configuration(best["config"])
            details["chosen_by"] = "minibatch"
        state.details.update(details)
        return super().finalize(state)


def _describe(entry: Any, run: ExampleResult) -> str:
    record: dict[str, Any] = {"score": run.score}
    if entry is not None:
        record["inputs"] = dict(entry.inputs)
        record["outputs"] = entry.prediction.to_dict() if entry.prediction is not None else f"error: {entry.error}"
    elif run.prediction is not None:
        record["outputs"] = run.prediction.to_dict()
    if run.feedback:
        record["feedback"] = run.feedback
    return json.dumps(record, default=str)
