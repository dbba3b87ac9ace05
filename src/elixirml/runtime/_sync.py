"""Run a coroutine from synchronous code, with public asyncio only.

ElixirML implements every LM path once, as ``async``; the sync methods call :func:`run_sync`.
Each thread keeps one event loop for these calls (creating a loop per call costs
more than a whole ``Predict`` on a test LM). Every call is closed off like ``asyncio.run``:
tasks it leaves behind (after an error, or ``KeyboardInterrupt``) are cancelled before it
returns, so nothing of it resumes in a later call. A thread's runner, with the HTTP sessions
bound to its loop, is closed once the thread has ended (the next thread that starts making
sync calls closes those of finished threads) and at interpreter exit.

When the calling thread already runs an event loop (a sync call made from async code, or
from Jupyter), the coroutine runs on a fresh loop in a helper thread instead, so the running
loop is never re-entered.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextvars
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_local = threading.local()
_loops_lock = threading.Lock()
# The loop of every thread that made sync calls, closed after the thread ends.
_loops: dict[threading.Thread, asyncio.AbstractEventLoop] = {}


def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Close a thread's loop as ``asyncio.run`` closes its own: tasks, async generators (sessions), executor."""
    try:
        _cancel_leftovers(loop)
        loop.run_until_complete(loop.shutdown_asyncgens())
        _cancel_leftovers(loop, grace=0.5)  # closers started for generators that were dropped earlier
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()


def _close_loops(*, finished_only: bool) -> None:
    """Close the loops of finished threads (or of all threads, at exit)."""
    with _loops_lock:
        done = [t for t in _loops if not finished_only or not t.is_alive()]
        closing = [_loops.pop(t) for t in done]
    for loop in closing:
        if loop.is_running():
            continue  # only at exit, in a thread still inside a call: the process is ending anyway
        _close_loop(loop)


atexit.register(_close_loops, finished_only=False)


def _thread_loop() -> asyncio.AbstractEventLoop:
    loop: asyncio.AbstractEventLoop | None = getattr(_local, "loop", None)
    if loop is None or loop.is_closed():
        _close_loops(finished_only=True)
        loop = asyncio.new_event_loop()
        _local.loop = loop
        with _loops_lock:
            _loops[threading.current_thread()] = loop
    return loop


def _cancel_leftovers(loop: asyncio.AbstractEventLoop, grace: float = 0.0) -> None:
    """Cancel the tasks left in a thread's loop (after ``grace`` seconds to finish) and wait until they are gone."""
    leftover = asyncio.all_tasks(loop)
    if leftover and grace:
        loop.run_until_complete(asyncio.wait(leftover, timeout=grace))
        leftover = asyncio.all_tasks(loop)
    if not leftover:
        return
    for task in leftover:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))


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
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        return _run_in_helper_thread(coro)
    loop = _thread_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        _cancel_leftovers(loop)
