"""COPRO: coordinate ascent over each predictor's instructions, with an LM proposing them."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from ..errors import ConfigurationError, OutputError, ProviderError
from ..lm import track_usage
from ..program import Predict, forced_settings
from ..schema import InputField, OutputField, Signature
from ._base import OptimizationState, Optimizer
from ._choice import implicit_key, instruction_originals
from ._propose import instruction_verdict


class BasicGenerateInstruction(Signature):
    """You are an instruction optimizer for large language models. I will give you a step's signature and its instruction. Write a better instruction for the step. Answer with the instruction only."""  # noqa: E501

    step_signature: str = InputField(desc="the inputs and outputs of the step")
    basic_instruction: str = InputField(desc="the step's current instruction")
    proposed_instruction: str = OutputField(desc="the improved instruction")


class GenerateInstructionGivenAttempts(Signature):
    """You are an instruction optimizer for large language models. I will give you instructions I tried for a step, each with its validation score (higher is better), worst first. Write a new instruction that will score higher. Answer with the instruction only."""  # noqa: E501

    step_signature: str = InputField(desc="the inputs and outputs of the step")
    attempted_instructions: str = InputField(desc="instructions tried, with their scores, worst first")
    proposed_instruction: str = OutputField(desc="the new instruction")


@dataclasses.dataclass
class COPROState:
    """COPRO's search state: the rounds (depth, predictor), the instructions tried with their scores.

    Attributes:
        names: the predictors, in order.
        rounds: every (depth, predictor) round, in order.
        attempts: predictor -> instruction -> validation score.
        config: the best instruction of each predictor so far (variable name -> text).
        round: the round in progress.
        proposals: the round's proposals, once made (None before).
    """

    names: list[str]
    rounds: list[tuple[int, str]]
    attempts: dict[str, dict[str, float]]
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    round: int = 0
    proposals: list[str] | None = None

    def to_json(self) -> dict[str, Any]:
        """What a resumed run needs (the names and rounds follow from the program and the settings)."""
        return {
            "round": self.round,
            "config": dict(self.config),
            "attempts": {n: [[text, score] for text, score in a.items()] for n, a in self.attempts.items()},
            "proposals": self.proposals,
        }


def _search(state: OptimizationState) -> COPROState:
    search = state.search
    assert isinstance(search, COPROState)
    return search


