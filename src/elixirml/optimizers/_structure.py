"""Structure first: choose each predictor's prompt format and decoding before anything else.

On a small model the prompt format and the decoding mode are worth 15-20 points on closed-set
tasks (docs/benchmarks.md), more than any instruction or demo set, and a joint search that
mixes them with mostly harmful instruction and demo candidates rarely isolates them. So the
search optimizers first score the few structural choices (each predictor's ``adapter`` x
``decoding``, with the original instructions and demos) on a sample larger than a minibatch,
keep the best, and spend the rest of the budget on instructions and demos around it.

Instruction candidates are then checked on a small probe set: a candidate that scores below
the original instruction there never reaches the search.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ConfigurationError
from ..evaluation import EvaluationResult
from ..lm import track_usage
from ..schema import Example
from ..variables import VariableSpace
from ._base import OptimizationState, Optimizer
from ._choice import implicit_key
from ._probe import _probe

#: Implicit predictor variables that make up a program's structure.
STRUCTURAL = ("adapter", "decoding")
#: The most structures scored; a larger grid is sampled down to this.
MAX_STRUCTURES = 12


def structural_names(space: VariableSpace, names: Sequence[str]) -> list[str]:
    """The searched variables that are a predictor's prompt format or decoding mode."""
    found = []
    for name in names:
        entry = space.entry(name)
        if entry.local in STRUCTURAL and hasattr(entry.owner, "signature") and hasattr(entry.owner, "demos"):
            found.append(name)
    return found


def structure_sample(valset: Sequence[Example], size: int, seed: int) -> list[int]:
    """Indexes of the validation examples structures are scored on (all of them when few)."""
    if len(valset) <= size:
        return list(range(len(valset)))
    return sorted(random.Random(seed * 7 + 1).sample(range(len(valset)), size))


def _grid(space: VariableSpace, names: Sequence[str], current: Mapping[str, Any], seed: int) -> list[dict[str, Any]]:
    options = []
    for name in names:
        values = list(space[name].options)
        values.sort(key=lambda v: v != current[name])  # the current value first
        options.append(values)
    grid = [dict(zip(names, combo)) for combo in itertools.product(*options)]
    if len(grid) > MAX_STRUCTURES:
        grid = [grid[0], *random.Random(seed).sample(grid[1:], MAX_STRUCTURES - 1)]
    return grid


def distinct_structures(
    state: OptimizationState, space: VariableSpace, names: Sequence[str], seed: int
) -> list[dict[str, Any]]:
    """The structures of the grid that send different requests (probed, no LM call); the current one first.

    A structure the program's LM cannot run is left out.
    """
    if not names or not state.trainset:
        return [{}]
    current = space.current()
    first = state.trainset[0]
    probe_inputs = dict((first.inputs() if first.input_keys else first).items())
    seen: set[str] = set()
    distinct: list[dict[str, Any]] = []
    for structure in _grid(space, names, current, seed):
        try:
            fingerprint = _probe(state.program.with_configuration(structure), probe_inputs).fingerprint
        except ConfigurationError:  # a structure this LM cannot run (calibrated decoding without scoring)
            continue
        if fingerprint not in seen:
            seen.add(fingerprint)
            distinct.append(structure)
    return distinct


def choose_structure(
    optimizer: Optimizer,
    state: OptimizationState,
    space: VariableSpace,
    names: Sequence[str],
    *,
    sample_size: int,
    baseline: EvaluationResult | None = None,
    record: bool = True,
) -> dict[str, Any]:
    """Score each distinct structure on a validation sample; return the best one's values (``{}``: keep).

    Structures that send the same requests (``"auto"`` and the format it stands for) are
    scored once. Every scored structure is a trial (unless ``record=False``). The program as
    it is keeps its place unless another structure scores strictly higher.
    """
    if not names:
        return {}
    sample = structure_sample(state.valset, sample_size, optimizer.seed)
    data = [state.valset[i] for i in sample]
    distinct = distinct_structures(state, space, names, optimizer.seed)
    if baseline is not None:
        by_index = {r.index: r.score for r in baseline.results}
        best_score = sum(by_index[i] for i in sample) / len(sample) * 100 if sample else 0.0
    else:
        best_score = optimizer.evaluate(state.program, data).score
    best: dict[str, Any] = {}
    for structure in distinct[1:]:  # the first is the program as it is, scored above
        started = time.perf_counter()
        with track_usage() as usage:
            candidate = state.program.with_configuration(structure)
            result = optimizer.evaluate(candidate, data)
        if record:
            optimizer.record_trial(
                state,
                structure,
                result,
                candidate,
                usage=usage,
                wall_time=time.perf_counter() - started,
                full=len(data) == len(state.valset),
            )
        if result.score > best_score:
            best_score, best = result.score, structure
    state.structures_scored = len(distinct)
    return best


def filter_instructions(
    optimizer: Optimizer,
    state: OptimizationState,
    instructions: dict[str, list[str]],
    structure: Mapping[str, Any],
    *,
    probe_size: int = 16,
) -> tuple[dict[str, list[str]], int]:
    """Keep the proposed instructions that score at least as well as the original on a probe set.

    The probe set is ``probe_size`` training examples; each candidate replaces one predictor's
    instruction, everything else as the program has it (with the chosen structure). Returns
    the kept candidates (the original first) and how many were dropped.
    """
    train = list(state.trainset)
    probe = random.Random(optimizer.seed * 31 + 5).sample(train, min(probe_size, len(train)))
    base = state.program.with_configuration(dict(structure)) if structure else state.program
    original_score = optimizer.evaluate(base, probe).score
    kept: dict[str, list[str]] = {}
    dropped = 0
    for name, candidates in instructions.items():
        original, proposals = candidates[0], candidates[1:]
        keep = [original]
        for text in proposals:
            candidate = base.with_configuration({implicit_key(name, "instructions"): text})
            score = optimizer.evaluate(candidate, probe).score
            if score >= original_score:
                keep.append(text)
            else:
                dropped += 1
                for entry in state.proposal_log:
                    if entry["predictor"] == name and entry["instruction"] == text:
                        entry.update(
                            kept=False,
                            reason=f"scored {score:.1f} on the probe rows, below the original's {original_score:.1f}",
                        )
        kept[name] = keep
    return kept, dropped
