"""``RayExecutor``: runs a batch's items on Ray workers.

Each worker rebuilds the program from its class path and JSON state; results stream back to
the driver, which owns the checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import uuid
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from typing import Any

from ..data import split_evenly
from ..errors import ConfigurationError, DistributedError, MissingDependencyError
from ..lm import LM, Usage, open_budgets, record_usage
from ..runtime import ProgramSpec, Work
from ..settings import current
from ._limits import LimitsActor
from ._workers import LMBlueprint, LMSecrets, Worker, described_key, described_limits

_log = logging.getLogger("elixirml.distributed")

# Ray Client starts a server process for each driver; when that process dies as it starts, the
# driver's ray.init fails with this in its message, and the next try starts a fresh process.
_CLIENT_SERVER_DIED = "Starting Ray client server failed"
_CLIENT_START_TRIES = 3


def ray_module() -> Any:
    """The ``ray`` package, or an error naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        raise MissingDependencyError("ray", "ray", "Distributed execution (em.RayExecutor)") from None
    return ray


def _died(ray: Any) -> tuple[type[BaseException], ...]:
    """The errors that mean a worker process is gone (its unfinished items must run elsewhere)."""
    errors = ray.exceptions
    names = ("RayActorError", "ActorUnavailableError", "WorkerCrashedError", "ObjectLostError", "OwnerDiedError")
    return tuple(getattr(errors, name) for name in names if hasattr(errors, name))


def _cause(ray: Any, exc: BaseException) -> BaseException:
    """The exception a worker's code raised (Ray wraps it in a RayTaskError)."""
    if isinstance(exc, ray.exceptions.RayTaskError) and isinstance(exc.cause, BaseException):
        return exc.cause
    return exc


