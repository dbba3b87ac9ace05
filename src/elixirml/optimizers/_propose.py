"""Instruction proposals grounded in a dataset summary, the program's structure and demos."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from typing import Any

from ..errors import OutputError, ProviderError
from ..program import Module, Predict, forced_settings
from ..schema import Example, InputField, OutputField, Signature, literal_values

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


_WORD = re.compile(r"[A-Za-z][A-Za-z'-]+")
_CODE = re.compile(r"```|\bdef |\bimport |\breturn |\bclass |=\s*['\"\[{(]|\bcode\b|[{}<>]|\w+\(\)|\w+_\w+=", re.I)
_STOPWORDS = frozenset(
    [
        "the",
        "a",
        "an",
        "and",
        "or",
        "of",
        "to",
        "in",
        "on",
        "for",
        "with",
        "by",
        "from",
        "as",
        "at",
        "is",
        "are",
        "be",
        "it",
        "this",
        "that",
        "these",
        "those",
        "your",
        "you",
        "each",
        "its",
        "their",
        "them",
        "then",
        "than",
        "into",
        "about",
        "using",
        "use",
        "given",
        "based",
    ]
)


# How instructions start or address the model: "Answer ...", "Classify ...", "You are ...", "Be concise".
_INSTRUCTION_WORDS = frozenset(
    [
        "answer",
        "classify",
        "double",
        "echo",
        "write",
        "give",
        "return",
        "output",
        "read",
        "decide",
        "identify",
        "determine",
        "extract",
        "summarize",
        "summarise",
        "translate",
        "label",
        "respond",
        "reply",
        "use",
        "be",
        "think",
        "consider",
        "provide",
        "state",
        "list",
        "choose",
        "select",
        "compute",
        "calculate",
        "solve",
        "find",
        "explain",
        "generate",
        "predict",
        "say",
        "name",
        "mark",
        "tag",
        "rate",
        "score",
        "check",
        "count",
        "copy",
        "repeat",
        "keep",
        "make",
        "focus",
        "look",
        "pay",
        "avoid",
        "do",
        "don't",
        "never",
        "always",
        "only",
        "carefully",
        "please",
        "you",
        "your",
        "act",
        "imagine",
        "assume",
        "treat",
    ]
)


def topic_words(signature: type[Signature]) -> frozenset[str]:
    """The words an instruction about ``signature``'s task would use: fields, descriptions, labels, instructions."""
    words: set[str] = set()
    texts = [signature.instructions]
    for name, spec in signature.fields.items():
        texts += [name.replace("_", " "), spec.desc or ""]
        texts += [str(v) for v in literal_values(spec.annotation) or ()]
    for text in texts:
        words.update(w.lower() for w in _WORD.findall(text) if w.lower() not in _STOPWORDS and len(w) > 2)
    return frozenset(_stem(w) for w in words)


def _stem(word: str) -> str:
    return word[:-1] if word.endswith("s") and len(word) > 4 else word


def instruction_verdict(
    text: str, signature: type[Signature], *, max_chars: int = MAX_INSTRUCTION_CHARS, min_distinct: float = 0.5
) -> str | None:
    """Why a proposed instruction is not worth a trial, or None when it is.

    Dropped: empty, overlong (``max_chars``) or looping text (fewer than ``min_distinct`` of
    its words distinct); code (fences, assignments, calls, ``def``);
    a continuation of the data (it starts like a field of the signature, ``question: ...``);
    and text off the task: it names none of the signature's fields, labels or the words of its
    instructions and field descriptions, and does not address the model as an instruction does
    (``Classify ...``, ``You are ...``).
    """
    words = text.split()
    if not words:
        return "empty"
    if len(text) > max_chars:
        return f"longer than {max_chars} characters"
    if len(words) >= 8 and len(set(words)) / len(words) < min_distinct:
        return "repeats itself"
    if _CODE.search(text):
        return "looks like code"
    head = text.lstrip().lower()
    for name in signature.fields:
        if head.startswith((f"{name.lower()}:", f"[[ ## {name.lower()}", f'{{"{name.lower()}"')):
            return f"continues the data (starts with the field {name!r})"
    words_found = [w.lower() for w in _WORD.findall(text)]
    found = {_stem(w) for w in words_found}
    addresses_model = bool(words_found) and (
        words_found[0] in _INSTRUCTION_WORDS or bool({"you", "your"} & set(words_found))
    )
    if not found & topic_words(signature) and not addresses_model:
        return "off the task: names none of its fields, labels or instruction words, and instructs nothing"
    return None


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
    log: list[dict[str, Any]] | None = None,
) -> dict[str, list[str]]:
    """``n`` instruction candidates per predictor (the current instruction first).

    Proposals :func:`instruction_verdict` rejects are dropped before they cost a trial; each
    proposal's fate goes to ``log`` (``predictor``, ``instruction``, ``kept``, ``reason``).
    """
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
            if proposal in candidates:
                continue
            reason = instruction_verdict(proposal, predictor.signature)
            if log is not None:
                log.append(
                    {"predictor": name, "instruction": proposal, "kept": reason is None, "reason": reason or "on topic"}
                )
            if reason is None:
                candidates.append(proposal)
        out[name] = candidates
    return out
