"""Supervised jobs: evaluations and optimizations of stored programs, kept in the store.

A :class:`JobManager` starts each job under an :class:`~elixirml.runtime.Supervisor`:
evaluations as asyncio tasks in this process (they resume from an evaluation checkpoint in the
store), optimizations as one subprocess each (they resume their optimization run and, for
MIPRO, its Optuna study in the store database). A crashed worker is restarted with backoff,
at most ``max_restarts`` times within ``window`` seconds; past that the job fails with the
reason. Jobs live in the store's ``em_jobs`` table; a job left unfinished by a manager that
stopped or a process that died is resumed by the next manager that starts on the store. Each job is
held by one manager at a time: claimed by a compare-and-set on its owner and lease in the store,
the lease renewed while it runs, and taken over by another manager only once it has expired.

:func:`jobs_router` puts a manager behind HTTP (FastAPI, the ``serve`` extra).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import logging
import math
import os
import re
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..errors import ConfigurationError, LoadError, MissingDependencyError, StoreError, SupervisorError, UserError
from ..program import Module, Store
from ..runtime import Callback, ProgressLines, Supervisor
from ..store import job_owner

log = logging.getLogger("elixirml.serve")

FINAL_STATES = ("succeeded", "failed", "cancelled")
MAX_INT = 2**31 - 1  # the largest number a job may give (a version, a limit, a budget): a database INTEGER
_PROGRESS_EVERY = 0.5  # seconds between progress writes of an evaluation


class JobRequest(BaseModel):
    """What ``POST /jobs`` (or :meth:`JobManager.submit`) takes.

    Attributes:
        kind: ``"evaluate"`` or ``"optimize"``.
        program: a stored program, ``name`` (latest version) or ``name@N``.
        dataset: a bundled set (``sst2``, ``gsm8k``, ``gsm8k:test``) or a .jsonl/.csv/.tsv file
            under one of the manager's ``data_dirs``; or use ``rows``.
        rows: the examples inline (a list of objects), instead of ``dataset``.
        inputs: the input fields of the examples.
        limit: use only the first N examples.
        valset: validation data for an optimization (a reference like ``dataset``); or ``valrows``.
        valrows: validation examples inline.
        metric: ``exact_match``, ``f1``, ``contains``, ``numeric_match`` or an extension's metric.
        field: the example field the metric compares.
        pred_field: the prediction field, if named differently.
        optimizer: ``mipro``, ``random``, ``bootstrap``, ``labeled``, ``variable`` or an extension's.
        settings: the optimizer's constructor arguments (``{"auto": "light", "num_trials": 8}``).
        options: ``compile`` options: budgets (``max_lm_calls``, ``max_cost``, ``max_trials``,
            ``timeout``) and the optimizer's run options.
        save_as: the program name the optimized version is saved under (default: the program's): letters,
            digits, `.`, `_` and `-`, starting with a letter or digit.
        concurrency: examples in flight at once (evaluations).
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["evaluate", "optimize"]
    program: str = Field(min_length=1, max_length=220)
    dataset: str | None = Field(default=None, min_length=1, max_length=1000)
    rows: list[dict[str, Any]] | None = Field(default=None, min_length=1)
    inputs: list[str] | None = Field(default=None, max_length=100)
    limit: int | None = Field(default=None, ge=1, le=MAX_INT)
    valset: str | None = Field(default=None, min_length=1, max_length=1000)
    valrows: list[dict[str, Any]] | None = Field(default=None, min_length=1)
    metric: str = Field(default="exact_match", min_length=1, max_length=100)
    field: str | None = Field(default=None, min_length=1, max_length=200)
    pred_field: str | None = Field(default=None, min_length=1, max_length=200)
    optimizer: str = Field(default="mipro", min_length=1, max_length=100)
    settings: dict[str, Any] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)
    save_as: str | None = Field(default=None, min_length=1, max_length=200)
    concurrency: int = Field(default=8, ge=1, le=256)


#: What a job's ``save_as`` may be: a name ``/programs/<name>/run`` can reach, with no path or version part.
_SAVE_AS = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
#: What a job's ``field``, ``pred_field`` and ``inputs`` may name: a field, never an attribute such as ``__class__``.
_FIELD = re.compile(r"[^\W\d_]\w{0,199}")


def parse_program_reference(reference: str) -> tuple[str, int | str]:
    """``"name"`` -> (name, "latest"); ``"name@3"`` -> (name, 3).

    Raises:
        ConfigurationError: the version is not a number.
    """
    name, sep, version = reference.rpartition("@")
    if not sep:
        return reference, "latest"
    if not name or not version.isascii() or not version.isdigit():
        raise ConfigurationError(f"A program reference is 'name' or 'name@N' (N a version number), got {reference!r}")
    if len(version) > 10 or int(version) > MAX_INT:
        raise ConfigurationError(f"program: version {version} of {name!r} is out of range (at most {MAX_INT})")
    return name, int(version)


