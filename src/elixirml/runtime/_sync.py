"""Run a coroutine from synchronous code.

ElixirML implements every LM path once, as ``async``; the sync methods call :func:`run_sync`.
Each thread keeps one event loop for these calls (creating a loop per call costs more than
a whole ``Predict`` on a test LM). When the calling thread already runs an event loop
(a sync call made from async code, or from Jupyter), the coroutine runs on a helper
thread's loop instead, so the running loop is never re-entered.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_local = threading.local()


def _thread_loop() -> asyncio.AbstractEventLoop:
    loop: asyncio.AbstractEventLoop | None = getattr(_local, "loop", None)
    if loop is None or loop.is_closed():
        loop = asyncio.new_event_loop()
        _local.loop = loop
    return loop


def _run_in_helper_thread(coro: Coroutine[Any, Any, T]) -> T:
    ctx = contextvars.copy_context()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="elixirml-sync") as pool:
        return pool.submit(ctx.run, lambda: _thread_loop().run_until_complete(coro)).result()


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion and return its result, from any synchronous context.

    Context variables (``em.context(...)`` settings) of the caller are visible inside.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _thread_loop().run_until_complete(coro)
    return _run_in_helper_thread(coro)
