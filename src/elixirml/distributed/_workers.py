"""What runs inside a Ray worker.

It rebuilds the program from its class path and JSON state, builds the LM with the run's
shared limits, and streams results back as they finish, each with the LM usage it took (the
driver adds it to its own ``track_usage`` blocks and call budgets).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
import threading
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from ..errors import ConfigurationError, LoadError
from ..lm import LM, History, Usage, limit_calls, spending_limit, track_usage
from ..program import Module, build_program
from ..runtime import ConcurrencyLimiter, ProgramSpec, RateLimiter, Work, stream_bounded
from ..schema import Prediction
from ..settings import context
from ._limits import SharedCallBudget, SharedCircuitBreaker, SharedRateLimiter, breaker_options

# An LM's parts that belong to one process (locks, connections, counters, recent calls): never
# sent to a worker; the worker builds its own.
_PROCESS_PARTS = ("limiter", "rate_limiter", "breaker", "history", "usage", "_caches", "_sessions", "_lock", "requests")


class LMBlueprint:
    """How a worker builds its own client of the driver's LM (or calls a factory that builds one).

    The LM's settings travel; what belongs to a process (connections, locks, its history and
    usage counters) does not, and the worker's rate limiter and circuit breaker are the run's
    shared ones.
    """

    def __init__(self, lm: LM | Callable[[], LM]) -> None:
        self.factory: Callable[[], LM] | None = None
        self.cls: type[LM] | None = None
        self.state: dict[str, Any] = {}
        if isinstance(lm, LM):
            self.cls = type(lm)
            self.state = {k: v for k, v in vars(lm).items() if k not in _PROCESS_PARTS}
            self.max_concurrency = lm.limiter.limit
            self.history = (lm.history.maxlen, lm.history.max_bytes)
            limiter = lm.rate_limiter
            self.rate = (limiter.rpm, limiter.tpm, limiter.window) if limiter.active else None
            self.breaker = breaker_options(lm.breaker) if lm.breaker is not None else None
            self.key = lm.endpoint_label
            self.process_parts = [k for k in ("_caches", "_sessions", "_lock", "requests") if k in vars(lm)]
        elif callable(lm):
            self.factory = lm
            self.rate = None
            self.breaker = None
            self.key = ""
        else:
            raise ConfigurationError(f"lm= takes an em.LM or a function that returns one, got {lm!r}")

    def build(self, limits: Any) -> LM:
        """The worker's LM; its rate limit and breaker are the shared ones in ``limits``."""
        if self.factory is not None:
            lm = self.factory()
            if not isinstance(lm, LM):
                raise ConfigurationError(f"The lm= factory returned {lm!r}, not an em.LM")
            return lm
        assert self.cls is not None
        lm = self.cls.__new__(self.cls)
        vars(lm).update(self.state)
        lm.limiter = ConcurrencyLimiter(self.max_concurrency)
        lm.history = History(maxlen=self.history[0], max_bytes=self.history[1])
        lm.usage = Usage()
        fresh: dict[str, Any] = {"_caches": {}, "_sessions": {}, "_lock": threading.Lock(), "requests": []}
        for name in self.process_parts:
            setattr(lm, name, fresh[name])
        if self.rate is not None:
            rpm, tpm, window = self.rate
            lm.rate_limiter = SharedRateLimiter(limits, self.key, rpm, tpm, window)
        else:
            lm.rate_limiter = RateLimiter()
        lm.breaker = SharedCircuitBreaker(limits, self.key, **self.breaker) if self.breaker is not None else None
        return lm


class LMSecrets:
    """What the descriptions of a program's LMs leave out (explicit keys, headers), handed to the workers apart.

    It never enters the program's spec; its repr names no value.
    """

    def __init__(self, parts: Sequence[Mapping[str, Any]]) -> None:
        self._parts = [dict(part) for part in parts]

    def __repr__(self) -> str:
        return f"LMSecrets({[sorted(part) for part in self._parts]})"

    def part(self, index: int) -> dict[str, Any]:
        """The secret options of the ``index``-th LM of the spec (empty when it has none)."""
        return dict(self._parts[index]) if index < len(self._parts) else {}


def described_key(description: Mapping[str, Any]) -> str:
    """The shared-limits key of a described LM: the same on every worker, one per distinct LM."""
    digest = hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:12]
    return f"{description['model']} #{digest}"


def described_limits(description: Mapping[str, Any]) -> tuple[tuple[int | None, int | None, float] | None, Any]:
    """The rate limit ``(rpm, tpm, window)`` (None when off) and breaker options (None when off) of a described LM."""
    options = description["options"]
    rpm, tpm = options.get("rpm"), options.get("tpm")
    rate = (rpm, tpm, float(description["rate_window"])) if rpm or tpm else None
    return rate, description.get("breaker")


