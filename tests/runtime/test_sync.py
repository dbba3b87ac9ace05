"""The sync bridge: tasks, context isolation, errors, Ctrl-C, and nothing left to resume later."""

import asyncio
import contextvars
import signal
import threading

import pytest

import elixirml as em
from elixirml.runtime import run_sync
from elixirml.testing import FakeLMServer

flag: contextvars.ContextVar[str] = contextvars.ContextVar("flag", default="outside")


async def sets_the_flag():
    seen = flag.get()
    flag.set("inside")
    return seen, asyncio.current_task()


def test_a_sync_call_runs_in_a_task_sees_the_callers_context_and_keeps_its_changes_inside():
    token = flag.set("caller")
    try:
        seen, task = run_sync(sets_the_flag())
        assert seen == "caller" and task is not None
        assert flag.get() == "caller"
    finally:
        flag.reset(token)


async def times_out():
    try:
        async with asyncio.timeout(0.01):
            await asyncio.Event().wait()
    except TimeoutError:
        return "timed out"
    return "no timeout"


def test_timeouts_work_inside_a_sync_call():
    assert run_sync(times_out()) == "timed out"


async def fails(wait):
    if wait:
        await asyncio.sleep(0)
    raise KeyError("boom")


@pytest.mark.parametrize("wait", [False, True])
def test_errors_come_through(wait):
    with pytest.raises(KeyError, match="boom"):
        run_sync(fails(wait))


def test_a_sync_call_from_inside_a_running_loop_runs_on_a_helper_thread():
    async def outer():
        flag.set("async caller")
        return run_sync(sets_the_flag())

    seen, task = asyncio.run(outer())
    assert seen == "async caller" and task is not None


def test_tasks_a_call_leaves_running_are_cancelled_when_it_returns():
    started = []

    async def leaves_a_task():
        async def background():
            await asyncio.Event().wait()

        task = asyncio.ensure_future(background())
        started.append(task)
        await asyncio.sleep(0)
        return "done"

    assert run_sync(leaves_a_task()) == "done"
    assert started[0].cancelled()


def _counting_lm(interrupt_at, how):
    calls = []

    async def answer(messages, settings):
        calls.append(1)
        if len(calls) == interrupt_at:
            if how == "signal":
                signal.raise_signal(signal.SIGINT)  # Ctrl-C, delivered to this (the main) thread
            raise KeyboardInterrupt
        await asyncio.sleep(0.001)
        return "[[ ## answer ## ]]\nyes\n\n[[ ## completed ## ]]"

    return em.FunctionLM(answer), calls


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals need the main thread")
@pytest.mark.parametrize("how", ["raise", "signal"])
def test_ctrl_c_during_a_sync_evaluate_cancels_its_tasks_and_nothing_resumes_later(how):
    lm, calls = _counting_lm(interrupt_at=3, how=how)
    program = em.Predict("question -> answer", lm=lm)
    devset = [em.Example(question=f"q{i}", answer="yes").with_inputs("question") for i in range(40)]
    with pytest.raises(KeyboardInterrupt):
        em.evaluate(program, devset, lambda example, pred, trace=None: 1.0, concurrency=4)
    after_interrupt = len(calls)
    assert after_interrupt < len(devset)
    assert program(question="one more").answer == "yes"
    assert len(calls) == after_interrupt + 1  # exactly the new call: no task of the interrupted one resumed


def test_sync_calls_on_http_lms_work_with_and_without_a_timeout():
    with FakeLMServer(lambda body: "[[ ## answer ## ]]\n4") as server:
        for timeout in (None, 5.0):
            lm = em.LM("openai/fake", base_url=server.base_url, api_key="sk-x", cache=False, timeout=timeout)
            assert em.Predict("question -> answer", lm=lm)(question="2+2?").answer == "4"
            assert lm.request([{"role": "user", "content": "hi"}]).text == "[[ ## answer ## ]]\n4"


def test_a_long_call_keeps_no_record_of_its_finished_tasks():
    from elixirml.runtime import _sync

    async def many():
        for _ in range(5000):
            await asyncio.ensure_future(asyncio.sleep(0))
        return len(_sync._local.loop.created)

    assert run_sync(many()) < 1100


def test_ctrl_c_in_a_sync_call_leaves_no_task_exception_to_be_logged_later(caplog):
    """The interrupt reaches the caller; the task it came from must not also log it when collected."""
    import gc

    async def interrupted():
        await asyncio.sleep(0)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sync(interrupted())
    with caplog.at_level("ERROR", logger="asyncio"):
        gc.collect()
    assert "never retrieved" not in caplog.text
