"""Reliability under provider faults: outages and the circuit breaker, time-bounded retries,
cut-off answers, and malformed response bodies (issue 15, items 1-4)."""

import asyncio
import json
import re
import time

import pytest

import elixirml as em
from elixirml.adapters import ChatAdapter, JSONAdapter
from elixirml.errors import (
    AdapterParseError,
    CircuitOpenError,
    ProviderError,
    ProviderResponseError,
    TruncatedResponseError,
)
from elixirml.lm import Completion, LMResponse, Usage
from elixirml.lm._cache import Cache
from elixirml.runtime import CircuitBreaker, RetryPolicy
from elixirml.testing import FakeLMServer

USER = [{"role": "user", "content": "item 1"}]


def item_number(body):
    return int(re.search(r"item (\d+)", body["messages"][-1]["content"]).group(1))


def long_value(n):
    """An answer long enough that half of it is a wrong answer."""
    return "-".join([str(n)] * 6)


def chat_answer(body):
    return f"[[ ## answer ## ]]\n{long_value(item_number(body))}\n\n[[ ## completed ## ]]"


def fast_retry(**kwargs):
    """The default (time-bounded) policy with waits short enough for tests."""
    kwargs.setdefault("base_delay", 0.001)
    kwargs.setdefault("max_delay", 0.005)
    return RetryPolicy(**kwargs)


def server_lm(server, **kwargs):
    kwargs.setdefault("cache", False)
    kwargs.setdefault("retry", fast_retry())
    return em.LM("openai/fake", base_url=server.base_url, api_key="k", **kwargs)


def devset(n):
    # gold is right for even items only, so the score is 50% when nothing is lost
    return [
        em.Example(question=f"item {i}", answer=long_value(i) if i % 2 == 0 else "none").with_inputs("question")
        for i in range(n)
    ]


def response(text, finish_reason="stop"):
    return LMResponse([Completion(text, finish_reason=finish_reason)], Usage(10, 5, calls=1), "function")


class Flaky:
    """Answers each item wrongly shaped ``bad`` times, then correctly; records what it was sent."""

    def __init__(self, bad, times=1):
        self.bad = bad
        self.times = times
        self.seen: dict[str, int] = {}
        self.settings: list[dict] = []

    def __call__(self, messages, settings):
        self.settings.append(settings)
        key = messages[-1]["content"]
        self.seen[key] = self.seen.get(key, 0) + 1
        if self.seen[key] <= self.times:
            return self.bad(messages, settings)
        return {"answer": "42"}


# ---------------------------------------------------------------- 1. outages and retries


def test_default_retry_policy_is_bounded_by_time_not_attempts():
    policy = RetryPolicy()
    assert policy.retries is None and policy.max_time == 60.0
    lm = em.LM("openai/fake", base_url="http://127.0.0.1:9/v1", api_key="k")
    assert lm.retry.retries is None and lm.retry.max_time == 60.0
    assert em.LM("openai/fake", base_url="http://127.0.0.1:9/v1", api_key="k", num_retries=2).retry.retries == 2
    # the time bound: no retry starts that would end after max_time
    bounded = RetryPolicy(max_time=1.0)
    assert bounded.next_delay(0, elapsed=0.0, retry_after=0.5) == 0.5
    assert bounded.next_delay(0, elapsed=0.6, retry_after=0.5) is None
    assert RetryPolicy(retries=2).next_delay(2, elapsed=0.0) is None
    # capped exponential backoff with jitter
    capped = RetryPolicy(base_delay=1.0, max_delay=4.0)
    assert all(0.0 <= capped.delay(attempt) <= 4.0 for attempt in range(100))
    with pytest.raises(em.errors.ConfigurationError, match="bound"):
        RetryPolicy(retries=None, max_time=None)


def test_a_call_survives_more_transient_failures_than_six_attempts():
    failures = {"left": 9}

    def answer(body):
        if failures["left"] > 0:
            failures["left"] -= 1
            return {"raw": "{not json"}  # retryable ProviderResponseError
        return chat_answer(body)

    with FakeLMServer(answer) as srv:
        lm = server_lm(srv, circuit_breaker=False)
        pred = em.Predict("question -> answer", lm=lm)(question="item 3")
    assert pred.answer == long_value(3)
    assert len(srv.requests) == 10