class COPRO(Optimizer):
    """Coordinate ascent over instructions (DSPy's ``COPRO``).

    For each predictor in turn (the others held at their best), the prompt LM proposes
    ``breadth`` instructions, each scored on the validation set; then ``depth`` times it is
    shown the instructions tried so far with their scores and proposes ``breadth`` more. The
    best instruction of each predictor is kept; the program as given is scored first, so the
    result is never worse on the validation set.

    With a store configured the search state is kept after every scored instruction, so
    ``compile(..., resume=run_id)`` continues an interrupted run (see docs/optimizers.md).

    Args:
        metric: the score to maximise.
        prompt_model: the LM that proposes instructions (default: the program's LM).
        breadth: instructions proposed per predictor per round (at least 2, as in DSPy).
        depth: rounds of proposals from the attempts so far.
        init_temperature: sampling temperature of the proposals.
        track_stats: accepted for DSPy code; every score is in ``last_result.trials``.
        **kwargs: as for :class:`Optimizer`.
    """

    name = "COPRO"
    run_options = ("breadth", "depth")
    resumable = True
    keeps_run_state = True

    def __init__(
        self,
        metric: Any = None,
        *,
        prompt_model: Any = None,
        breadth: int = 10,
        depth: int = 3,
        init_temperature: float = 1.4,
        track_stats: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(metric, **kwargs)
        if metric is None:
            raise ConfigurationError("COPRO needs a metric")
        if breadth < 2:
            raise ConfigurationError(f"COPRO needs breadth >= 2 (as DSPy), got {breadth}")
        if depth < 0:
            raise ConfigurationError(f"depth must be >= 0, got {depth}")
        self.prompt_model = prompt_model
        self.breadth = breadth
        self.depth = depth
        self.init_temperature = init_temperature
        self.track_stats = track_stats

    def compile(self, *args: Any, eval_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        """As :meth:`Optimizer.compile`; DSPy's ``eval_kwargs`` (``num_threads``) set the evaluation concurrency."""
        extra = dict(eval_kwargs or {})
        threads = extra.pop("num_threads", None)
        extra.pop("display_progress", None)
        extra.pop("display_table", None)
        if extra:
            raise ConfigurationError(
                f"COPRO eval_kwargs takes num_threads, display_progress, display_table; got {sorted(extra)}"
            )
        saved = self.concurrency
        self.concurrency = int(threads) if threads is not None else saved
        try:
            return super().compile(*args, **kwargs)
        finally:
            self.concurrency = saved

    def text_originals(self, state: OptimizationState) -> dict[str, str]:
        return instruction_originals(state.program)

    def projected_calls(self, state: OptimizationState) -> int:
        predictors = max(1, len(state.program.named_predictors()))
        rounds = (self.depth + 1) * predictors
        return rounds * self.breadth * (1 + len(state.valset) * predictors) + len(state.valset) * predictors

    def initialize(self, state: OptimizationState) -> None:
        names = [n for n, _ in state.program.named_predictors()]
        if not names:
            raise ConfigurationError("COPRO found no predictor to instruct in this program")
        rounds = [(d, n) for d in range(self.depth + 1) for n in names]
        resumed = self.resumed_state(state)
        if resumed is not None:  # an earlier leg of this run: continue at its round, with its attempts
            state.search = COPROState(
                names=names,
                rounds=rounds,
                attempts={n: {text: float(score) for text, score in resumed["attempts"][n]} for n in names},
                config=dict(resumed["config"]),
                round=int(resumed["round"]),
                proposals=resumed["proposals"],
            )
            return
        self._score(state, {}, None)  # the program as given
        current = dict(state.program.named_predictors())
        state.search = COPROState(
            names=names,
            rounds=rounds,
            attempts={n: {current[n].signature.instructions: state.best_score} for n in names},
        )
        self._keep(state)

    def _keep(self, state: OptimizationState) -> None:
        """Keep the search state in the store: a resumed run continues at the evaluation in progress."""
        self.save_run_state(state, _search(state).to_json())

    def _score(self, state: OptimizationState, config: dict[str, Any], predictor: str | None) -> float:
        started = time.perf_counter()
        with track_usage() as usage:
            candidate = state.program.with_configuration(config)
            result = self.evaluate(candidate, state.valset)
        self.record_trial(state, config, result, candidate, usage=usage, wall_time=time.perf_counter() - started)
        return result.score

    def _propose(self, state: OptimizationState, depth: int, name: str) -> list[str]:
        lm = self.prompt_model or state.program.get_lm()
        predictor = dict(state.program.named_predictors())[name]
        signature = str(predictor.signature.signature)
        attempts = _search(state).attempts[name]
        if depth == 0:
            propose: Predict = Predict(BasicGenerateInstruction, lm=lm)
            inputs = {"step_signature": signature, "basic_instruction": predictor.signature.instructions}
        else:
            propose = Predict(GenerateInstructionGivenAttempts, lm=lm)
            ranked = sorted(attempts.items(), key=lambda item: item[1])
            shown = "\n".join(
                f"Instruction #{i + 1}: {text}\nScore: {score:.1f}" for i, (text, score) in enumerate(ranked)
            )
            inputs = {"step_signature": signature, "attempted_instructions": shown}
        proposals: list[str] = []
        for attempt in range(self.breadth):
            try:
                with forced_settings(
                    rollout_id=depth * 1000 + attempt, temperature=self.init_temperature, best_effort=("temperature",)
                ):
                    text = str(propose(**inputs).proposed_instruction).strip()
            except (OutputError, ProviderError):  # an unusable answer; a setup error or a spent budget propagates
                continue
            if text in attempts or text in proposals:
                continue
            reason = instruction_verdict(text, predictor.signature)
            state.proposal_log.append(
                {"predictor": name, "instruction": text, "kept": reason is None, "reason": reason or "on topic"}
            )
            if reason is None:
                proposals.append(text)
        return proposals

    def optimize_step(self, state: OptimizationState) -> bool:
        search = _search(state)
        index = search.round
        if index >= len(search.rounds):
            return False
        depth, name = search.rounds[index]
        key = implicit_key(name, "instructions")
        attempts = search.attempts[name]
        if search.proposals is None:
            search.proposals = self._propose(state, depth, name)
            self._keep(state)
        for text in search.proposals:
            if text in attempts:
                continue  # scored before this run was resumed
            config = {**search.config, key: text}
            attempts[text] = self._score(state, config, name)
            self._keep(state)
        best_text = max(attempts, key=lambda t: attempts[t])
        original = dict(state.program.named_predictors())[name].signature.instructions
        if best_text != original:
            search.config[key] = best_text
        search.round = index + 1
        search.proposals = None
        self._keep(state)
        return index + 1 < len(search.rounds)