@dataclasses.dataclass(frozen=True)
class _Rule:
    """What one optimizer setting or option of a job may be: its type and, for numbers, its range."""

    kind: Literal["int", "float", "bool", "choice", "lm"]
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] = ()

    def check(self, where: str, value: Any, lms: Sequence[str]) -> None:
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise ConfigurationError(f"{where} must be true or false, got {value!r}")
            return
        if self.kind == "choice":
            if value not in self.choices:
                raise ConfigurationError(f"{where} must be one of {list(self.choices)}, got {value!r}")
            return
        if self.kind == "lm":
            if not isinstance(value, str) or value not in lms:
                named = f"one of the server's job LMs {sorted(lms)}" if lms else "nothing: this server names no job LMs"
                raise ConfigurationError(
                    f"{where} names an LM of the server by name, which may be {named}, got {value!r} "
                    "(the operator names them with JobManager(lms={{name: model}}))"
                )
            return
        number_types: tuple[type, ...] = (int,) if self.kind == "int" else (int, float)
        if isinstance(value, bool) or not isinstance(value, number_types):
            wanted = "an integer" if self.kind == "int" else "a number"
            raise ConfigurationError(f"{where} must be {wanted}, got {value!r}")
        low = -math.inf if self.low is None else self.low
        high = math.inf if self.high is None else self.high
        number: Any = value  # an int of any size compares exactly; NaN and infinities are out of every range
        if (isinstance(number, float) and not math.isfinite(number)) or not low <= number <= high:
            raise ConfigurationError(f"{where} must be between {low:g} and {high:g}, got {value!r}")


def _int(low: int, high: int = MAX_INT) -> _Rule:
    return _Rule("int", low, high)


_DEMOS = {"max_bootstrapped_demos": _int(0, 64), "max_labeled_demos": _int(0, 256)}
#: Budgets: what ``options`` (and ``settings``) of any optimizer may give.
_BUDGETS: dict[str, _Rule] = {
    "max_lm_calls": _int(1),
    "max_metric_calls": _int(1),
    "max_cost": _Rule("float", 1e-6, 1e6),
    "max_trials": _int(1),
    "timeout": _Rule("float", 0.001, 30 * 86400),
}
#: Constructor settings every optimizer takes (``n_workers`` and ``executor`` are not among them: a job
#: cannot make the server start or reach a cluster).
_COMMON: dict[str, _Rule] = {
    **_BUDGETS,
    "seed": _int(0),
    "concurrency": _int(1, 256),
    "num_threads": _int(1, 256),
    "display_progress": _Rule("bool"),
}
#: Per optimizer, the constructor settings a job may give beyond the common ones. Settings that name
#: something to connect to, open or import (MIPRO's ``storage``, a ``teacher`` program, an LM object)
#: are left out; an LM is named by the server's name for it (``proposer_lm``).
JOB_SETTINGS: dict[str, dict[str, _Rule]] = {
    "labeled": {"k": _int(0, 256), "sample": _Rule("bool")},
    "bootstrap": {**_DEMOS, "max_rounds": _int(1, 20), "metric_threshold": _Rule("float", -1e9, 1e9)},
    "random": {**_DEMOS, "num_candidates": _int(1, 256), "search_variables": _Rule("bool")},
    "mipro": {
        **_DEMOS,
        "auto": _Rule("choice", choices=("light", "medium", "heavy", None)),
        "proposer_lm": _Rule("lm"),
        "num_candidates": _int(1, 256),
        "num_trials": _int(1, 100_000),
        "minibatch_size": _int(1, 100_000),
        "max_promotions": _int(0, 1000),
    },
    "variable": {
        "n_trials": _int(1, 100_000),
        "sampler": _Rule("choice", choices=("tpe", "nsga2")),
        "instruction_candidates": _int(1, 256),
        "proposer_lm": _Rule("lm"),
    },
}


def check_optimizer_fields(
    optimizer: str,
    settings: Mapping[str, Any],
    options: Mapping[str, Any],
    run_options: Sequence[str],
    lms: Sequence[str],
) -> None:
    """Check a job's optimizer ``settings`` and ``options`` against the allow-list of ``optimizer``.

    Settings are the common ones (budgets, ``seed``, ``concurrency``, ``display_progress``) and the
    optimizer's own (:data:`JOB_SETTINGS`; an extension's optimizer takes the common ones only);
    options are budgets and those of the optimizer's ``run_options`` the allow-list knows.

    Raises:
        ConfigurationError: a field that is not allowed, or a value of the wrong type or out of range
            (the message names the field, e.g. ``settings.storage``).
    """
    own = JOB_SETTINGS.get(optimizer, {})
    allowed = {**_COMMON, **own}
    for key, value in settings.items():
        rule = allowed.get(key)
        if rule is None:
            raise ConfigurationError(
                f"settings.{key} is not a setting a job may give the {optimizer!r} optimizer; "
                f"allowed: {sorted(allowed)}"
            )
        rule.check(f"settings.{key}", value, lms)
    allowed_options = {**_BUDGETS, **{k: own[k] for k in run_options if k in own}}
    for key, value in options.items():
        rule = allowed_options.get(key)
        if rule is None:
            raise ConfigurationError(
                f"options.{key} is not an option a job may give the {optimizer!r} optimizer; "
                f"allowed: {sorted(allowed_options)}"
            )
        rule.check(f"options.{key}", value, lms)