class RayExecutor:
    """Run evaluations, batches and optimization trials on Ray workers.

    Each worker is a Ray actor that imports the program's module, rebuilds the program from its
    JSON state (``dump_state``; nothing of the program is pickled), builds its own LM client and
    runs its share of the items with the async engine, streaming each result back as it
    finishes. A worker that dies mid-run is replaced and its unfinished items run again on the
    new one; each item's result is taken once. The LM's rate limits and circuit breaker are
    shared by all workers through one Ray actor, and so is the driver's LM call budget
    (``em.spending_limit`` / an optimizer's ``max_lm_calls``): the workers' calls together stay
    within it. The usage of the workers' LM calls is added to the driver's ``track_usage``
    blocks as results arrive. Runs started at the same time on one executor (an optimizer's
    parallel trials) share its workers, limits and budget.

    Args:
        address: ``None`` (the Ray instance this process already joined, or a new local one),
            ``"auto"`` (the cluster on this machine started with ``ray start``), or
            ``"ray://host:port"`` (a remote cluster through Ray Client).
        num_workers: how many worker actors (default: as many as the cluster's free CPUs hold).
        resources_per_worker: Ray resources each worker holds (``{"CPU": 1}`` by default;
            ``"GPU"`` and custom resources too).
        lm: the LM the workers use: an ``em.LM`` (its settings travel and each worker builds its
            own client) or a function that builds one on the worker (needed for an embedded
            model). Default: the LM configured when the run starts (``em.configure(lm=...)``).
        max_worker_failures: how many worker deaths one run tolerates before it raises
            :class:`~elixirml.errors.DistributedError`.
        runtime_env: Ray's ``runtime_env`` for the workers (``py_modules``, ``working_dir``,
            ``env_vars``, ...), to ship code the nodes do not have installed. When this executor
            starts Ray it is the job's environment (so local directories are uploaded); when Ray
            was started before, it applies to the workers and local paths are refused (Ray uploads
            them only for a whole job).
        init_options: more keywords for ``ray.init`` when this executor starts or joins Ray.
        start_timeout: seconds a worker may take to start (to be placed on a node with its
            resources free, and to import the program); past it the run raises
            :class:`~elixirml.errors.DistributedError` instead of waiting for ever.

    Example:
        >>> executor = em.RayExecutor(num_workers=4)                  # doctest: +SKIP
        >>> result = em.evaluate(program, devset, metric, executor=executor)  # doctest: +SKIP
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        num_workers: int | None = None,
        resources_per_worker: Mapping[str, float] | None = None,
        lm: LM | Callable[[], LM] | None = None,
        max_worker_failures: int = 3,
        runtime_env: Mapping[str, Any] | None = None,
        init_options: Mapping[str, Any] | None = None,
        start_timeout: float = 120.0,
    ) -> None:
        if num_workers is not None and num_workers < 1:
            raise ConfigurationError(f"num_workers must be >= 1, got {num_workers}")
        if address is not None and address != "auto" and not address.startswith("ray://"):
            raise ConfigurationError(f"address= takes None, 'auto' or 'ray://host:port', got {address!r}")
        self.address = address
        self.num_workers = num_workers
        self.resources_per_worker = dict(resources_per_worker or {"CPU": 1})
        self.lm = lm
        self.max_worker_failures = max_worker_failures
        self.runtime_env = dict(runtime_env or {})
        self.init_options = dict(init_options or {})
        self.start_timeout = start_timeout
        self._workers: list[Any] = []
        self._ephemeral = False  # made for executor="ray": its workers stop when the run ends
        self._classes: tuple[Any, Any] | None = None
        self._job_env = False  # whether this executor started Ray with its runtime_env
        self._limits: Any = None  # the LimitsActor of the runs in progress
        self._runs = 0  # runs in progress (they share the workers and the limits actor)
        self._charged_calls = 0  # worker calls added to the driver's budgets since the limits actor started

    def __repr__(self) -> str:
        return f"RayExecutor(address={self.address!r}, num_workers={self.num_workers!r})"

    # ------------------------------------------------------------------ cluster
    def _ray(self) -> Any:
        ray = ray_module()
        if not ray.is_initialized():
            options = dict(self.init_options)
            if self.runtime_env:  # the job's environment: local working_dir / py_modules are uploaded only here
                options["runtime_env"] = {**options.get("runtime_env", {}), **self.runtime_env}
                self._job_env = True
            self._init(ray, options)
        return ray

    def _init(self, ray: Any, options: dict[str, Any]) -> None:
        """``ray.init``; under Ray Client, a server process that dies as it starts is asked for again."""
        for attempt in range(1, _CLIENT_START_TRIES + 1):
            try:
                ray.init(address=self.address, **options)
                return
            except ConnectionAbortedError as exc:
                if _CLIENT_SERVER_DIED not in str(exc):
                    raise
                if attempt == _CLIENT_START_TRIES:
                    raise DistributedError(
                        f"Ray Client at {self.address} could not start a server process for this driver "
                        f"({_CLIENT_START_TRIES} tries). Its log says why: ray_client_server_<port>.err in the Ray "
                        "log directory of the cluster's head node (/tmp/ray/session_latest/logs unless `ray start` "
                        "was given --temp-dir)."
                    ) from exc
                _log.warning(
                    "Ray Client at %s: the server process for this driver died as it started; asking for one again "
                    "(try %d of %d)",
                    self.address,
                    attempt + 1,
                    _CLIENT_START_TRIES,
                )

    def _actor_env(self) -> dict[str, Any]:
        """The workers' ``runtime_env`` when Ray was started before this executor (else it is the job's)."""
        if not self.runtime_env or self._job_env:
            return {}
        local = [
            key
            for key in ("working_dir", "py_modules")
            for value in _as_list(self.runtime_env.get(key))
            if isinstance(value, str) and "://" not in value
        ]
        if local:
            raise ConfigurationError(
                f"runtime_env {sorted(set(local))} names local paths, which Ray uploads only for a whole job, and Ray "
                "was already started in this process. Create the RayExecutor before anything starts Ray (it then "
                "starts Ray with this runtime_env), or pass it to ray.init(runtime_env=...) yourself."
            )
        return dict(self.runtime_env)

    def workers(self) -> int:
        """How many workers a run uses (starting Ray if needed)."""
        if self.num_workers is not None:
            return self.num_workers
        per_worker = float(self.resources_per_worker.get("CPU", 1)) or 1.0
        free = float(self._ray().available_resources().get("CPU", 1))
        return max(1, int(free // per_worker))

    def _actor_classes(self) -> tuple[Any, Any]:
        if self._classes is None:
            ray = self._ray()
            resources = dict(self.resources_per_worker)
            options: dict[str, Any] = {
                "num_cpus": resources.pop("CPU", 1),
                "num_gpus": resources.pop("GPU", 0),
                "max_restarts": 0,
                "max_concurrency": 1000,
            }
            if resources:
                options["resources"] = resources
            actor_env = self._actor_env()
            if actor_env:
                options["runtime_env"] = actor_env
            worker = ray.remote(**options)(Worker)
            limits = ray.remote(num_cpus=0, max_restarts=0)(LimitsActor)
            self._classes = (worker, limits)
        return self._classes

    def _new_worker(self) -> Any:
        worker_cls, _ = self._actor_classes()
        return worker_cls.remote()

    def worker_pids(self) -> list[int]:
        """The process ids of the live workers (starting them if none runs yet)."""
        ray = self._ray()
        self._ensure_workers(self.workers())
        return [int(pid) for pid in ray.get([w.pid.remote() for w in self._workers])]

    def _ensure_workers(self, n: int) -> list[Any]:
        while len(self._workers) < n:
            self._workers.append(self._new_worker())
        return self._workers[:n]

    def shutdown(self) -> None:
        """Stop this executor's workers (Ray itself keeps running)."""
        ray = ray_module()
        for worker in self._workers:
            with contextlib.suppress(Exception):
                ray.kill(worker)
        self._workers = []

    # ------------------------------------------------------------------ shared budget
    async def _share_budget(self, limits: Any) -> bool:
        """Let the workers spend what is left of the tightest open call budget; False when none caps calls.

        Every call a worker makes is taken from one count in the limits actor. The driver's
        budgets learn of those calls as results arrive (:meth:`_charge`); the workers may take
        what those budgets have left plus what has already been charged to them.
        """
        left = [b.max_calls - b.used for b in open_budgets() if b.max_calls is not None]
        if not left:
            return False
        await _get(limits.allow_calls.remote(max(0, min(left)) + self._charged_calls))
        return True

    def _charge(self, usage: dict[str, Any]) -> None:
        """Add one item's worker usage to the driver's usage trackers and call budgets.

        Calls of an item whose worker died before returning it are not seen here (they still
        count in the shared budget, so the cap holds).
        """
        for model, part in usage["models"].items():
            record_usage(Usage.from_dict(part), model)
        calls = int(usage["calls"])
        for budget in open_budgets():
            budget.used += calls
        self._charged_calls += calls

    # ------------------------------------------------------------------ running
    def _blueprint(self) -> LMBlueprint | None:
        lm = self.lm if self.lm is not None else current().lm
        if lm is None:
            return None  # the program's predictors carry their own LMs, or the run fails with its usual error
        return LMBlueprint(lm)

    async def stream(
        self, program: ProgramSpec, work: Work, items: Sequence[tuple[int, Any]], *, concurrency: int = 16
    ) -> AsyncGenerator[tuple[int, Any], None]:
        """Run ``work`` on every item on the workers; yield ``(index, result)`` as each one finishes.

        Raises:
            LoadError: a worker cannot import the program's module (the message names it).
            DistributedError: workers kept dying (more than ``max_worker_failures``).
        """
        if not items:
            return
        ray = self._ray()
        blueprint = self._blueprint()
        _, limits_cls = self._actor_classes()
        if self._runs == 0:
            self._limits, self._charged_calls = limits_cls.remote(), 0
        self._runs += 1
        limits = self._limits
        try:
            if blueprint is not None and (blueprint.rate is not None or blueprint.breaker is not None):
                await _get(limits.configure.remote(blueprint.key, blueprint.rate, blueprint.breaker))
            for entry in program.lms:  # each LM a predictor carries has limits of its own, shared by the workers
                rate, breaker = described_limits(entry["lm"])
                if rate is not None or breaker is not None:
                    await _get(limits.configure.remote(described_key(entry["lm"]), rate, breaker))
            share_budget = await self._share_budget(limits)
            parts = [part for part in split_evenly(list(items), self.workers()) if part]
            workers = self._ensure_workers(len(parts))
        except BaseException:
            self._end_run()
            raise
        per_worker = max(1, math.ceil(concurrency / len(parts)))
        run_key = uuid.uuid4().hex
        secrets = LMSecrets(program.secrets)  # apart from the spec, which never holds a key
        queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()
        taken: set[int] = set()
        failures = 0
        died = _died(ray)

        async def drive(slot: int, part: list[tuple[int, Any]]) -> None:
            nonlocal failures
            remaining = dict(part)
            worker = workers[slot]
            while remaining:
                try:
                    await self._setup(worker, program, blueprint, limits, run_key, secrets)
                    async for index, result, usage in self._results(
                        worker, run_key, work, remaining, per_worker, share_budget
                    ):
                        if remaining.pop(index, _GONE) is not _GONE and index not in taken:
                            taken.add(index)
                            self._charge(usage)
                            await queue.put((index, result))
                    with contextlib.suppress(*died):
                        await _get(worker.forget.remote(run_key))
                except died as exc:
                    failures += 1
                    if failures > self.max_worker_failures:
                        raise DistributedError(
                            f"{failures} Ray workers died during this run (more than max_worker_failures="
                            f"{self.max_worker_failures}); the last: {type(exc).__name__}: {str(exc).splitlines()[0]}"
                        ) from exc
                    worker = self._new_worker()  # the dead one's unfinished items run on a fresh worker
                    self._replace(workers[slot], worker)
                    workers[slot] = worker
                except ray.exceptions.RayTaskError as exc:
                    raise _cause(ray, exc) from None

        tasks = [asyncio.create_task(drive(slot, part)) for slot, part in enumerate(parts)]
        waiting = set(tasks)
        try:
            while waiting or not queue.empty():
                if not queue.empty():
                    yield queue.get_nowait()
                    continue
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({getter, *waiting}, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    yield getter.result()
                else:
                    getter.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await getter
                for task in done - {getter}:
                    waiting.discard(task)
                    task.result()  # a worker's failure stops the run
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._end_run()

    def _end_run(self) -> None:
        """One run ended; the last one running stops the limits actor (and an ephemeral executor's workers)."""
        self._runs -= 1
        if self._runs:
            return
        with contextlib.suppress(Exception):
            ray_module().kill(self._limits)
        self._limits = None
        if self._ephemeral:
            self.shutdown()

    async def _results(
        self, worker: Any, run_key: str, work: Work, remaining: dict[int, Any], per_worker: int, share_budget: bool
    ) -> AsyncGenerator[tuple[int, Any, dict[str, Any]], None]:
        """A worker's results as they come: one by one, or a batch of ``per_worker`` at a time through Ray Client.

        Ray Client cannot stream from an actor, so there each batch comes back whole.
        """
        items = list(remaining.items())
        if not ray_module().util.client.ray.is_connected():
            stream = worker.run.options(num_returns="streaming").remote(run_key, work, items, per_worker, share_budget)
            async for ref in stream:
                yield await ref
            return
        for start in range(0, len(items), per_worker):
            batch = items[start : start + per_worker]
            for outcome in await _get(worker.run_all.remote(run_key, work, batch, per_worker, share_budget)):
                yield outcome

    async def _setup(
        self, worker: Any, program: ProgramSpec, blueprint: Any, limits: Any, run_key: str, secrets: LMSecrets
    ) -> None:
        ray = ray_module()
        try:
            setup = worker.setup.remote(program, blueprint, limits, run_key, secrets)
            await asyncio.wait_for(_get(setup), self.start_timeout)
        except TimeoutError:
            free = ray.available_resources()
            raise DistributedError(
                f"A Ray worker did not start within {self.start_timeout:.0f}s: each needs {self.resources_per_worker} "
                f"and the cluster has { ({k: v for k, v in free.items() if not k.startswith('node:')}) } free. "
                "Lower num_workers or resources_per_worker, add nodes, or stop other executors (executor.shutdown())."
            ) from None

    def _replace(self, old: Any, new: Any) -> None:
        for position, worker in enumerate(self._workers):
            if worker is old:
                self._workers[position] = new
                return
        self._workers.append(new)


_GONE = object()


async def _get(ref: Any) -> Any:
    """The value of a Ray object ref, awaited (a Ray Client ref cannot be awaited directly)."""
    return await asyncio.wrap_future(ref.future())


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else ([] if value is None else [value])


def default_executor(*, ephemeral: bool = True, num_workers: int | None = None) -> RayExecutor:
    """What ``executor="ray"`` means: a :class:`RayExecutor` with the defaults (``RAY_ADDRESS`` if set).

    Args:
        ephemeral: stop its workers when each run ends (``evaluate(..., executor="ray")``); an
            optimizer that runs many trials keeps them until it is done and then shuts them down.
        num_workers: as for :class:`RayExecutor`.
    """
    executor = RayExecutor(address=os.environ.get("RAY_ADDRESS") or None, num_workers=num_workers)
    executor._ephemeral = ephemeral
    return executor
