"""Resources the LM layer holds: per-thread loops, HTTP sessions per loop, history size."""

import asyncio
import os
import threading

import pytest

import elixirml as em
from elixirml.lm._base import DEFAULT_HISTORY_BYTES
from elixirml.testing import FakeLMServer

MESSAGES = [{"role": "user", "content": "hi"}]


def _open_fds():
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc")
def test_short_lived_threads_making_sync_calls_leak_no_file_descriptors():
    with FakeLMServer(lambda body: "ok") as server:
        lm = em.LM("openai/m", base_url=server.base_url, api_key="k", cache=False)

        def one_call():
            assert lm.request(MESSAGES).text == "ok"

        def in_a_thread():
            thread = threading.Thread(target=one_call)
            thread.start()
            thread.join()

        in_a_thread()  # warm up: the server's connection, imports
        before = _open_fds()
        for _ in range(60):
            in_a_thread()
        grown = _open_fds() - before
    assert grown <= 8  # the last thread's loop and session may still be open: they close when the next one starts
    assert len(lm._sessions) <= 2


def test_a_session_per_asyncio_run_is_closed_and_forgotten_with_its_loop():
    with FakeLMServer(lambda body: "ok") as server:
        lm = em.LM("openai/m", base_url=server.base_url, api_key="k", cache=False)
        for _ in range(10):
            assert asyncio.run(lm.arequest(MESSAGES)).text == "ok"
        assert lm._sessions == {}

        async def closes_its_own():
            await lm.arequest(MESSAGES)
            await lm.aclose()
            return dict(lm._sessions)

        assert asyncio.run(closes_its_own()) == {}


def test_an_anthropic_client_per_asyncio_run_is_closed_and_forgotten_with_its_loop():
    pytest.importorskip("anthropic")
    with FakeLMServer(lambda body: "ok") as server:
        lm = em.LM("anthropic/claude-x", api_key="k", base_url=server.base_url.removesuffix("/v1"), cache=False)
        for _ in range(5):
            assert asyncio.run(lm.arequest(MESSAGES)).text == "ok"
        assert lm._clients == {}


def test_history_is_bounded_in_size_as_well_as_in_count():
    lm = em.DummyLM(["answer"] * 20, history_bytes=1000)
    for i in range(10):
        lm.request([{"role": "user", "content": f"{i}" * 300}])
    assert lm.history.bytes <= 1000
    assert len(lm.history) == 3
    assert lm.history[-1]["messages"][0]["content"] == "9" * 300
    lm.request([{"role": "user", "content": "x" * 5000}])  # bigger than the bound alone: still the newest
    assert len(lm.history) == 1 and lm.history.bytes == 5000 + len("answer")
    lm.history.clear()
    assert lm.history.bytes == 0 and len(lm.history) == 0


def test_the_default_history_bound_keeps_big_prompts_from_piling_up():
    lm = em.DummyLM(["answer"] * 5)
    assert lm.history.max_bytes == DEFAULT_HISTORY_BYTES
    for i in range(5):
        lm.request([{"role": "user", "content": str(i) * 10_000_000}])  # 10 MB each
    assert len(lm.history) == 1 and lm.history.bytes <= max(DEFAULT_HISTORY_BYTES, 10_000_006)
    assert lm.history.maxlen == 100  # the count bound is still there


def test_history_size_zero_keeps_nothing():
    lm = em.DummyLM(["a"], history_size=0)
    lm.request(MESSAGES)
    assert len(lm.history) == 0 and lm.history.bytes == 0