def test_half_of_requests_failing_with_503_loses_nothing():
    with FakeLMServer(chat_answer, failure_rate=0.5, faults=("503",), seed=5) as srv:
        lm = server_lm(srv, max_concurrency=64, circuit_breaker=CircuitBreaker("fake", reset_timeout=0.01))
        program = em.Predict("question -> answer", lm=lm)
        result = em.evaluate(program, devset(400), em.metrics.exact_match, concurrency=64, display_progress=False)
        assert srv.fault_counts["503"] > 300
    assert result.errors == 0 and result.score == 50.0


def test_a_call_meeting_an_open_breaker_waits_for_the_probe():
    breaker = CircuitBreaker("fake", failure_threshold=3, reset_timeout=0.05)
    with FakeLMServer(chat_answer) as srv:
        lm = server_lm(srv, circuit_breaker=breaker)
        for _ in range(3):
            breaker.record_failure()
        assert breaker.state == "open"
        pred = em.Predict("question -> answer", lm=lm)(question="item 5")
    assert pred.answer == long_value(5)
    assert breaker.state == "closed"
    assert len(srv.requests) == 1  # nothing was sent while the breaker was open


def test_an_evaluation_across_a_full_outage_ends_with_the_fault_free_score():
    program = em.Predict("question -> answer")
    with FakeLMServer(chat_answer) as clean:
        program.set_lm(server_lm(clean, max_concurrency=32))
        fault_free = em.evaluate(program, devset(200), em.metrics.exact_match, concurrency=32, display_progress=False)
    breaker = CircuitBreaker("fake", failure_threshold=20, reset_timeout=0.05, max_reset_timeout=0.2)
    with FakeLMServer(chat_answer, latency=0.005) as srv:
        program.set_lm(server_lm(srv, max_concurrency=32, circuit_breaker=breaker))
        srv.outage(0.5)
        result = em.evaluate(program, devset(200), em.metrics.exact_match, concurrency=32, display_progress=False)
        assert srv.fault_counts["outage"] >= 20  # the outage happened and opened the breaker
    assert result.errors == 0
    assert [r.score for r in result.results] == [r.score for r in fault_free.results]
    assert result.score == fault_free.score == 50.0


def test_an_open_breaker_sends_the_call_to_a_fallback_at_once():
    breaker = CircuitBreaker("fake", failure_threshold=1, reset_timeout=60.0)
    backup = em.DummyLM([{"answer": "from backup"}])
    with FakeLMServer(chat_answer) as srv:
        lm = server_lm(srv, circuit_breaker=breaker, fallbacks=[backup])
        breaker.record_failure()
        pred = em.Predict("question -> answer", lm=lm)(question="item 1")
    assert pred.answer == "from backup"
    assert srv.requests == []


def test_waiting_for_the_breaker_stops_at_max_time():
    breaker = CircuitBreaker("fake", failure_threshold=1, reset_timeout=60.0, max_reset_timeout=60.0)
    lm = em.FunctionLM(lambda m, s: "never", circuit_breaker=breaker, retry=fast_retry(max_time=0.05))
    breaker.record_failure()
    with pytest.raises(CircuitOpenError):
        lm.request(USER)


def test_a_breaker_with_retries_off_fails_fast():
    breaker = CircuitBreaker("fake", failure_threshold=1, reset_timeout=60.0)
    lm = em.FunctionLM(lambda m, s: "never", circuit_breaker=breaker, num_retries=0)
    breaker.record_failure()
    with pytest.raises(CircuitOpenError):
        lm.request(USER)


def test_failed_probes_keep_the_breaker_open_longer_each_time():
    breaker = CircuitBreaker("x", failure_threshold=1, reset_timeout=0.01, max_reset_timeout=0.04)
    breaker.record_failure()
    assert breaker._open_for == 0.01
    for expected in (0.02, 0.04, 0.04):
        breaker._opened_at -= 1.0  # the open period has passed
        assert breaker.before_request() is True
        breaker.record_failure(probe=True)
        assert breaker.state == "open" and breaker._open_for == expected
    breaker._opened_at -= 1.0
    assert breaker.before_request() is True
    breaker.record_success()
    assert breaker.state == "closed" and breaker._open_for == 0.01


# ---------------------------------------------------------------- 2. the half-open probe always ends


def half_open_breaker():
    breaker = CircuitBreaker("fake", failure_threshold=1, reset_timeout=0.01)
    breaker.record_failure()
    breaker._opened_at -= 1.0  # half-open now
    assert breaker.state == "half_open"
    return breaker


