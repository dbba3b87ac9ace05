"""Run a coroutine from synchronous code.

ElixirML implements every LM path once, as ``async``; the sync methods call :func:`run_sync`.
Each thread keeps one event loop for these calls (creating a loop per call costs more than
a whole ``Predict`` on a test LM). When the calling thread already runs an event loop
(a sync call made from async code, or from Jupyter), the coroutine runs on a helper
thread's loop instead, so the running loop is never re-entered.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextvars
import threading
import typing
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_local = threading.local()
# Loops this module created (one per thread that used the sync facade), finalised at exit.
_OWNED_LOOPS: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


def _new_thread_loop() -> asyncio.AbstractEventLoop:
    """Create this thread's loop for sync calls (the first call, or after it was closed)."""
    loop = asyncio.new_event_loop()
    _local.loop = loop
    _OWNED_LOOPS.add(loop)
    return loop


def _finalise(loop: asyncio.AbstractEventLoop) -> None:
    """Close async generators (and the sessions they guard), then cancel what is left.

    Pending work gets a short chance to finish first; the rest is cancelled as ``asyncio.run`` does.
    """
    loop.run_until_complete(loop.shutdown_asyncgens())
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    if pending:
        loop.run_until_complete(asyncio.wait(pending, timeout=0.5))
    leftover = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in leftover:
        task.cancel()
    if leftover:
        loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))


@atexit.register
def _finalise_owned_loops() -> None:
    for loop in list(_OWNED_LOOPS):
        if not loop.is_closed() and not loop.is_running():
            try:
                _finalise(loop)
            except Exception:
                continue


async def _guard(closer: Callable[[], Awaitable[Any]]) -> AsyncIterator[None]:
    try:
        yield
    finally:
        await closer()


async def close_with_loop(closer: Callable[[], Awaitable[Any]]) -> AsyncIterator[None]:
    """Arrange for ``await closer()`` to run when the running event loop shuts down.

    Returns a handle that the caller must keep referenced for as long as the resource lives.
    ``asyncio.run`` finalises it before closing its loop; loops of the sync facade are
    finalised at interpreter exit. Used to close HTTP sessions without warnings.
    """
    handle = _guard(closer)
    await handle.__anext__()
    return handle


def _run_on_fresh_loop(coro: Coroutine[Any, Any, T]) -> T:
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        try:
            _finalise(loop)  # closes sessions bound to this loop
        finally:
            loop.close()


def _run_in_helper_thread(coro: Coroutine[Any, Any, T]) -> T:
    ctx = contextvars.copy_context()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="elixirml-sync") as pool:
        return pool.submit(ctx.run, _run_on_fresh_loop, coro).result()


def run_sync(coro: Coroutine[Any, Any, T], *, eager: bool = False) -> T:
    """Run ``coro`` to completion and return its result, from any synchronous context.

    Context variables (``em.context(...)`` settings) of the caller are visible inside;
    changes the coroutine makes to them stay inside, as in a task.

    ``eager=True`` is for ElixirML's own coroutines (a ``Predict`` call, an LM request): they
    start right here, outside any task, with the thread's loop marked as running, and a call
    that never has to wait (a test LM, a cache hit) finishes without the event loop turning
    at all. At the first real wait, or where the code asks for a task with :func:`need_task`
    (timeouts, HTTP sessions), the rest of the coroutine moves into a task on the thread's
    loop. User code (a module's own ``aforward``) runs with ``eager=False``: it may rely on
    being inside a task from its first line.
    """
    if asyncio._get_running_loop() is None:  # the non-raising form: this runs on every sync call
        loop: asyncio.AbstractEventLoop | None = getattr(_local, "loop", None)
        if loop is None or loop.is_closed():
            loop = _new_thread_loop()
        if not eager:
            return loop.run_until_complete(coro)
        return _run_eagerly(loop, coro)
    return _run_in_helper_thread(coro)


class _TaskRequest:
    """What :func:`need_task` yields to the eager driver: "go on inside a task"."""

    __slots__ = ()


_TASK_REQUEST = _TaskRequest()


class _NeedTask:
    __slots__ = ()

    def __await__(self) -> Any:
        if asyncio.current_task() is None:
            yield _TASK_REQUEST
        return None


_NEED_TASK = _NeedTask()


def need_task() -> Awaitable[None]:
    """Make sure that what follows runs inside an asyncio task (await it before such code).

    ``asyncio.timeout``, aiohttp and code calling ``asyncio.current_task()`` need one. Inside
    a task this returns at once; in a coroutine started by ``run_sync(..., eager=True)`` it
    moves the rest of the coroutine into a task first.
    """
    return _NEED_TASK


def _run_eagerly(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> T:
    context = contextvars.copy_context()
    asyncio.events._set_running_loop(loop)
    try:
        first = context.run(coro.send, None)
    except StopIteration as done:
        result: T = done.value
        return result
    finally:
        asyncio.events._set_running_loop(None)
    task = loop.create_task(_go_on(coro, first), context=context)
    return loop.run_until_complete(task)


async def _go_on(coro: Coroutine[Any, Any, T], first: Any) -> T:
    return typing.cast(T, await _GoOn(coro, first))


class _GoOn:
    """Drive the rest of a coroutine that started outside a task, from inside one.

    Whatever the coroutine yields (a future to wait on) goes up to the task; what the task
    sends or throws back (a result, a cancellation) goes down to the coroutine.
    """

    __slots__ = ("coro", "first")

    def __init__(self, coro: Coroutine[Any, Any, Any], first: Any) -> None:
        self.coro = coro
        self.first = first

    def __await__(self) -> Any:
        coro = self.coro
        try:
            value = coro.send(None) if self.first is _TASK_REQUEST else self.first
            while True:
                try:
                    sent = yield value
                except GeneratorExit:
                    coro.close()
                    raise
                except BaseException as exc:
                    value = coro.throw(exc)
                else:
                    value = coro.send(sent)
        except StopIteration as done:
            return done.value
