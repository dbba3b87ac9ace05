"""Instruction proposals grounded in a dataset summary, the program's structure and demos."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from typing import Any

from ..errors import OutputError, ProviderError
from ..program import Module, Predict, forced_settings
from ..schema import Example, InputField, OutputField, Signature

TIPS = (
    "",
    "Be concise and direct.",
    "Describe exactly what the answer must look like.",
    "Write it for a small model: short sentences, no ambiguity.",
    "Mention the most common mistake to avoid.",
    "Be precise and careful about edge cases.",
    "Give the model a role, like an expert annotator.",
    "Say which input matters most for the answer.",
)


class SummarizeDataset(Signature):
    """Summarize what these examples of a task have in common: the task, the inputs, and the answers."""

    examples: str = InputField(desc="a few examples of the task, as JSON")
    summary: str = OutputField(desc="two or three sentences")


class ProposeInstruction(Signature):
    """Propose a better instruction for one step of a language-model program. Answer with the instruction only."""

    dataset_summary: str = InputField(desc="what the task's data looks like")
    program_description: str = InputField(desc="the program's steps")
    step_signature: str = InputField(desc="the inputs and outputs of the step to instruct")
    current_instruction: str = InputField(desc="the step's current instruction")
    step_examples: str = InputField(desc="examples of the step working well")
    tip: str = InputField(desc="a hint about the style of instruction to write")
    proposed_instruction: str = OutputField(desc="the new instruction")


MAX_INSTRUCTION_CHARS = 400


def usable_instruction(text: str) -> bool:
    """Whether a proposed instruction is worth trying: not empty, not overlong, not a loop of repeats."""
    words = text.split()
    if not words or len(text) > MAX_INSTRUCTION_CHARS:
        return False
    return len(words) < 8 or len(set(words)) / len(words) >= 0.5


def describe_program(program: Module) -> str:
    """The program's predictors and their signatures, as text."""
    lines = [f"{type(program).__name__} with steps:"]
    for name, predictor in program.named_predictors():
        lines.append(f"- {name}: {predictor.signature.signature}")
    return "\n".join(lines)


def propose_instructions(
    program: Module,
    trainset: Sequence[Example],
    demo_candidates: dict[str, list[list[Example]]],
    n: int,
    *,
    lm: Any,
    rng: random.Random,
) -> dict[str, list[str]]:
    """``n`` instruction candidates per predictor (the current instruction first)."""
    sample = rng.sample(list(trainset), min(8, len(trainset)))
    summarize = Predict(SummarizeDataset, lm=lm)
    propose = Predict(ProposeInstruction, lm=lm)
    try:
        summary = summarize(examples=json.dumps([e.to_dict() for e in sample], default=str)).summary
    except (OutputError, ProviderError):  # an unusable answer; a setup error or a spent budget propagates
        summary = "(no summary)"
    description = describe_program(program)
    out: dict[str, list[str]] = {}
    for name, predictor in program.named_predictors():
        current = predictor.signature.instructions
        candidates = [current]
        sets = [d for d in demo_candidates.get(name, []) if d]
        for attempt in range(max(0, n - 1) * 2):
            if len(candidates) >= n:
                break
            demos = sets[attempt % len(sets)][:3] if sets else []
            try:
                with forced_settings(rollout_id=attempt, temperature=1.0, best_effort=("temperature",)):
                    proposal = propose(
                        dataset_summary=summary,
                        program_description=description,
                        step_signature=predictor.signature.signature,
                        current_instruction=current,
                        step_examples=json.dumps([d.to_dict() for d in demos], default=str) if demos else "(none)",
                        tip=TIPS[attempt % len(TIPS)],
                    ).proposed_instruction.strip()
            except (OutputError, ProviderError):
                continue
            if usable_instruction(proposal) and proposal not in candidates:
                candidates.append(proposal)
        out[name] = candidates
    return out