def test_a_cancelled_probe_lets_the_next_call_probe():
    breaker = half_open_breaker()
    started = asyncio.Event()

    async def hang_then_answer(messages, settings):
        if messages[-1]["content"] == "hang":
            started.set()
            await asyncio.sleep(60)
        return "[[ ## answer ## ]]\nok\n\n[[ ## completed ## ]]"

    lm = em.FunctionLM(hang_then_answer, circuit_breaker=breaker)

    async def main():
        probe = asyncio.create_task(lm.arequest([{"role": "user", "content": "hang"}]))
        await started.wait()
        probe.cancel()
        with pytest.raises(asyncio.CancelledError):
            await probe
        return await lm.arequest(USER)

    assert "ok" in asyncio.run(main()).text
    assert breaker.state == "closed"


@pytest.mark.parametrize("error", [RuntimeError("bug in a transport"), KeyError("x")])
def test_a_probe_ending_in_any_exception_lets_the_next_call_probe(error):
    breaker = half_open_breaker()
    calls = []

    def fn(messages, settings):
        calls.append(1)
        if len(calls) == 1:
            raise error
        return "[[ ## answer ## ]]\nok\n\n[[ ## completed ## ]]"

    lm = em.FunctionLM(fn, circuit_breaker=breaker)
    with pytest.raises(type(error)):
        lm.request(USER)
    assert "ok" in lm.request(USER).text
    assert breaker.state == "closed"


def test_a_rate_limited_probe_lets_the_next_call_probe():
    breaker = half_open_breaker()
    with FakeLMServer(chat_answer, failure_rate=1.0, faults=("429",)) as srv:
        lm = server_lm(srv, circuit_breaker=breaker, num_retries=0, retry=None)
        with pytest.raises(em.errors.RateLimitError):
            lm.request(USER)
        assert breaker.state == "half_open"
        srv.failure_rate = 0.0
        assert lm.request(USER).text.startswith("[[ ## answer")
    assert breaker.state == "closed"


def test_a_stream_stopped_early_lets_the_next_call_probe():
    breaker = half_open_breaker()
    with FakeLMServer(chat_answer, stream_chunk=2) as srv:
        lm = server_lm(srv, circuit_breaker=breaker)

        async def main():
            stream = lm.astream(USER)
            async for _ in stream:
                break
            await stream.aclose()
            return await lm.arequest(USER)

        assert asyncio.run(main()).text.startswith("[[ ## answer")
    assert breaker.state == "closed"


# ---------------------------------------------------------------- 3. cut-off answers


