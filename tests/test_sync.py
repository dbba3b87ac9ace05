"""The sync bridge: eager starts, the move into a task, context isolation."""

import asyncio
import contextvars

import pytest

import elixirml as em
from elixirml.runtime import need_task, run_sync
from elixirml.testing import FakeLMServer

flag: contextvars.ContextVar[str] = contextvars.ContextVar("flag", default="outside")


async def no_wait():
    flag.set("inside")
    return asyncio.current_task(), asyncio.get_running_loop()


def test_an_eager_coroutine_that_never_waits_runs_without_a_task_and_keeps_its_context_changes():
    task, loop = run_sync(no_wait(), eager=True)
    assert task is None and isinstance(loop, asyncio.AbstractEventLoop)
    assert flag.get() == "outside"
    task, _ = run_sync(no_wait())
    assert task is not None and flag.get() == "outside"


async def waits_then_times_out():
    flag.set("inside")
    await asyncio.sleep(0.001)  # a real wait: the rest moves into a task
    assert asyncio.current_task() is not None and flag.get() == "inside"
    try:
        async with asyncio.timeout(0.01):
            await asyncio.sleep(5)
    except TimeoutError:
        return "timed out"
    return "no timeout"


def test_a_waiting_coroutine_moves_into_a_task_where_timeouts_and_context_work():
    assert run_sync(waits_then_times_out(), eager=True) == "timed out"
    assert flag.get() == "outside"


async def asks_for_a_task():
    before = asyncio.current_task()
    await need_task()
    async with asyncio.timeout(1):
        return before, asyncio.current_task()


def test_need_task_moves_into_a_task_before_the_first_wait():
    before, after = run_sync(asks_for_a_task(), eager=True)
    assert before is None and after is not None
    before, after = run_sync(asks_for_a_task())
    assert before is after is not None


async def fails(wait):
    if wait:
        await asyncio.sleep(0)
    raise KeyError("boom")


@pytest.mark.parametrize("wait", [False, True])
def test_errors_come_through_before_and_after_the_move(wait):
    with pytest.raises(KeyError, match="boom"):
        run_sync(fails(wait), eager=True)


def test_a_cancellation_of_the_task_reaches_the_moved_coroutine():
    async def body():
        await asyncio.sleep(0)  # moves into the task
        asyncio.current_task().cancel()
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            asyncio.current_task().uncancel()
            return "cancelled"
        return "not cancelled"

    assert run_sync(body(), eager=True) == "cancelled"


def test_sync_calls_on_http_lms_without_a_timeout_still_get_a_task():
    """aiohttp needs a task; an LM without a timeout must still ask for one before sending."""
    with FakeLMServer(lambda body: "[[ ## answer ## ]]\n4") as server:
        lm = em.LM("openai/fake", base_url=server.base_url, api_key="sk-x", cache=False, timeout=None)
        assert em.Predict("question -> answer", lm=lm)(question="2+2?").answer == "4"
        assert lm.request([{"role": "user", "content": "hi"}]).text == "[[ ## answer ## ]]\n4"