def resolve_lm(spec: str) -> Any:
    """The LM a worker uses: ``"pkg.module:factory"`` calls that function; anything else is ``em.LM(spec)``."""
    module, sep, attribute = spec.partition(":")
    if sep and "/" not in module and module.replace(".", "").replace("_", "").isalnum():
        factory = getattr(importlib.import_module(module), attribute, None)
        if not callable(factory):
            raise ConfigurationError(f"LM factory {spec!r}: {module} has no callable {attribute!r}")
        return factory()
    from ..lm import LM

    return LM(spec)


def load_program_class(class_path: str, allow_modules: Sequence[str]) -> None:
    """Make sure the class a stored program names is loaded, importing its module only if it is allowed.

    Raises:
        ConfigurationError: the module is neither loaded nor under an allowed prefix, or fails to import.
    """
    module = class_path.partition(":")[0]
    if not module or module in sys.modules:
        return
    if not any(module == prefix or module.startswith(prefix + ".") for prefix in allow_modules):
        raise ConfigurationError(
            f"The stored program's class {class_path!r} lives in module {module!r}, which is not loaded and not "
            f"allowed to be imported; start the manager with allow_modules=[{module.split('.')[0]!r}] "
            "(elixirml serve --allow-module ...)."
        )
    try:
        importlib.import_module(module)
    except Exception as exc:
        raise ConfigurationError(
            f"Importing {module!r} for the stored program failed: {type(exc).__name__}: {exc}"
        ) from exc


def _examples(spec: Mapping[str, Any], reference: str | None, rows: list[Any] | None, data_dirs: Sequence[str]) -> Any:
    from ..data import BUNDLED, gsm8k, load_examples, mark_inputs, sst2

    limit = spec.get("limit")
    if rows is not None:
        examples = mark_inputs(list(rows[:limit] if limit else rows), spec.get("inputs"))
    elif reference is None:
        return None
    elif reference in BUNDLED:  # the package's own files, never a path of the same name
        name, _, split = reference.partition(":")
        data = sst2(limit=limit) if name == "sst2" else gsm8k(split or "train", limit=limit)
        examples = mark_inputs(data.to_list(), spec.get("inputs"))
    else:
        examples = load_examples(str(_data_file(reference, data_dirs)), spec.get("inputs"), limit)
    if not examples:
        raise LoadError(f"The dataset {reference or 'rows'!r} has no examples")
    return examples


def _data_file(reference: str, data_dirs: Sequence[str]) -> Path:
    if not data_dirs:
        raise ConfigurationError(
            f"Dataset {reference!r}: this server reads no data files (start it with data_dirs=[...]); "
            "send the examples inline as rows, or use a bundled set (sst2, gsm8k, gsm8k:test)"
        )
    for folder in data_dirs:
        root = Path(folder).resolve()
        candidate = (root / reference).resolve()
        if candidate.is_relative_to(root) and candidate.is_file():
            return candidate
    raise LoadError(f"No data file {reference!r} under the server's data folders; send the examples as rows instead")


class _Prepared:
    """A job's program, data and metric, rebuilt from its spec (in the manager or in a worker)."""

    def __init__(self, store: Store, job: Mapping[str, Any], allow_modules: Sequence[str], data_dirs: Sequence[str]):
        from ..evaluation import metric_by_name

        spec = job["spec"]
        name, version = job["program"], job["version"] or "latest"
        info = store.get_version(name, version)
        load_program_class(info["class_path"], allow_modules)
        self.version_info = info
        self.program: Module = store.load(name, version)
        self.examples = _examples(spec, spec.get("dataset"), spec.get("rows"), data_dirs)
        self.valset = _examples(spec, spec.get("valset"), spec.get("valrows"), data_dirs)
        self.metric = metric_by_name(spec.get("metric", "exact_match"), spec.get("field"), spec.get("pred_field"))

    def optimizer(self, spec: Mapping[str, Any], lms: Mapping[str, str], *, build_lms: bool = False) -> Any:
        """The job's optimizer, its settings and options checked against the allow-list first.

        ``lms`` are the server's job LMs by name; ``build_lms`` (in a worker) replaces a setting
        naming one (``proposer_lm``) by that LM.
        """
        from ..optimizers import optimizer_by_name

        name = spec.get("optimizer", "mipro")
        settings = dict(spec.get("settings") or {})
        options = dict(spec.get("options") or {})
        check_optimizer_fields(name, settings, {}, (), list(lms))
        # a worker's stderr is the manager's pipe: the optimizer prints plain lines, passed on to the server's log
        settings.setdefault("display_progress", None)
        if build_lms:
            for key, rule in JOB_SETTINGS.get(name, {}).items():
                if rule.kind == "lm" and key in settings:
                    settings[key] = resolve_lm(lms[settings[key]])
        optimizer = optimizer_by_name(name, self.metric, **settings)
        check_optimizer_fields(name, {}, options, optimizer.run_options, list(lms))
        return optimizer


