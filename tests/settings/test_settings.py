import asyncio
import threading

import pytest

import elixirml as em
from elixirml.errors import ConfigurationError
from elixirml.settings import current


def test_configure_sets_process_default():
    lm = em.DummyLM([])
    em.configure(lm=lm)
    assert current().lm is lm


def test_context_overrides_and_restores():
    a, b = em.DummyLM([]), em.DummyLM([])
    em.configure(lm=a)
    with em.context(lm=b):
        assert current().lm is b
    assert current().lm is a


def test_unknown_setting_is_rejected():
    with pytest.raises(ConfigurationError, match="bogus"):
        em.configure(bogus=1)


def test_two_tasks_never_see_each_others_lm():
    lm_a = em.DummyLM([{"answer": "A"}] * 20)
    lm_b = em.DummyLM([{"answer": "B"}] * 20)
    predict = em.Predict("question -> answer")

    async def worker(lm, expected):
        seen = []
        with em.context(lm=lm):
            for _ in range(20):
                await asyncio.sleep(0)
                assert current().lm is lm
                seen.append((await predict.acall(question="q")).answer)
        return seen, expected

    async def main():
        return await asyncio.gather(worker(lm_a, "A"), worker(lm_b, "B"))

    for seen, expected in asyncio.run(main()):
        assert seen == [expected] * 20
    assert len(lm_a.requests) == 20 and len(lm_b.requests) == 20


def test_threads_see_their_own_scope():
    lms = [em.DummyLM([]) for _ in range(4)]
    barrier = threading.Barrier(4)
    errors = []

    def run(lm):
        with em.context(lm=lm):
            barrier.wait()
            if current().lm is not lm:
                errors.append("leak")

    threads = [threading.Thread(target=run, args=(lm,)) for lm in lms]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
