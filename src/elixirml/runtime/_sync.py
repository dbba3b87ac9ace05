"""Run a coroutine from synchronous code, with public asyncio only.

ElixirML implements every LM path once, as ``async``; the sync methods call :func:`run_sync`.
Each thread keeps one event loop for these calls (creating a loop per call costs
more than a whole ``Predict`` on a test LM). Every call is closed off like ``asyncio.run``:
tasks it leaves behind (after an error, or ``KeyboardInterrupt``) are cancelled before it
returns, so nothing of it resumes in a later call. A thread's loop, with the HTTP sessions
bound to its loop, is closed once the thread has ended (the next thread that starts making
sync calls closes those of finished threads) and at interpreter exit.

When the calling thread already runs an event loop (a sync call made from async code, or
from Jupyter), the coroutine runs on a fresh loop in a helper thread instead, so the running
loop is never re-entered.
"""

from __future__ import annotations

import atexit
import contextvars
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import asyncio

T = TypeVar("T")

_local = threading.local()
_loops_lock = threading.Lock()


class _ThreadLoop:
    """A thread's event loop for sync calls, with the tasks created on it during the current call."""

    def __init__(self) -> None:
        import asyncio  # loaded by the first sync call, not by `import elixirml`

        self.loop = asyncio.new_event_loop()
        self._task_class = asyncio.Task
        self.created: list[asyncio.Task[Any]] = []
        self._prune_at = 1024  # a long call creating many tasks keeps only those not done
        self.in_call = False  # while a call runs: its main task stops the loop when it is done
        self.loop.set_task_factory(self._task_factory)

    def _task_factory(self, loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = self._task_class(coro, loop=loop, **kwargs)
        created = self.created
        created.append(task)
        if len(created) >= self._prune_at:
            created[:] = [t for t in created if not t.done()]
            self._prune_at = max(1024, 2 * len(created))
        return task

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` in a task until it is done, then cancel the tasks it left running."""
        main = self.loop.create_task(self._main(coro))
        self.in_call = True
        try:
            self.loop.run_forever()
        except BaseException:
            if main.done() and not main.cancelled():
                main.exception()  # it raised what propagates here (Ctrl-C): not left to be logged when collected
            raise
        finally:
            self.in_call = False
            self.cancel_leftovers()
        return main.result()

    async def _main(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            return await coro
        finally:
            if self.in_call:  # not when cancelled as a leftover (after Ctrl-C)
                self.loop.stop()  # run_forever returns after this turn of the loop

    def cancel_leftovers(self) -> None:
        """Cancel the tasks created since the call began that are not done, and wait until they are."""
        while self.created:
            leftover = [task for task in self.created if not task.done()]
            self.created.clear()
            if not leftover:
                return
            for task in leftover:
                task.cancel()
            import asyncio

            self.loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))

    def close(self) -> None:
        """Close the loop as ``asyncio.run`` closes its own: tasks, async generators (sessions), executor."""
        import asyncio

        loop = self.loop
        try:
            self.cancel_leftovers()
            loop.run_until_complete(loop.shutdown_asyncgens())
            # closers of async generators dropped earlier were started as tasks: let them finish
            pending = asyncio.all_tasks(loop)
            if pending:
                loop.run_until_complete(asyncio.wait(pending, timeout=0.5))
            self.cancel_leftovers()
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()


# The loop of every thread that made sync calls, closed after the thread ends.
_loops: dict[threading.Thread, _ThreadLoop] = {}


def _close_loops(*, finished_only: bool) -> None:
    """Close the loops of finished threads (or of all threads, at exit)."""
    with _loops_lock:
        done = [t for t in _loops if not finished_only or not t.is_alive()]
        closing = [_loops.pop(t) for t in done]
    for thread_loop in closing:
        if thread_loop.loop.is_running():
            continue  # only at exit, in a thread still inside a call: the process is ending anyway
        thread_loop.close()


atexit.register(_close_loops, finished_only=False)


def _thread_loop() -> _ThreadLoop:
    thread_loop: _ThreadLoop | None = getattr(_local, "loop", None)
    if thread_loop is None or thread_loop.loop.is_closed():
        _close_loops(finished_only=True)
        thread_loop = _ThreadLoop()
        _local.loop = thread_loop
        with _loops_lock:
            _loops[threading.current_thread()] = thread_loop
    return thread_loop


async def _guard(closer: Callable[[], Awaitable[Any]]) -> AsyncIterator[None]:
    try:
        yield
    finally:
        await closer()


async def close_with_loop(closer: Callable[[], Awaitable[Any]]) -> AsyncIterator[None]:
    """Arrange for ``await closer()`` to run when the running event loop shuts down.

    Returns a handle that the caller must keep referenced for as long as the resource lives.
    ``asyncio.run`` and :func:`run_sync`'s per-thread runners finalise it before closing their
    loop. Used to close HTTP sessions without warnings.
    """
    handle = _guard(closer)
    await handle.__anext__()
    return handle


def _run_in_helper_thread(coro: Coroutine[Any, Any, T]) -> T:
    import asyncio
    import concurrent.futures

    context = contextvars.copy_context()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="elixirml-sync") as pool:
        return pool.submit(context.run, asyncio.run, coro).result()


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion and return its result, from any synchronous context.

    Context variables (``em.context(...)`` settings) of the caller are visible inside;
    changes the coroutine makes to them stay inside, as in a task. Whether the call ends
    normally, with an error or with ``KeyboardInterrupt`` (Ctrl-C), the tasks it started and
    left running are cancelled, and have finished, before this returns.
    """
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        return _run_in_helper_thread(coro)
    return _thread_loop().run(coro)