def job_line(job_id: str, text: str) -> None:
    """One line about a job on the server's stderr (``job <id>: <text>``): its start, progress and end."""
    print(f"job {job_id}: {text}", file=sys.stderr, flush=True)


def _program_of(job: Mapping[str, Any]) -> str:
    return f"{job['program']} v{job['version']}" if job.get("version") else str(job["program"])


def begin_attempt(store: Store, job_id: str) -> dict[str, Any]:
    """Count a worker's start on the job and mark it running; returns the job as it was."""
    job = store.job(job_id)
    store.update_job(job_id, state="running", attempts=job["attempts"] + 1, error="")
    return job


def fail_for_good(store: Store, job_id: str, exc: BaseException) -> None:
    """Mark a job failed by a mistake that restarting its worker cannot fix (a :class:`UserError`)."""
    store.update_job(
        job_id, state="failed", error=f"{type(exc).__name__}: {exc} (not retried: fix the job or the server)"
    )


class _TrialProgress(Callback):
    """Writes an optimization's trials so far and best score to its job as trials finish."""

    def __init__(self, store: Store, job: Mapping[str, Any], total: int | None) -> None:
        self.store, self.job_id, self.total = store, job["id"], total
        self.trials = int(job["trials"])
        self.best = job["best_score"]

    def on_trial_end(self, call_id: str, instance: Any, trial: Any) -> None:
        self.trials = max(self.trials, int(trial.number) + 1)
        if trial.full and trial.status == "complete" and (self.best is None or trial.score > self.best):
            self.best = float(trial.score)
        progress = min(0.99, self.trials / self.total) if self.total else 0.0
        self.store.update_job(self.job_id, trials=self.trials, best_score=self.best, progress=progress)


