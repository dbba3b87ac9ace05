"""Ensemble: run several compiled programs on each input and reduce their outputs to one."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import ConfigurationError
from ..evaluation import normalize_text
from ..program import Module


def majority(predictions: Sequence[Any], field: str | None = None) -> Any:
    """The prediction whose ``field`` value (normalised text) is the most common; ties go to the earliest.

    ``field`` defaults to the last field of the first prediction (DSPy's ``majority`` votes on
    the last output field too).
    """
    if not predictions:
        raise ConfigurationError("majority() needs at least one prediction")
    if field is None:
        keys = list(dict(predictions[0].items()))
        if not keys:
            raise ConfigurationError("majority() cannot vote: the first prediction has no fields")
        field = keys[-1]
    votes = [normalize_text(p[field]) if field in p else None for p in predictions]
    counts = Counter(v for v in votes if v is not None)
    if not counts:
        raise ConfigurationError(f"majority() cannot vote: no prediction has the field {field!r}")
    top = max(counts.values())
    winner = next(v for v in votes if v is not None and counts[v] == top)
    return predictions[votes.index(winner)]


def _first(predictions: Sequence[Any]) -> Any:
    return predictions[0]


REDUCERS: dict[str, Callable[[Sequence[Any]], Any]] = {"majority": majority, "first": _first}


class EnsembledProgram(Module):
    """Runs its programs concurrently on each input and reduces their predictions (see :class:`Ensemble`)."""

    def __init__(
        self, programs: Sequence[Module], reduce_fn: Callable[[Sequence[Any]], Any] | None, size: int | None, seed: int
    ) -> None:
        super().__init__()
        self.programs = list(programs)
        self._reduce = reduce_fn
        self._size = size
        self._rng = random.Random(seed)

    async def aforward(self, **inputs: Any) -> Any:
        chosen = self.programs
        if self._size is not None:
            chosen = self._rng.sample(self.programs, self._size)
        predictions = await asyncio.gather(*(p.acall(**inputs) for p in chosen))
        if self._reduce is None:
            return list(predictions)
        return self._reduce(list(predictions))


class Ensemble:
    """Combine compiled programs into one (DSPy's ``Ensemble``).

    Args:
        reduce_fn: ``"majority"`` (vote on the last output field, see :func:`majority`),
            ``"first"``, a function ``fn(predictions) -> prediction``, or None (return every
            prediction as a list, as DSPy does without one).
        size: run a random subset of this many programs per call (default: all of them).
        deterministic: DSPy's flag; only ``False`` (its only implemented value) is accepted.
        seed: the seed of the subset choice.
    """

    name = "Ensemble"

    def __init__(
        self,
        *,
        reduce_fn: str | Callable[[Sequence[Any]], Any] | None = "majority",
        size: int | None = None,
        deterministic: bool = False,
        seed: int = 0,
    ) -> None:
        if deterministic:
            raise ConfigurationError("Ensemble(deterministic=True) is not implemented (nor is it in DSPy)")
        if isinstance(reduce_fn, str):
            if reduce_fn not in REDUCERS:
                raise ConfigurationError(
                    f"reduce_fn must be one of {sorted(REDUCERS)} or a function, got {reduce_fn!r}"
                )
            reduce_fn = REDUCERS[reduce_fn]
        elif reduce_fn is not None and not callable(reduce_fn):
            raise ConfigurationError("reduce_fn must be 'majority', 'first', a function or None")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise ConfigurationError(f"size must be an int >= 1, got {size!r}")
        self.reduce_fn = reduce_fn
        self.size = size
        self.seed = seed

    def compile(self, programs: Sequence[Module], *, resume: str | None = None) -> EnsembledProgram:
        """A program that runs ``programs`` (copies of them) and reduces their outputs.

        Raises:
            ConfigurationError: ``resume=`` is given (an ensemble runs no search to resume).
        """
        if resume is not None:
            raise ConfigurationError(
                f"Ensemble cannot resume run {resume!r}: it runs no search and records no run; call "
                "compile(programs) again (it makes no LM call)"
            )
        programs = list(programs)
        if not programs:
            raise ConfigurationError("Ensemble.compile() needs at least one program")
        if self.size is not None and self.size > len(programs):
            raise ConfigurationError(f"size={self.size} is more than the {len(programs)} programs given")
        return EnsembledProgram([p.deepcopy() for p in programs], self.reduce_fn, self.size, self.seed)
