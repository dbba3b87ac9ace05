"""An LM's timeout: one timer per LM and loop bounds every request (lm/_deadlines.py)."""

import asyncio
import gc
import time

import pytest

from elixirml.errors import ProviderTimeoutError
from elixirml.lm import LM, Completion, LMResponse, Usage
from elixirml.lm._deadlines import Deadlines


class SleepyLM(LM):
    """Answers each prompt after the delay its text names ("0.3" sleeps 0.3 s)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("cache", False)
        kwargs.setdefault("num_retries", 0)
        kwargs.setdefault("circuit_breaker", False)
        super().__init__("test/sleepy", **kwargs)

    async def _send(self, messages, settings):
        await asyncio.sleep(float(messages[-1]["content"]))
        return LMResponse([Completion(messages[-1]["content"], finish_reason="stop")], Usage(calls=1), self.model)


def ask(lm, delay):
    return lm.arequest([{"role": "user", "content": str(delay)}])


def test_only_the_requests_past_the_timeout_fail():
    lm = SleepyLM(timeout=0.3)

    async def main():
        delays = [0.0, 0.05, 1.0, 0.1, 1.0, 0.0] * 5
        return delays, await asyncio.gather(*(ask(lm, d) for d in delays), return_exceptions=True)

    start = time.perf_counter()
    delays, results = asyncio.run(main())
    assert time.perf_counter() - start < 0.9  # the slow ones were stopped at 0.3 s, not after 1 s
    for delay, result in zip(delays, results):
        if delay > 0.3:
            assert isinstance(result, ProviderTimeoutError) and "no answer within 0.3s" in str(result)
        else:
            assert isinstance(result, LMResponse) and result.text == str(delay)


def test_requests_after_a_timeout_get_a_whole_timeout_of_their_own():
    lm = SleepyLM(timeout=0.2)

    async def main():
        with pytest.raises(ProviderTimeoutError):
            await ask(lm, 1.0)
        first = asyncio.ensure_future(ask(lm, 0.15))
        await asyncio.sleep(0.1)
        second = asyncio.ensure_future(ask(lm, 0.15))  # ends after the first one's deadline
        return await first, await second

    first, second = asyncio.run(main())
    assert first.text == second.text == "0.15"


def test_a_cancelled_request_stays_cancelled():
    lm = SleepyLM(timeout=5.0)

    async def main():
        task = asyncio.ensure_future(ask(lm, 1.0))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return await ask(lm, 0.0)  # the next request is not cancelled by the earlier deadline

    assert asyncio.run(main()).text == "0.0"


def test_an_outer_timeout_is_the_callers_not_the_lms():
    lm = SleepyLM(timeout=5.0)

    async def main():
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await ask(lm, 1.0)

    asyncio.run(main())


def test_a_timeout_lowered_while_requests_are_out_still_bounds_new_ones():
    lm = SleepyLM(timeout=5.0)

    async def main():
        slow = asyncio.ensure_future(ask(lm, 0.3))
        await asyncio.sleep(0.01)
        lm.timeout = 0.1
        with pytest.raises(ProviderTimeoutError, match="within 0.1s"):
            await ask(lm, 1.0)
        return await slow

    assert asyncio.run(main()).text == "0.3"


def test_the_lm_works_on_a_new_loop_after_the_old_one_closed():
    lm = SleepyLM(timeout=0.2)
    for _ in range(3):
        assert asyncio.run(ask(lm, 0.0)).text == "0.0"
        with pytest.raises(ProviderTimeoutError):
            asyncio.run(ask(lm, 0.5))
    gc.collect()
    assert len(lm._deadlines._by_loop) <= 1  # a closed loop's deadlines go with it (the last one may be kept)


def test_ended_deadlines_do_not_pile_up_behind_a_slow_request():
    async def main():
        deadlines = Deadlines()
        task = asyncio.current_task()
        slow = deadlines.start(task, 60.0)
        for _ in range(10_000):
            deadlines.end(deadlines.start(task, 60.0))
        assert len(deadlines._queue) <= 66  # the slow one at the head, not every request since
        deadlines.end(slow)
        assert len(deadlines._queue) == 0

    asyncio.run(main())