def run_optimization(
    store: Store,
    job_id: str,
    *,
    lm: str | None,
    allow_modules: Sequence[str],
    data_dirs: Sequence[str] = (),
    lms: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Run (or resume) an optimization job to the end in this process; what a worker subprocess does.

    The optimization run's id is ``job-<id>``, so a restarted worker resumes the run (MIPRO from
    its Optuna study in the store database, GEPA, SIMBA and COPRO from their run state) instead
    of starting over. An optimizer that cannot resume starts again, as run ``job-<id>-<attempt>``.
    """
    from ..settings import configure, context

    job = begin_attempt(store, job_id)
    spec = job["spec"]
    prepared = _Prepared(store, job, allow_modules, data_dirs)
    optimizer = prepared.optimizer(spec, dict(lms or {}), build_lms=True)
    configure(store=store.url)
    if lm is not None:
        configure(lm=resolve_lm(lm))
    total = getattr(optimizer, "num_trials", None) or getattr(optimizer, "num_candidates", None)
    run_id = f"job-{job_id}"
    if job["attempts"] and not optimizer.resumable:
        run_id = f"job-{job_id}-{job['attempts'] + 1}"  # nothing to resume from: a new run for this attempt
    # the optimizer's own projection, progress and end lines follow (stderr is the manager's pipe)
    print(
        f"optimizing {_program_of(job)} with {optimizer.name} on {len(prepared.examples)} rows "
        f"(attempt {job['attempts'] + 1}, run {run_id})",
        file=sys.stderr,
        flush=True,
    )
    with context(callbacks=[_TrialProgress(store, job, total)]):
        optimizer.compile(
            prepared.program,
            trainset=prepared.examples,
            valset=prepared.valset,
            resume=run_id,
            save_as=spec.get("save_as") or job["program"],
            **dict(spec.get("options") or {}),
        )
    result = optimizer.last_result
    version = result.version or {}
    outcome = {
        "run_id": run_id,
        "best_score": result.best_score,
        "best_configuration": result.best_configuration,
        "version": version.get("number"),
        "saved_as": version.get("name"),
        "stopped": result.stopped,
        "lm_calls": result.lm_calls,
        "save_error": str(result.save_error) if result.save_error is not None else None,
    }
    store.update_job(job_id, progress=1.0, trials=len(result.trials), best_score=result.best_score, result=outcome)
    return outcome


class JobManager:
    """Start, watch, cancel and resume supervised jobs of a store.

    Args:
        store: the store (an ``em.Store``, a URL, or None for the configured store).
        lm: the LM workers run on: ``"pkg.module:factory"`` (a function returning an LM,
            imported in each worker) or a model name for ``em.LM`` (``"openai/gpt-4o-mini"``,
            ``"local"``). None: evaluations use this process's configured LM and optimization
            workers the configured one of theirs (``ELIXIRML_LM``, the config file).
        evaluation_lm: an LM object that evaluation jobs (which run in this process) use
            instead of ``lm`` (``create_app(lm=...)`` passes its LM here).
        allow_modules: module prefixes from which a stored program's class may be imported
            (the server's ``--allow-module``); a class from elsewhere must already be loaded.
        data_dirs: folders whose files a job may name as its dataset (none by default:
            bundled sets and inline rows only).
        lms: LMs a job may name by name, ``{name: model}`` with ``model`` as for ``lm``
            (``{"proposer": "openai/gpt-4o"}`` lets a MIPRO job give ``"proposer_lm": "proposer"``);
            a job names no other LM.
        lease: seconds a claim on a job holds; the manager renews it every third of that while the
            job runs, and another manager (on any host) takes the job over only once its lease
            has expired (this one died or hung) or it was released (this one stopped).
        max_restarts: restarts of a crashed worker allowed within ``window`` seconds.
        window: the restart intensity window in seconds.
        backoff: seconds before the first restart (doubling up to ``max_backoff``).
        max_backoff: the longest wait before a restart.
        python: the interpreter that runs optimization workers.
        worker_env: extra environment variables for the workers.

    Example::

        manager = JobManager(em.Store("sqlite:///jobs.db"), lm="mypkg.lms:make_lm", allow_modules=["mypkg"])
        await manager.start()                      # resumes jobs left unfinished
        job = await manager.submit({"kind": "evaluate", "program": "qa@2", "dataset": "sst2", "limit": 50})
        ...
        print(manager.get(job["id"]))              # state, progress, trials, best_score
        await manager.stop()                       # unfinished jobs resume at the next start
    """

    def __init__(
        self,
        store: Store | str | None = None,
        *,
        lm: str | None = None,
        evaluation_lm: Any = None,
        allow_modules: Sequence[str] = (),
        data_dirs: Sequence[str | os.PathLike[str]] = (),
        lms: Mapping[str, str] | None = None,
        lease: float = 30.0,
        max_restarts: int = 3,
        window: float = 60.0,
        backoff: float = 0.5,
        max_backoff: float = 10.0,
        python: str = sys.executable,
        worker_env: Mapping[str, str] | None = None,
    ) -> None:
        if lm is not None and not isinstance(lm, str):
            raise ConfigurationError(
                "JobManager(lm=...) takes a string (workers run in other processes): 'pkg.module:factory' or a model"
            )
        self.store = store if isinstance(store, Store) else Store(store)
        self.lm = lm
        self.evaluation_lm = evaluation_lm
        self.allow_modules = tuple(allow_modules)
        self.data_dirs = tuple(os.fspath(d) for d in data_dirs)
        self.lms = dict(lms or {})
        for name, model in self.lms.items():
            if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
                raise ConfigurationError(f"JobManager(lms=...): LM names are letters, digits, - and _, got {name!r}")
            if not isinstance(model, str):
                raise ConfigurationError(f"JobManager(lms=...): the LM named {name!r} is a model name or 'pkg:factory'")
        self.python = python
        self.worker_env = dict(worker_env or {})
        self._limits = (max_restarts, window, backoff, max_backoff)
        self._new_supervisor()  # checks the limits now
        self._supervisor: Supervisor | None = None
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._cancelled: set[str] = set()
        if isinstance(lease, bool) or not isinstance(lease, (int, float)) or not 0.1 <= lease <= 86400:
            raise ConfigurationError(f"JobManager(lease=...) is seconds from 0.1 to 86400, got {lease!r}")
        self.lease = float(lease)
        #: This manager's id in the store's ``owner`` column (host, process and a random part).
        self.owner = job_owner()
        self._lost: set[str] = set()  # jobs another manager took over from this one
        self._leases: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"JobManager({self.store!r}, running={self.running})"

    # ------------------------------------------------------------------ lifecycle
    @property
    def running(self) -> bool:
        """Whether the manager has been started and not stopped."""
        return self._supervisor is not None

    def _new_supervisor(self) -> Supervisor:
        max_restarts, window, backoff, max_backoff = self._limits
        return Supervisor(
            "one_for_one",
            max_restarts=max_restarts,
            window=window,
            backoff=backoff,
            max_backoff=max_backoff,
            name="jobs",
        )

    async def start(self) -> list[str]:
        """Start supervising; resume every job left unfinished (returns their ids).

        Call it from the event loop that will run the jobs (an ASGI app's lifespan).
        """
        if self._supervisor is not None:
            return []
        self._supervisor = self._new_supervisor()
        claimed = await self._claim()
        self._leases = asyncio.get_running_loop().create_task(self._keep_leases(), name="elixirml-job-leases")
        return claimed

    async def _claim(self) -> list[str]:
        """Take the jobs nobody holds (compare-and-set in the store) and start them here."""
        claimed = await asyncio.to_thread(self.store.claim_jobs, self.owner, self.lease)
        started = []
        for job in claimed:
            if self._supervisor is not None and job["id"] not in self._watchers:
                self._launch(job)
                started.append(job["id"])
        return started

    async def _keep_leases(self) -> None:
        """Renew the leases of the jobs running here; stop any taken over; take over expired ones."""
        while self._supervisor is not None:
            await asyncio.sleep(self.lease / 3)
            running = list(self._watchers)
            try:
                held = set(await asyncio.to_thread(self.store.renew_job_leases, self.owner, running, self.lease))
                for job_id in set(running) - held:  # cancelled elsewhere, or taken over by a manager that saw it expire
                    self._lost.add(job_id)
                    if self._supervisor is not None:
                        await self._supervisor.terminate_child(job_id)
                await self._claim()
            except (StoreError, ConfigurationError) as exc:  # the database is away: try again next round
                log.warning("Renewing the job leases failed (trying again in %.1f s): %s", self.lease / 3, exc)

    async def stop(self) -> None:
        """Stop every worker; their jobs are marked ``interrupted`` and resume at the next start."""
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is None:
            return
        if self._leases is not None:
            self._leases.cancel()
            await asyncio.gather(self._leases, return_exceptions=True)
            self._leases = None
        await supervisor.stop()
        if self._watchers:
            await asyncio.wait(set(self._watchers.values()))
        self._watchers.clear()

    async def __aenter__(self) -> JobManager:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ jobs
    async def submit(self, request: JobRequest | Mapping[str, Any]) -> dict[str, Any]:
        """Check a job request, record the job and start it; returns the job.

        Everything a worker needs is checked first (program and version, its class, the data,
        the metric, the optimizer and its options), so a bad request fails here, not in a worker.

        Raises:
            UserError: a bad request (the message names what is wrong).
            SupervisorError: the manager is not started.
        """
        if self._supervisor is None:
            raise SupervisorError("The job manager is not running; call `await manager.start()` first")
        created = await asyncio.to_thread(self._create, request)
        self._launch(created)
        return await asyncio.to_thread(self.get, created["id"])

    def _create(self, request: JobRequest | Mapping[str, Any]) -> dict[str, Any]:
        """Validate a request and record its job (state ``queued``)."""
        if not isinstance(request, JobRequest):
            try:
                request = JobRequest.model_validate(dict(request))
            except ValueError as exc:
                raise ConfigurationError(f"Bad job request: {exc}") from None
        if request.dataset is None and request.rows is None:
            raise ConfigurationError("A job needs data: a dataset reference or inline rows")
        if request.dataset is not None and request.rows is not None:
            raise ConfigurationError("Give either dataset or rows, not both")
        if request.kind == "evaluate" and (request.valset is not None or request.valrows is not None):
            raise ConfigurationError("valset/valrows are for optimizations; an evaluation scores its dataset")
        if request.kind == "evaluate":
            given = [f for f in ("settings", "options", "save_as") if getattr(request, f)]
            if given:
                raise ConfigurationError(f"{given[0]} is for optimizations; an evaluation takes no {given[0]}")
        if request.save_as is not None and not _SAVE_AS.fullmatch(request.save_as):
            raise ConfigurationError(
                f"save_as {request.save_as!r} is not a program name a server could serve: use letters, digits,"
                " '.', '_' and '-', starting with a letter or digit (no '/', '@', spaces or control characters)"
            )
        for where, value in (
            ("field", request.field),
            ("pred_field", request.pred_field),
            *((f"inputs[{i}]", v) for i, v in enumerate(request.inputs or ())),
        ):
            if value is not None and not _FIELD.fullmatch(value):
                raise ConfigurationError(
                    f"{where} {value!r} is not a field name: a field is a Python identifier that does not start"
                    " with '_' (the metric reads it from the examples and predictions)"
                )
        name, version = parse_program_reference(request.program)
        info = self.store.get_version(name, version)
        spec = request.model_dump(exclude={"kind", "program"}, exclude_none=True)
        job = {"id": "", "kind": request.kind, "program": name, "version": info["number"], "spec": spec}
        prepared = _Prepared(self.store, job, self.allow_modules, self.data_dirs)
        if request.kind == "optimize":
            prepared.optimizer(spec, self.lms)
        job_id = uuid.uuid4().hex[:12]
        return self.store.create_job(
            job_id,
            kind=request.kind,
            program=name,
            version=info["number"],
            spec=spec,
            owner=self.owner,
            lease=self.lease,
        )

    def get(self, job_id: str) -> dict[str, Any]:
        """A job as stored, with its worker's live state (``restarting``, restarts, pid) when it runs here.

        Raises:
            LoadError: no job has this id.
        """
        job = self.store.job(job_id)
        job.pop("spec", None)
        job.pop("owner", None)  # names the server's host and process: not for clients
        job["pid"] = None
        supervisor = self._supervisor
        if supervisor is not None and job["state"] not in FINAL_STATES:
            with contextlib.suppress(ConfigurationError):
                live = supervisor.status(job_id)
                if live.state == "restarting":
                    job["state"] = "restarting"
                    job["next_restart_in"] = live.next_restart_in
                    job["error"] = live.error or job["error"]
                job["pid"] = live.pid
        return job

    def jobs(self, *, state: str | None = None, program: str | None = None) -> list[dict[str, Any]]:
        """Jobs, newest first (filter by state or program)."""
        jobs = self.store.jobs(state=state, program=program)
        for job in jobs:
            job.pop("spec", None)
            job.pop("owner", None)
        return jobs

    async def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a job: stop its worker; the job ends ``cancelled``.

        Raises:
            LoadError: no job has this id.
            ConfigurationError: the job has already ended.
        """
        job = await asyncio.to_thread(self.store.job, job_id)
        if job["state"] in FINAL_STATES:
            raise ConfigurationError(f"Job {job_id!r} has already ended ({job['state']}); nothing to cancel")
        self._cancelled.add(job_id)
        watcher = self._watchers.get(job_id)
        if self._supervisor is not None and watcher is not None:
            await self._supervisor.terminate_child(job_id)
            await asyncio.wait({watcher})
        else:  # not running here (another process's job, or the manager is stopped)
            await asyncio.to_thread(self.store.update_job, job_id, state="cancelled", error="cancelled")
        return await asyncio.to_thread(self.get, job_id)

    async def wait(self, job_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Wait until a job running here has ended; returns it.

        Raises:
            TimeoutError: ``timeout`` seconds passed first.
        """
        watcher = self._watchers.get(job_id)
        if watcher is not None:
            await asyncio.wait_for(asyncio.shield(watcher), timeout)
        return await asyncio.to_thread(self.get, job_id)

    # ------------------------------------------------------------------ workers
    def _launch(self, job: Mapping[str, Any]) -> None:
        assert self._supervisor is not None
        job_id = job["id"]
        if job["kind"] == "evaluate":
            self._supervisor.start_task(job_id, lambda: self._evaluate(job_id), restart="transient")
        else:
            self._supervisor.start_process(
                job_id,
                self._worker_command(job_id),
                env=self._worker_environment(),
                restart="transient",
                on_stderr=lambda line: job_line(job_id, line),  # its progress lines reach the server's log
            )
        self._watchers[job_id] = asyncio.get_running_loop().create_task(self._watch(self._supervisor, job_id))

    def _worker_command(self, job_id: str) -> list[str]:
        command = [self.python, "-m", "elixirml.serve._worker", job_id]
        if self.lm is not None:
            command += ["--lm", self.lm]
        for prefix in self.allow_modules:
            command += ["--allow-module", prefix]
        for folder in self.data_dirs:
            command += ["--data-dir", folder]
        for name, model in self.lms.items():
            command += ["--named-lm", f"{name}={model}"]
        return command

    def _worker_environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.worker_env)
        env["ELIXIRML_STORE"] = self.store.url
        return env

    async def _watch(self, supervisor: Supervisor, job_id: str) -> None:
        status = await supervisor.wait(job_id)
        fields: dict[str, Any]
        if status.state == "succeeded":
            current = await asyncio.to_thread(self.store.job, job_id)
            # a worker that met a mistake no restart can fix marked its job failed itself
            fields = {} if current["state"] == "failed" else {"state": "succeeded", "error": ""}
        elif status.state == "failed":
            fields = {"state": "failed", "error": status.error or "the worker failed"}
        elif job_id in self._cancelled:
            fields = {"state": "cancelled", "error": "cancelled"}
        else:  # the manager stopped: the next one resumes it
            fields = {"state": "interrupted"}
        self._cancelled.discard(job_id)
        try:
            if job_id in self._lost:  # another manager holds it now: leave the job as it has it
                self._lost.discard(job_id)
            else:  # the job's outcome, and its lease given up (an interrupted one is free to take)
                await asyncio.to_thread(self.store.release_job, job_id, self.owner, **fields)
        finally:
            if self._watchers.get(job_id) is asyncio.current_task():
                del self._watchers[job_id]

    async def _evaluate(self, job_id: str) -> float | None:
        """One attempt at an evaluation job; a mistake no restart can fix fails the job at once."""
        try:
            return await self._evaluate_attempt(job_id)
        except UserError as exc:
            await asyncio.to_thread(fail_for_good, self.store, job_id, exc)
            return None

    async def _evaluate_attempt(self, job_id: str) -> float:
        """One attempt at an evaluation job: finished examples come back from its checkpoint."""
        from ..data import Dataset
        from ..evaluation import aevaluate
        from ..settings import context

        job = await asyncio.to_thread(begin_attempt, self.store, job_id)
        prepared = await asyncio.to_thread(_Prepared, self.store, job, self.allow_modules, self.data_dirs)
        checkpoint = f"job-{job_id}"
        total = len(prepared.examples)
        done = resumed = len(await asyncio.to_thread(self.store.checkpoint_records, checkpoint))
        last_write = [time.monotonic()]
        lines = ProgressLines(f"job {job_id}", total, unit="examples")
        job_line(
            job_id,
            f"evaluating {_program_of(job)} on {total - resumed} examples"
            + (f" ({resumed} resumed)" if resumed else "")
            + f" (attempt {job['attempts'] + 1})",
        )

        def on_result(_result: Any) -> None:
            nonlocal done
            done += 1
            lines.update(done)
            now = time.monotonic()
            if now - last_write[0] >= _PROGRESS_EVERY:
                last_write[0] = now
                self.store.update_job(job_id, progress=min(0.99, done / total))

        lm = self.evaluation_lm if self.evaluation_lm is not None else resolve_lm(self.lm) if self.lm else None
        with context(lm=lm) if lm is not None else contextlib.nullcontext():
            result = await aevaluate(
                prepared.program,
                prepared.examples,
                prepared.metric,
                concurrency=int(job["spec"].get("concurrency", 8)),
                checkpoint=(self.store, checkpoint),
                display_progress=False,
                on_result=on_result,
                record=False,
            )
        score = float(result.score)
        evaluation_id = await asyncio.to_thread(
            lambda: self.store.add_evaluation(
                program_name=job["program"],
                dataset_fingerprint=Dataset(prepared.examples).fingerprint(),
                metric=result.metric_names[0],
                score=score if math.isfinite(score) else 0.0,
                n=len(result.results),
                errors=result.errors,
                summary={k: v for k, v in result.summary().items() if isinstance(v, (int, float, str))},
                results=[],
                version_id=prepared.version_info["id"],
            )
        )
        outcome = {"score": score, "n": len(result.results), "errors": result.errors, "evaluation_id": evaluation_id}
        job_line(
            job_id,
            f"done in {lines.elapsed():.0f}s: {len(result.results)} examples, score {score:.1f}%"
            + (f", {result.errors} errors" if result.errors else ""),
        )
        await asyncio.to_thread(lambda: self.store.update_job(job_id, progress=1.0, best_score=score, result=outcome))
        return score


def jobs_router(manager: JobManager, *, dependencies: Sequence[Any] = (), prefix: str = "") -> Any:
    """A FastAPI ``APIRouter`` with the job endpoints of ``manager``.

    ``POST /jobs`` (a :class:`JobRequest`; 201 with the job), ``GET /jobs`` (``?state=``,
    ``?program=``), ``GET /jobs/{id}`` (state, progress, trials, best score, restarts, error,
    result) and ``DELETE /jobs/{id}`` (cancel). A bad request is answered with 400 (or 422 for
    a body that breaks the schema) and a message; an unknown job with 404; cancelling a job
    that has ended with 409; a manager that is not running with 503.

    Start and stop the manager in the app's lifespan (``await manager.start()`` /
    ``await manager.stop()``).

    Args:
        manager: the job manager.
        dependencies: FastAPI dependencies for every route (authentication).
        prefix: a path prefix for the routes.

    Raises:
        MissingDependencyError: FastAPI is not installed (the ``serve`` extra).
    """
    try:
        from fastapi import APIRouter, HTTPException
        from starlette.concurrency import run_in_threadpool
    except ImportError:
        raise MissingDependencyError("fastapi", "serve", "The job endpoints") from None

    router = APIRouter(prefix=prefix, dependencies=list(dependencies), tags=["jobs"])

    def http_error(exc: BaseException, *, missing_job: bool = False) -> HTTPException:
        if isinstance(exc, (SupervisorError, StoreError)):
            return HTTPException(503, str(exc))
        if missing_job and isinstance(exc, LoadError):
            return HTTPException(404, str(exc))
        return HTTPException(400, str(exc))

    @router.post("/jobs", status_code=201)
    async def create_job(request: JobRequest) -> dict[str, Any]:
        """Start an evaluation or an optimization of a stored program."""
        try:
            return await manager.submit(request)
        except (UserError, SupervisorError, StoreError) as exc:
            raise http_error(exc) from None

    @router.get("/jobs")
    async def list_jobs(state: str | None = None, program: str | None = None) -> list[dict[str, Any]]:
        """Jobs, newest first."""
        return await run_in_threadpool(lambda: manager.jobs(state=state, program=program))

    @router.get("/jobs/{job_id}")
    async def get_job(job_id: str) -> dict[str, Any]:
        """One job: state, progress, trials so far, best score, restarts, error and result."""
        try:
            return await run_in_threadpool(manager.get, job_id)
        except UserError as exc:
            raise http_error(exc, missing_job=True) from None

    @router.delete("/jobs/{job_id}")
    async def cancel_job(job_id: str) -> dict[str, Any]:
        """Cancel a job."""
        try:
            return await manager.cancel(job_id)
        except LoadError as exc:
            raise HTTPException(404, str(exc)) from None
        except ConfigurationError as exc:
            raise HTTPException(409, str(exc)) from None

    return router