def build_described(description: Mapping[str, Any], secrets: Mapping[str, Any], limits: Any) -> LM:
    """A worker's LM built from its description, its rate limit and breaker the run's shared ones."""
    lm = LM.from_description(description, secrets)
    key = described_key(description)
    rate, breaker = described_limits(description)
    if rate is not None:
        lm.rate_limiter = SharedRateLimiter(limits, key, *rate)
    if breaker is not None:
        lm.breaker = SharedCircuitBreaker(limits, key, **breaker)
    return lm


def import_program_class(class_path: str) -> type[Module]:
    """The class named ``"module:QualName"``, imported here.

    Raises:
        LoadError: the module cannot be imported on this worker, or does not define the class.
    """
    module_name, _, qualname = class_path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise LoadError(
            f"A worker cannot import the program's module {module_name!r} ({type(exc).__name__}: {exc}). "
            "Install the package that defines it on every node, or ship it with Ray's runtime_env "
            "(RayExecutor(runtime_env={'py_modules': [...]}) or {'working_dir': ...})."
        ) from None
    value: Any = module
    for part in qualname.split("."):
        value = getattr(value, part, None)
    if not (isinstance(value, type) and issubclass(value, Module)):
        raise LoadError(
            f"Module {module_name!r} has no program class {qualname!r} on this worker; "
            "is the same version of the code installed on every node?"
        )
    return value


class Worker:
    """One worker process (a Ray actor): runs items of a batch on a program it rebuilt itself."""

    def __init__(self) -> None:
        self._programs: dict[str, Module] = {}
        self._lms: dict[int, LM] = {}
        self._limits: dict[str, Any] = {}

    def pid(self) -> int:
        """The worker's process id."""
        return os.getpid()

    def setup(
        self,
        spec: ProgramSpec,
        blueprint: LMBlueprint | None,
        limits: Any,
        key: str,
        secrets: LMSecrets | None = None,
    ) -> str:
        """Rebuild the program, its predictors' LMs and the run's LM for the run ``key``; returns the class path."""
        cls = import_program_class(spec.class_path)
        program = build_program({"class": spec.class_path, "state": spec.state}, cls)
        predictors = dict(program.named_predictors())
        for index, entry in enumerate(spec.lms):
            lm = build_described(entry["lm"], secrets.part(index) if secrets is not None else {}, limits)
            for name in entry["predictors"]:
                if name not in predictors:
                    raise LoadError(f"The program rebuilt on this worker has no predictor {name!r}")
                predictors[name].lm = lm
        self._programs[key] = program
        self._limits[key] = limits
        if blueprint is not None:
            self._lms[id(self._programs[key])] = blueprint.build(limits)
        return spec.class_path

    def forget(self, key: str) -> None:
        """Drop the run ``key``'s program."""
        program = self._programs.pop(key, None)
        self._limits.pop(key, None)
        if program is not None:
            self._lms.pop(id(program), None)

    async def run(
        self, key: str, work: Work, items: Sequence[tuple[int, Any]], concurrency: int, share_budget: bool = False
    ) -> AsyncIterator[tuple[int, Any, dict[str, Any]]]:
        """Yield ``(index, work(program, index, item), usage)`` as each item finishes.

        ``usage`` is what the item's LM calls took: ``{"calls": n, "models": {model: Usage dict}}``
        (calls answered from the cache are not counted in ``calls``). With ``share_budget`` every
        call is taken from the run's shared call budget first.
        """
        program = self._programs[key]
        lm = self._lms.get(id(program))
        overrides = {"lm": lm} if lm is not None else {}

        async def job(index: int, item: Any) -> tuple[Any, dict[str, Any]]:
            with track_usage() as usage, spending_limit(None) as counted:
                result = await work(program, index, item)
            if isinstance(result, Prediction) and result.trace:
                result.attach_trace([])  # its entries are this worker's predictors (and their LMs' connections)
            models = {model: part.as_dict() for model, part in usage.by_model.items()}
            return result, {"calls": counted.used, "models": models}

        shared = limit_calls(SharedCallBudget(self._limits[key])) if share_budget else contextlib.nullcontext()
        with context(**overrides), shared:
            jobs = [(lambda index=index, item=item: job(index, item)) for index, item in items]
            async for position, outcome in stream_bounded(jobs, concurrency):
                assert not isinstance(outcome, BaseException)  # without return_exceptions, errors raise
                result, usage = outcome
                yield items[position][0], result, usage

    async def run_all(
        self, key: str, work: Work, items: Sequence[tuple[int, Any]], concurrency: int, share_budget: bool = False
    ) -> list[tuple[int, Any, dict[str, Any]]]:
        """:meth:`run`'s results all at once (for drivers on Ray Client, which cannot stream from actors)."""
        return [outcome async for outcome in self.run(key, work, items, concurrency, share_budget)]