def test_a_length_cut_answer_raises_is_not_cached_and_a_rerun_asks_again(tmp_path):
    cache = Cache(tmp_path / "c.sqlite")
    with FakeLMServer(chat_answer, failure_rate=1.0, faults=("truncated",)) as srv:
        lm = server_lm(srv, cache=cache, num_retries=0, retry=None)
        predict = em.Predict("question -> answer", lm=lm)
        with pytest.raises(TruncatedResponseError) as info:
            predict(question="item 7")
        assert isinstance(info.value, ProviderError) and info.value.retryable
        full = chat_answer({"messages": [{"content": "item 7"}]})
        assert info.value.completion == full[: len(full) // 2]
        assert "max_tokens" in str(info.value)
        srv.failure_rate = 0.0  # healthy again: the rerun must ask, not replay a cut-off answer
        assert predict(question="item 7").answer == long_value(7)
        assert len(srv.requests) == 2


def test_cut_off_answers_are_retried_and_only_complete_ones_cached(tmp_path):
    cache = Cache(tmp_path / "c.sqlite")
    with FakeLMServer(chat_answer, failure_rate=0.5, faults=("truncated",), seed=2) as srv:
        lm = server_lm(srv, cache=cache)
        predict = em.Predict("question -> answer", lm=lm)
        answers = [predict(question=f"item {i}").answer for i in range(30)]
        assert srv.fault_counts["truncated"] > 5
    assert answers == [long_value(i) for i in range(30)]
    with FakeLMServer(chat_answer) as fresh:  # every answer now comes from the cache
        again = [
            em.Predict("question -> answer", lm=server_lm(fresh, cache=cache))(question=f"item {i}") for i in range(30)
        ]
        assert fresh.requests == []
    assert [p.answer for p in again] == answers


def test_a_cached_cut_off_answer_from_an_older_version_is_asked_again(tmp_path):
    cache = Cache(tmp_path / "c.sqlite")
    lm = em.FunctionLM(lambda m, s: response("[[ ## answer ## ]]\n42"), cache=cache)
    key = cache.key(lm.model, USER, lm.effective_settings({}))
    cache.put(key, response("[[ ## answer ## ]]\n4", "length"))
    assert lm.request(USER).text == "[[ ## answer ## ]]\n42"


def test_a_truncated_answer_is_retried_with_a_larger_max_tokens():
    def fn(messages, settings):
        if settings["max_tokens"] < 100:
            return response("[[ ## answer ## ]]\n4", "length")
        return response("[[ ## answer ## ]]\n42")

    lm = em.FunctionLM(fn, max_tokens=30, retry=fast_retry(grow_max_tokens=2.0))
    sent = []
    original = lm._send

    async def spy(messages, settings):
        sent.append(settings["max_tokens"])
        return await original(messages, settings)

    lm._send = spy
    assert em.Predict("question -> answer", lm=lm)(question="q").answer == "42"
    assert sent == [30, 60, 120]


def test_truncation_retries_are_bounded():
    lm = em.FunctionLM(lambda m, s: response("[[ ## answer ## ]]\n4", "length"), retry=fast_retry(truncation_retries=2))
    with pytest.raises(TruncatedResponseError):
        lm.request(USER)
    assert lm.usage.calls == 3  # every cut-off answer cost tokens and is counted


def test_allow_truncated_returns_the_cut_off_answer_once_and_does_not_cache_it(tmp_path):
    lm = em.FunctionLM(
        lambda m, s: response("Be precise and", "length"),
        retry=fast_retry(truncation_retries=3),
        cache=tmp_path / "cache.sqlite",
    )
    cut = lm.request(USER, allow_truncated=True)
    assert cut.completions[0].text == "Be precise and" and cut.completions[0].finish_reason == "length"
    assert lm.usage.calls == 1  # not asked again: the caller takes the text as it is
    again = lm.request(USER, allow_truncated=True)
    assert not again.cached and lm.usage.calls == 2  # a cut-off answer is never cached
    with pytest.raises(TruncatedResponseError):  # without the flag it is still an error, after the retries
        lm.request(USER)
    assert lm.usage.calls == 6


def test_a_json_object_cut_off_is_not_repaired_into_an_answer():
    sig = em.Signature("question -> answer, confidence: float")
    with pytest.raises(TruncatedResponseError):
        JSONAdapter().parse(sig, '{"answer": "Paris is the capital of Fra')
    with pytest.raises(TruncatedResponseError):
        JSONAdapter().parse(sig, 'Sure: {"answer": "Paris", "confidence": 0.')
    # near-JSON that is complete is still repaired
    assert JSONAdapter().parse(sig, "{'answer': 'Paris', 'confidence': 0.9,}") == {"answer": "Paris", "confidence": 0.9}
    listing = em.Signature("question -> items: list[int]")
    with pytest.raises(TruncatedResponseError):
        ChatAdapter().parse(listing, "[[ ## items ## ]]\n[1, 2, 3")


def test_a_cut_off_json_answer_is_retried_through_the_lm():
    flaky = Flaky(lambda m, s: '{"answer": "4')
    lm = em.FunctionLM(flaky, supports_json_schema=True, retry=fast_retry())
    pred = em.Predict("question -> answer", lm=lm, adapter=JSONAdapter())(question="q")
    assert pred.answer == "42" and len(flaky.settings) == 2


def test_evaluation_records_a_cut_off_answer_as_an_error_not_a_wrong_answer():
    with FakeLMServer(chat_answer, failure_rate=1.0, faults=("truncated",)) as srv:
        program = em.Predict("question -> answer", lm=server_lm(srv, num_retries=0, retry=None))
        result = em.evaluate(program, devset(10), em.metrics.exact_match, display_progress=False)
    assert result.errors == 10
    assert all(isinstance(r.error, TruncatedResponseError) and r.prediction is None for r in result.results)


# ---------------------------------------------------------------- 4. wrongly shaped bodies

BAD_BODIES = {
    "choices of numbers": json.dumps({"choices": [1]}),
    "message not an object": json.dumps({"choices": [{"message": "hi"}]}),
    "content not a string": json.dumps({"choices": [{"message": {"content": 5}}]}),
    "usage not numeric": json.dumps({"choices": [{"message": {"content": "x"}}], "usage": {"prompt_tokens": "many"}}),
    "usage not an object": json.dumps({"choices": [{"message": {"content": "x"}}], "usage": [3]}),
    "tool call not an object": json.dumps({"choices": [{"message": {"content": "", "tool_calls": [7]}}]}),
    "nested 100,000 deep": "[" * 100_000 + "]" * 100_000,
    "body not an object": "[1, 2]",
}


@pytest.mark.parametrize("name", list(BAD_BODIES))
def test_a_wrongly_shaped_body_raises_provider_response_error_with_an_excerpt(name):
    raw = BAD_BODIES[name]
    with FakeLMServer(lambda body: {"raw": raw}) as srv:
        lm = server_lm(srv, num_retries=0, retry=None)
        with pytest.raises(ProviderResponseError) as info:
            lm.request(USER)
    assert info.value.retryable
    assert raw[:20] in str(info.value)  # an excerpt of the body
    assert len(str(info.value)) < 600


def test_a_wrongly_shaped_body_is_retried_per_policy():
    seen = {"n": 0}

    def answer(body):
        seen["n"] += 1
        return {"raw": BAD_BODIES["choices of numbers"]} if seen["n"] <= 2 else chat_answer(body)

    with FakeLMServer(answer) as srv:
        pred = em.Predict("question -> answer", lm=server_lm(srv))(question="item 4")
    assert pred.answer == long_value(4) and seen["n"] == 3


def test_a_wrongly_shaped_probe_answer_does_not_leave_the_breaker_stuck():
    breaker = half_open_breaker()
    with FakeLMServer(lambda body: {"raw": BAD_BODIES["content not a string"]}) as srv:
        lm = server_lm(srv, circuit_breaker=breaker, num_retries=0, retry=None)
        with pytest.raises(ProviderResponseError):
            lm.request(USER)
    assert breaker.state == "open" and not breaker._probing  # a failed probe, recorded


def test_the_json_adapter_bounds_nesting_depth():
    sig = em.Signature("question -> answer: list")
    deep = '{"answer": ' + "[" * 100_000 + "]" * 100_000 + "}"
    with pytest.raises(AdapterParseError, match="nested deeper than 100"):
        JSONAdapter().parse(sig, deep)
    with pytest.raises(AdapterParseError):
        JSONAdapter().parse(sig, "[" * 100_000)
    assert JSONAdapter(max_depth=5).parse(sig, '{"answer": [[1]]}') == {"answer": [[1]]}
    with pytest.raises(em.errors.ValidationError):  # the chat adapter's structured values too
        ChatAdapter().parse(sig, "[[ ## answer ## ]]\n" + "[" * 5000 + "]" * 5000)


# --- Retry-After values that are not a wait (issue 35, item 9)


@pytest.mark.parametrize("header", ["-5", "nan", "garbage", "Mon, 01 Jan 1990 00:00:00 GMT"])
def test_a_retry_after_that_is_no_wait_falls_back_to_the_policys_backoff(header):
    with FakeLMServer(chat_answer, failure_rate=1.0, faults=("429",), retry_after=header) as srv:
        lm = server_lm(srv, retry=RetryPolicy(max_time=0.5, base_delay=0.05, max_delay=0.1))
        with pytest.raises(em.errors.RateLimitError) as info:
            lm.request(USER)
    assert info.value.retry_after is None
    # a tight loop sent a thousand requests in these 0.5 s; a backoff of up to 0.1 s sends a few dozen
    assert len(srv.requests) < 60


@pytest.mark.parametrize("header", ["inf", "1e400", "99999999"])
def test_a_huge_retry_after_is_capped(header):
    from elixirml.lm._openai import MAX_RETRY_AFTER, parse_retry_after

    wait = parse_retry_after(header)
    assert wait == MAX_RETRY_AFTER
    assert round(wait) == 3600  # inf raised OverflowError where the server turned it into a header
    with FakeLMServer(chat_answer, failure_rate=1.0, faults=("429",), retry_after=header) as srv:
        lm = server_lm(srv, retry=RetryPolicy(max_time=0.3, base_delay=0.05, max_delay=0.1))
        with pytest.raises(em.errors.RateLimitError) as info:
            lm.request(USER)
    assert info.value.retry_after == MAX_RETRY_AFTER
    assert 2 <= len(srv.requests) < 10  # the policy's max_delay bounds each wait


def test_a_retry_after_of_seconds_or_a_future_date_is_kept():
    import email.utils

    from elixirml.lm._openai import parse_retry_after

    assert parse_retry_after("0") == 0.0
    assert parse_retry_after("2.5") == 2.5
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 < parse_retry_after(future) <= 30
