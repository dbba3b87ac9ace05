"""A supervisor in the manner of OTP: children are asyncio tasks or subprocesses, restarted on failure.

``Supervisor`` keeps each child running according to its restart policy and the supervisor's
strategy (``one_for_one`` restarts only the child that failed; ``one_for_all`` restarts every
running child when one fails). Restarts are bounded by an intensity (at most ``max_restarts``
within ``window`` seconds) and spaced by exponential backoff; past the intensity the child
(or, for ``one_for_all`` and ``intensity="supervisor"``, the whole supervisor) fails with a
reason that says what happened last.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import os
import signal
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal

from ..errors import ConfigurationError, SupervisorError

Strategy = Literal["one_for_one", "one_for_all"]
Restart = Literal["permanent", "transient", "temporary"]
ChildState = Literal["starting", "running", "restarting", "succeeded", "failed", "stopped"]

_STRATEGIES = ("one_for_one", "one_for_all")
_RESTARTS = ("permanent", "transient", "temporary")
_FINAL = ("succeeded", "failed", "stopped")
_STDERR_LINES = 20


@dataclasses.dataclass
class ChildStatus:
    """What a supervised child is doing, as seen by its supervisor (a snapshot).

    Attributes:
        id: the child's id.
        kind: ``"task"`` (a coroutine) or ``"process"`` (a subprocess).
        state: ``starting``, ``running``, ``restarting`` (waiting out its backoff),
            ``succeeded``, ``failed`` or ``stopped``.
        restarts: how many times it has been restarted so far.
        started_at: ``time.time()`` when the current (or last) attempt started.
        pid: the process id of a running subprocess child (None for tasks).
        exit_code: the last exit code of a subprocess child.
        result: what a task child's coroutine returned when it succeeded.
        error: why the last attempt failed (``"ExcType: message"``, or the exit code and the
            end of the process's stderr), or, once ``failed``, why the child was given up.
        next_restart_in: seconds of backoff left while ``restarting``.
    """

    id: str
    kind: Literal["task", "process"]
    state: ChildState
    restarts: int = 0
    started_at: float | None = None
    pid: int | None = None
    exit_code: int | None = None
    result: Any = None
    error: str | None = None
    next_restart_in: float | None = None

    @property
    def done(self) -> bool:
        """Whether the child has ended for good (succeeded, failed or stopped)."""
        return self.state in _FINAL


class _ProcessExit(Exception):
    """A subprocess child exited with a non-zero code."""

    def __init__(self, code: int, stderr: str) -> None:
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        super().__init__(f"the process {how}" + (f"; its stderr ended with:\n{stderr}" if stderr else ""))
        self.code = code


@dataclasses.dataclass
class _Child:
    id: str
    restart: Restart
    shutdown: float
    factory: Callable[[], Awaitable[Any]] | None = None
    command: tuple[str, ...] = ()
    env: dict[str, str] | None = None
    cwd: str | None = None
    on_stderr: Callable[[str], None] | None = None
    state: ChildState = "starting"
    restarts: int = 0
    restart_times: collections.deque[float] = dataclasses.field(default_factory=collections.deque)
    started_at: float | None = None
    process: asyncio.subprocess.Process | None = None
    exit_code: int | None = None
    result: Any = None
    error: str | None = None
    restart_at: float | None = None
    runner: asyncio.Task[None] | None = None
    attempt: asyncio.Task[Any] | None = None
    restart_requested: bool = False
    stop_requested: bool = False
    finished: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)

    @property
    def kind(self) -> Literal["task", "process"]:
        return "task" if self.factory is not None else "process"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, _ProcessExit):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class Supervisor:
    """Run children (coroutines or subprocesses) and restart them when they fail.

    A child *fails* when its coroutine raises or its process exits with a non-zero code;
    it *succeeds* when the coroutine returns or the process exits with 0. What happens then
    depends on the child's ``restart`` policy: ``permanent`` children are always restarted
    (even after a success), ``transient`` ones only after a failure, ``temporary`` ones never.

    Restart intensity: a child restarted more than ``max_restarts`` times within ``window``
    seconds is given up (state ``failed``, with the reason). With ``intensity="supervisor"``
    (always so for ``one_for_all``), restarts are counted across all children and exceeding
    the limit stops every child and fails the supervisor itself (:attr:`failure`).

    Backoff: the n-th restart within the window waits ``min(max_backoff, backoff * 2 ** (n - 1))``
    seconds first.

    Stopping: :meth:`terminate_child` and :meth:`stop` cancel a task child (it sees
    ``asyncio.CancelledError``) or send SIGTERM to a process child and SIGKILL after its
    ``shutdown`` seconds; a stopped child is never restarted.

    Args:
        strategy: ``"one_for_one"`` or ``"one_for_all"``.
        max_restarts: restarts allowed within ``window`` seconds (0: give up at the first failure).
        window: the intensity window in seconds.
        backoff: seconds before the first restart within the window.
        max_backoff: the longest wait before a restart.
        intensity: ``"child"`` (count restarts per child) or ``"supervisor"`` (count them all).
        name: a name for messages.

    Example::

        async def worker():
            ...

        async with em.runtime.Supervisor(max_restarts=3, window=10.0) as supervisor:
            supervisor.start_task("worker", worker, restart="transient")
            supervisor.start_process("indexer", ["python", "-m", "mypkg.indexer"])
            status = await supervisor.wait("worker")
            print(status.state, status.restarts, status.result)
    """

    def __init__(
        self,
        strategy: Strategy = "one_for_one",
        *,
        max_restarts: int = 3,
        window: float = 5.0,
        backoff: float = 0.1,
        max_backoff: float = 5.0,
        intensity: Literal["child", "supervisor"] = "child",
        name: str = "supervisor",
    ) -> None:
        if strategy not in _STRATEGIES:
            raise ConfigurationError(f"Supervisor strategy must be one of {_STRATEGIES}, got {strategy!r}")
        if max_restarts < 0:
            raise ConfigurationError(f"max_restarts must be >= 0, got {max_restarts}")
        if window <= 0:
            raise ConfigurationError(f"window must be > 0 seconds, got {window}")
        if backoff < 0 or max_backoff < backoff:
            raise ConfigurationError(
                f"need 0 <= backoff <= max_backoff, got backoff={backoff}, max_backoff={max_backoff}"
            )
        if intensity not in ("child", "supervisor"):
            raise ConfigurationError(f"intensity must be 'child' or 'supervisor', got {intensity!r}")
        self.strategy: Strategy = strategy
        self.max_restarts = max_restarts
        self.window = window
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.intensity = "supervisor" if strategy == "one_for_all" else intensity
        self.name = name
        self._children: dict[str, _Child] = {}
        self._restart_times: collections.deque[float] = collections.deque()
        self._failure: str | None = None
        self._stopping = False
        self._group_restart: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"Supervisor({self.name!r}, {self.strategy}, children={len(self._children)})"

    async def __aenter__(self) -> Supervisor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ starting children
    def start_task(
        self,
        child_id: str,
        factory: Callable[[], Awaitable[Any]],
        *,
        restart: Restart = "permanent",
        shutdown: float = 5.0,
    ) -> ChildStatus:
        """Start a coroutine child; ``factory()`` is called again for every restart.

        Must be called from a running event loop.

        Args:
            child_id: a unique id among this supervisor's children (a finished child's id may be reused).
            factory: a function returning a new awaitable each time (an ``async def`` function).
            restart: ``"permanent"``, ``"transient"`` or ``"temporary"``.
            shutdown: seconds a cancelled task may take to finish its cleanup before it is left behind.

        Raises:
            ConfigurationError: a bad argument, or a child with this id is still running.
            SupervisorError: the supervisor has failed or is stopping.
        """
        if not callable(factory):
            raise ConfigurationError(f"start_task({child_id!r}) needs a function that returns an awaitable")
        return self._add(_Child(id=child_id, restart=self._check_restart(restart), shutdown=shutdown, factory=factory))

    def start_process(
        self,
        child_id: str,
        command: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        restart: Restart = "permanent",
        shutdown: float = 5.0,
        on_stderr: Callable[[str], None] | None = None,
    ) -> ChildStatus:
        """Start a subprocess child running ``command`` (no shell); it is started again for every restart.

        Its standard output is inherited; the last lines of its standard error are kept for
        the failure reason, and each is also given to ``on_stderr`` where there is one.

        Args:
            child_id: a unique id among this supervisor's children.
            command: the program and its arguments.
            env: the process's environment (default: this process's).
            cwd: its working directory.
            restart: ``"permanent"``, ``"transient"`` or ``"temporary"``.
            shutdown: seconds between SIGTERM and SIGKILL when it is stopped.
            on_stderr: called with each line of its standard error (without the line end), as it
                comes: a server passes its jobs' progress lines on to its own log this way.

        Raises:
            ConfigurationError: a bad argument, or a child with this id is still running.
            SupervisorError: the supervisor has failed or is stopping.
        """
        if isinstance(command, str) or not command:
            raise ConfigurationError(f"start_process({child_id!r}) needs a command as a list of strings")
        return self._add(
            _Child(
                id=child_id,
                restart=self._check_restart(restart),
                shutdown=shutdown,
                command=tuple(str(c) for c in command),
                env=dict(env) if env is not None else None,
                cwd=os.fspath(cwd) if cwd is not None else None,
                on_stderr=on_stderr,
            )
        )

    @staticmethod
    def _check_restart(restart: str) -> Restart:
        if restart not in _RESTARTS:
            raise ConfigurationError(f"restart must be one of {_RESTARTS}, got {restart!r}")
        return restart  # type: ignore[return-value]

    def _add(self, child: _Child) -> ChildStatus:
        if self._failure is not None:
            raise SupervisorError(f"{self.name} has failed ({self._failure}); create a new Supervisor")
        if self._stopping:
            raise SupervisorError(f"{self.name} is stopping; it starts no new children")
        existing = self._children.get(child.id)
        if existing is not None and existing.state not in _FINAL:
            raise ConfigurationError(f"{self.name} already runs a child {child.id!r}; stop it first or pick another id")
        self._children[child.id] = child
        child.runner = asyncio.get_running_loop().create_task(self._run(child), name=f"{self.name}:{child.id}")
        return self._status(child)

    # ------------------------------------------------------------------ status
    def status(self, child_id: str) -> ChildStatus:
        """A snapshot of one child.

        Raises:
            ConfigurationError: no child has this id.
        """
        return self._status(self._child(child_id))

    def children(self) -> list[ChildStatus]:
        """Snapshots of every child, in the order they were started."""
        return [self._status(c) for c in self._children.values()]

    @property
    def failure(self) -> str | None:
        """Why the supervisor failed (its restart intensity was exceeded), or None while it has not."""
        return self._failure

    def _child(self, child_id: str) -> _Child:
        child = self._children.get(child_id)
        if child is None:
            raise ConfigurationError(f"{self.name} has no child {child_id!r}; children: {sorted(self._children)}")
        return child

    @staticmethod
    def _status(child: _Child) -> ChildStatus:
        waiting = None
        if child.state == "restarting" and child.restart_at is not None:
            waiting = max(0.0, child.restart_at - time.monotonic())
        process = child.process
        return ChildStatus(
            id=child.id,
            kind=child.kind,
            state=child.state,
            restarts=child.restarts,
            started_at=child.started_at,
            pid=process.pid if process is not None and process.returncode is None else None,
            exit_code=child.exit_code,
            result=child.result,
            error=child.error,
            next_restart_in=waiting,
        )

    async def wait(self, child_id: str, timeout: float | None = None) -> ChildStatus:
        """Wait until the child has ended for good and return its final status.

        Raises:
            ConfigurationError: no child has this id.
            TimeoutError: ``timeout`` seconds passed first.
        """
        child = self._child(child_id)
        await asyncio.wait_for(child.finished.wait(), timeout)
        return self._status(child)

    # ------------------------------------------------------------------ stopping
    async def terminate_child(self, child_id: str) -> ChildStatus:
        """Stop one child (no restart) and return its final status.

        Raises:
            ConfigurationError: no child has this id.
        """
        child = self._child(child_id)
        if child.state not in _FINAL:
            child.stop_requested = True
            if child.attempt is not None:
                child.attempt.cancel()
            elif child.runner is not None:
                child.runner.cancel()
        if child.runner is not None:
            await asyncio.wait({child.runner})
        if child.state not in _FINAL:  # cancelled before its runner ever ran
            child.state = "stopped"
        child.finished.set()
        return self._status(child)

    async def stop(self) -> None:
        """Stop every child and wait for them; the supervisor starts no new child afterwards."""
        self._stopping = True
        await asyncio.gather(*(self.terminate_child(c.id) for c in list(self._children.values())))

    # ------------------------------------------------------------------ the restart loop
    async def _run(self, child: _Child) -> None:
        try:
            while True:
                child.state = "running"
                child.started_at = time.time()
                child.restart_requested = False
                child.attempt = asyncio.get_running_loop().create_task(self._attempt(child))
                await asyncio.wait({child.attempt})
                attempt, child.attempt = child.attempt, None
                if child.stop_requested:
                    child.state = "stopped"
                    return
                failure: BaseException | None = None
                if attempt.cancelled():
                    if not child.restart_requested:  # cancelled by someone else than the supervisor
                        child.state, child.error = "stopped", "cancelled"
                        return
                else:
                    failure = attempt.exception()
                    if failure is None:
                        child.result, child.error = attempt.result(), None
                        if child.restart != "permanent":
                            child.state = "succeeded"
                            return
                    else:
                        child.error = _describe(failure)
                        if child.restart == "temporary":
                            child.state = "failed"
                            return
                if failure is not None and self.strategy == "one_for_all" and not child.restart_requested:
                    self._restart_siblings(child)
                delay = self._admit_restart(child, failure)
                if delay is None:
                    return
                child.state = "restarting"
                child.restart_at = time.monotonic() + delay
                await asyncio.sleep(delay)
                child.restarts += 1
                child.restart_at = None
        except asyncio.CancelledError:
            child.state = "stopped"
            if child.attempt is not None:  # our own runner was cancelled: take the attempt down too
                child.attempt.cancel()
                await asyncio.wait({child.attempt})
            raise
        finally:
            child.process = None
            child.finished.set()

    def _admit_restart(self, child: _Child, failure: BaseException | None) -> float | None:
        """The backoff before restarting ``child``, or None when the restart intensity forbids it."""
        if self._failure is not None:
            child.state = "stopped" if failure is None else "failed"
            return None
        times = self._restart_times if self.intensity == "supervisor" else child.restart_times
        now = time.monotonic()
        if not child.restart_requested:  # a sibling's restart under one_for_all is counted once, by the failed child
            while times and now - times[0] > self.window:
                times.popleft()
            if len(times) >= self.max_restarts:
                last = child.error or "it exited normally (restart='permanent')"
                reason = (
                    f"restart intensity exceeded: {len(times)} restart(s) within {self.window:g}s "
                    f"(max_restarts={self.max_restarts}); last failure: {last}"
                )
                child.state, child.error = "failed", f"child {child.id!r} gave up: {reason}"
                if self.intensity == "supervisor":
                    self._fail(f"child {child.id!r}: {reason}")
                return None
            times.append(now)
        recent = len(times)
        return float(min(self.max_backoff, self.backoff * 2 ** max(0, recent - 1)))

    def _restart_siblings(self, failed: _Child) -> None:
        for sibling in self._children.values():
            if sibling is not failed and sibling.attempt is not None and not sibling.attempt.done():
                sibling.restart_requested = True
                sibling.attempt.cancel()

    def _fail(self, reason: str) -> None:
        self._failure = reason
        for child in self._children.values():
            if child.state not in _FINAL:
                child.stop_requested = True
                if child.attempt is not None:
                    child.attempt.cancel()
                elif child.runner is not None and child.runner is not asyncio.current_task():
                    child.runner.cancel()

    # ------------------------------------------------------------------ one attempt
    async def _attempt(self, child: _Child) -> Any:
        if child.factory is not None:
            return await self._attempt_task(child)
        return await self._attempt_process(child)

    async def _attempt_task(self, child: _Child) -> Any:
        assert child.factory is not None
        work = asyncio.ensure_future(child.factory())
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            if not work.done():
                work.cancel()
                await asyncio.wait({work}, timeout=child.shutdown)
            raise

    async def _attempt_process(self, child: _Child) -> int:
        process = await asyncio.create_subprocess_exec(
            *child.command, env=child.env, cwd=child.cwd, stderr=asyncio.subprocess.PIPE
        )
        child.process = process
        tail: collections.deque[str] = collections.deque(maxlen=_STDERR_LINES)
        reader = asyncio.get_running_loop().create_task(self._read_stderr(process, tail, child.on_stderr))
        try:
            code = await process.wait()
        except asyncio.CancelledError:
            await self._end_process(process, child.shutdown)
            raise
        finally:
            await asyncio.wait({reader}, timeout=1.0)
            reader.cancel()
        child.exit_code = code
        if code != 0:
            raise _ProcessExit(code, "\n".join(tail))
        return code

    @staticmethod
    async def _read_stderr(
        process: asyncio.subprocess.Process, tail: collections.deque[str], forward: Callable[[str], None] | None
    ) -> None:
        assert process.stderr is not None
        async for line in process.stderr:
            text = line.decode("utf-8", "replace").rstrip()
            tail.append(text)
            if forward is not None:
                forward(text)

    @staticmethod
    async def _end_process(process: asyncio.subprocess.Process, grace: float) -> None:
        if process.returncode is not None:
            return
        try:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), grace)
        except TimeoutError:
            process.kill()
            await process.wait()
        except ProcessLookupError:
            pass
