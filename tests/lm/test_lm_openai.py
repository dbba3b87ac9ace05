import asyncio
import json
import re
import time

import pytest

import elixirml as em
from elixirml.errors import CircuitOpenError, ProviderError, RateLimitError
from elixirml.lm._cache import Cache
from elixirml.runtime import CircuitBreaker, RetryPolicy
from elixirml.testing import FakeLMServer

SECRET = "sk-test-secret-123456"


def item_answer(body):
    """Echo the item number of the request as the answer (JSON when asked for JSON)."""
    user = body["messages"][-1]["content"]
    number = re.search(r"item (\d+)", user).group(1)
    if body.get("response_format"):
        return json.dumps({"answer": number})
    return f"[[ ## answer ## ]]\n{number}\n\n[[ ## completed ## ]]"


@pytest.fixture
def server():
    with FakeLMServer(item_answer) as srv:
        yield srv


def make_lm(server, **kwargs):
    kwargs.setdefault("cache", False)
    return em.LM("openai/fake-model", base_url=server.base_url, api_key=SECRET, **kwargs)


def test_predict_against_openai_compatible_server(server):
    lm = make_lm(server)
    pred = em.Predict("question -> answer", lm=lm)(question="item 7")
    assert pred.answer == "7"
    body = server.requests[0]
    assert body["model"] == "fake-model"
    assert body["max_tokens"] == 512  # non-OpenAI servers get max_tokens
    assert "max_completion_tokens" not in body
    assert pred.usage["prompt_tokens"] > 0


def test_api_key_from_environment_and_never_exposed(server, monkeypatch, tmp_path):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    lm = em.LM("openai/fake-model", base_url=server.base_url, cache=tmp_path / "c.sqlite")
    predict = em.Predict("question -> answer", lm=lm)
    predict(question="item 1")
    assert SECRET not in repr(lm)
    assert SECRET not in json.dumps(lm.dump_state())
    assert SECRET not in json.dumps(list(lm.history), default=str)
    path = predict.save(tmp_path / "p.json")
    assert SECRET not in path.read_text()
    assert SECRET.encode() not in (tmp_path / "c.sqlite").read_bytes()


def test_openai_itself_gets_max_completion_tokens():
    lm = em.LM("openai/gpt-4o-mini", api_key="k")
    body = lm._body([{"role": "user", "content": "x"}], {"max_tokens": 10, "logprobs": 3})
    assert body["max_completion_tokens"] == 10 and "max_tokens" not in body
    assert body["logprobs"] is True and body["top_logprobs"] == 3


def test_openai_without_key_is_built_and_raises_at_the_first_request(monkeypatch):
    # As DSPy: programs and Variable.lm choices are built before keys exist.
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    lm = em.LM("openai/gpt-4o-mini", cache=False, num_retries=0)
    predict = em.Predict("question -> answer", lm=lm)
    with pytest.raises(em.errors.ConfigurationError, match="OPENAI_API_KEY"):
        predict(question="hi")
    assert not lm.history


def test_openai_key_set_after_construction_is_used(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    lm = em.LM("openai/gpt-4o-mini", cache=False)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    assert lm._request_api_key() == SECRET


def test_unknown_provider_is_clear():
    with pytest.raises(em.errors.ConfigurationError, match="Unknown LM provider"):
        em.LM("nope/model")
    with pytest.raises(em.errors.ConfigurationError, match="names no provider"):
        em.LM("gpt-4o")


def test_500_requests_with_30_percent_faults_none_lost_or_duplicated():
    with FakeLMServer(item_answer, failure_rate=0.3, timeout_delay=1.0, seed=1) as srv:
        lm = em.LM(
            "openai/fake",
            base_url=srv.base_url,
            cache=False,
            timeout=0.5,
            max_concurrency=64,
            retry=RetryPolicy(retries=15, base_delay=0.01, max_delay=0.05),
        )
        predict = em.Predict("question -> answer", lm=lm)

        async def main():
            return await asyncio.gather(*(predict.acall(question=f"item {i}") for i in range(500)))

        results = asyncio.run(main())
        assert [r.answer for r in results] == [str(i) for i in range(500)]
        assert sum(srv.fault_counts.values()) > 100  # faults really happened
        assert set(srv.fault_counts) == {"429", "500", "503", "timeout", "malformed", "empty"}
        assert srv.served >= 500
        # (client-side concurrency is checked without timeouts in test_max_concurrency_is_respected:
        # here the server keeps working on requests the client abandoned at its timeout)


def test_rate_limit_error_carries_retry_after():
    with FakeLMServer(item_answer, failure_rate=1.0, faults=("429",), retry_after="0.25") as srv:
        lm = em.LM("openai/fake", base_url=srv.base_url, cache=False, num_retries=0)
        with pytest.raises(RateLimitError) as info:
            lm.request([{"role": "user", "content": "item 1"}])
        assert info.value.retry_after == pytest.approx(0.25)
    assert RetryPolicy(retries=3).delay(0, retry_after=0.25) == 0.25
    assert 0 <= RetryPolicy(base_delay=1).delay(3) <= 8


def test_retry_after_is_honoured():
    with FakeLMServer(item_answer, failure_rate=0.5, faults=("429",), retry_after="0.3", seed=3) as srv:
        lm = em.LM("openai/fake", base_url=srv.base_url, cache=False, num_retries=10)
        start = time.perf_counter()
        for i in range(4):
            lm.request([{"role": "user", "content": f"item {i}"}])
        elapsed = time.perf_counter() - start
        assert elapsed >= 0.3 * srv.fault_counts["429"] - 0.05


def test_circuit_breaker_opens_fails_fast_and_recovers():
    with FakeLMServer(item_answer, failure_rate=1.0, faults=("500",)) as srv:
        breaker = CircuitBreaker("fake", failure_threshold=3, reset_timeout=0.3)
        lm = em.LM("openai/fake", base_url=srv.base_url, cache=False, num_retries=0, circuit_breaker=breaker)
        messages = [{"role": "user", "content": "item 1"}]
        for _ in range(3):
            with pytest.raises(ProviderError):
                lm.request(messages)
        assert breaker.state == "open"
        sent = len(srv.requests)
        with pytest.raises(CircuitOpenError) as info:
            lm.request(messages)
        assert len(srv.requests) == sent  # failed fast: nothing was sent while open
        assert 0 < info.value.reopens_in <= 0.3
        time.sleep(0.35)
        assert breaker.state == "half_open"
        srv.failure_rate = 0.0
        assert lm.request(messages).text.startswith("[[ ## answer")
        assert breaker.state == "closed"


def test_failed_probe_reopens():
    breaker = CircuitBreaker("x", failure_threshold=1, reset_timeout=0.05)
    breaker.record_failure()
    time.sleep(0.06)
    breaker.before_request()  # the probe
    with pytest.raises(CircuitOpenError):
        breaker.before_request()  # only one probe at a time
    breaker.record_failure()
    assert breaker.state == "open"


def test_fallback_lm_takes_over():
    with FakeLMServer(item_answer, failure_rate=1.0, faults=("503",)) as srv:
        backup = em.DummyLM([{"answer": "from backup"}])
        lm = em.LM("openai/fake", base_url=srv.base_url, cache=False, num_retries=1, fallbacks=[backup])
        lm.retry.base_delay = 0.01
        pred = em.Predict("question -> answer", lm=lm)(question="item 1")
        assert pred.answer == "from backup"
        assert len(srv.requests) == 2  # first try plus one retry, then the fallback


def test_non_retryable_status_is_not_retried(server):
    lm = make_lm(server, num_retries=5)
    lm.base_url = server.base_url.replace("/v1", "/nope")
    with pytest.raises(ProviderError) as info:
        lm.request([{"role": "user", "content": "item 1"}])
    assert info.value.status == 404 and not info.value.retryable


def test_cache_repeat_makes_no_calls_and_settings_change_misses(server, tmp_path):
    cache = Cache(tmp_path / "cache.sqlite")
    lm = make_lm(server, cache=cache)
    predict = em.Predict("question -> answer", lm=lm)
    first = [predict(question=f"item {i}").answer for i in range(5)]
    calls = len(server.requests)
    assert calls == 5
    with em.track_usage() as usage:
        again = [predict(question=f"item {i}").answer for i in range(5)]
    assert again == first and len(server.requests) == calls
    assert usage.total_tokens == 0 and usage.cached_calls == 5
    assert lm.history[-1]["cached"] is True
    predict(question="item 1", config={"temperature": 0.9})
    assert len(server.requests) == calls + 1
    predict(question="item 1", config={"rollout_id": 2})
    assert len(server.requests) == calls + 2
    # a fresh LM (new process, same file) hits the persistent level
    lm2 = make_lm(server, cache=Cache(tmp_path / "cache.sqlite"))
    em.Predict("question -> answer", lm=lm2)(question="item 3")
    assert len(server.requests) == calls + 2


def test_cache_key_ignores_api_key_and_base_url(server, tmp_path):
    cache = Cache(tmp_path / "c.sqlite")
    lm1 = em.LM("openai/m", base_url=server.base_url, api_key="a", cache=cache)
    lm1.request([{"role": "user", "content": "item 1"}])
    with FakeLMServer(item_answer) as other:
        lm2 = em.LM("openai/m", base_url=other.base_url, api_key="b", cache=cache)
        assert lm2.request([{"role": "user", "content": "item 1"}]).cached
        assert other.requests == []


def test_only_validated_responses_are_cached(tmp_path):
    with FakeLMServer(lambda body: "not parseable at all") as srv:
        lm = em.LM("openai/fake", base_url=srv.base_url, cache=Cache(tmp_path / "c.sqlite"))
        predict = em.Predict("question -> answer, score: float", lm=lm)
        for _ in range(2):
            with em.context(output_retries=0), pytest.raises(em.errors.AdapterParseError):
                predict(question="item 1")
        assert len(srv.requests) == 2


def test_cache_setting_from_configure(server, tmp_path):
    em.configure(cache=str(tmp_path / "configured.sqlite"))
    lm = em.LM("openai/fake", base_url=server.base_url)
    lm.request([{"role": "user", "content": "item 1"}])
    lm.request([{"role": "user", "content": "item 1"}])
    assert len(server.requests) == 1
    assert (tmp_path / "configured.sqlite").exists()
    em.configure(cache=False)
    lm.request([{"role": "user", "content": "item 1"}])
    assert len(server.requests) == 2


def test_streaming_yields_chunks(server):
    lm = make_lm(server)

    async def main():
        return [c async for c in lm.astream([{"role": "user", "content": "item 42"}])]

    chunks = asyncio.run(main())
    assert len(chunks) > 3
    assert "".join(chunks) == "[[ ## answer ## ]]\n42\n\n[[ ## completed ## ]]"
    assert lm.history[-1]["outputs"][0] == "".join(chunks)


def test_n_greater_than_one(server):
    lm = make_lm(server)
    pred = em.Predict("question -> answer", lm=lm)(question="item 5", config={"n": 3})
    assert [c["answer"] for c in pred.completions] == ["5", "5", "5"]
    assert server.requests[0]["n"] == 3


def test_tool_calls_and_logprobs_are_parsed():
    from elixirml.lm._openai import parse_chat_response

    data = {
        "choices": [
            {
                "message": {
                    "content": None,
                    "tool_calls": [{"id": "c1", "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'}}],
                },
                "logprobs": {"content": [{"token": "x", "logprob": -0.1}]},
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4},
    }
    response = parse_chat_response(data, "m", [])
    completion = response.completions[0]
    assert completion.tool_calls == [{"id": "c1", "name": "add", "arguments": {"a": 1, "b": 2}}]
    assert completion.logprobs == [{"token": "x", "logprob": -0.1}]
    assert response.usage.total_tokens == 7


def test_max_concurrency_is_respected():
    with FakeLMServer(item_answer, latency=0.05) as srv:
        lm = em.LM("openai/fake", base_url=srv.base_url, cache=False, max_concurrency=8)

        async def main():
            await asyncio.gather(*(lm.arequest([{"role": "user", "content": f"item {i}"}]) for i in range(40)))

        asyncio.run(main())
        assert srv.max_in_flight == 8


def test_rate_limiter_spaces_requests():
    from elixirml.runtime import RateLimiter

    limiter = RateLimiter(rpm=3, window=0.3)

    async def main():
        start = time.perf_counter()
        for _ in range(6):
            await limiter.acquire()
        return time.perf_counter() - start

    assert asyncio.run(main()) >= 0.29


def test_price_table_turns_tokens_into_cost(server):
    lm = make_lm(server, price=(1.0, 2.0))
    response = lm.request([{"role": "user", "content": "item 1"}])
    expected = (response.usage.prompt_tokens * 1.0 + response.usage.completion_tokens * 2.0) / 1e6
    assert response.usage.cost == pytest.approx(expected) and expected > 0


def test_anthropic_client_against_loopback(server):
    pytest.importorskip("anthropic")
    lm = em.LM("anthropic/claude-test", base_url=server.base_url.removesuffix("/v1"), api_key=SECRET, cache=False)
    pred = em.Predict("question -> answer", lm=lm)(question="item 9")
    assert pred.answer == "9"
    body = server.requests[-1]
    assert body["model"] == "claude-test" and body["max_tokens"] == 512
    assert "system" in body and all(m["role"] != "system" for m in body["messages"])


def test_litellm_client_against_loopback(server, monkeypatch):
    pytest.importorskip("litellm")
    lm = em.LM("litellm/openai/fake-model", api_base=server.base_url, api_key=SECRET, cache=False)
    pred = em.Predict("question -> answer", lm=lm)(question="item 11")
    assert pred.answer == "11"
    assert server.requests[-1]["model"] == "fake-model"


def test_missing_extra_names_it(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "anthropic", None)
    lm = em.LM("anthropic/claude-x", api_key="k", cache=False, num_retries=0)
    with pytest.raises(em.errors.MissingDependencyError, match=r"elixirml\[anthropic\]"):
        lm.request([{"role": "user", "content": "hi"}])


class _HeaderRecorder:
    """A loopback chat-completions server (stdlib) that records each request's path, headers and body."""

    def __init__(self):
        import http.server
        import threading

        seen = self.seen = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                seen.append({"path": self.path, "headers": dict(self.headers), "body": body})
                reply = json.dumps(
                    {"choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}], "usage": {}}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_api_base_is_dspys_name_for_base_url_and_the_key_goes_nowhere_else(monkeypatch):
    with _HeaderRecorder() as wanted, _HeaderRecorder() as elsewhere:
        monkeypatch.setenv("OPENAI_BASE_URL", elsewhere.base_url)  # where the key went before: the default URL
        lm = em.LM("openai/m", api_base=wanted.base_url, api_key=SECRET, cache=False)
        assert lm.base_url == wanted.base_url
        assert "api_base" not in lm.defaults
        assert lm(messages=[{"role": "user", "content": "hi"}]) == ["ok"]
    assert elsewhere.seen == []
    (request,) = wanted.seen
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == f"Bearer {SECRET}"
    assert "api_base" not in request["body"] and SECRET not in json.dumps(request["body"])


def test_base_url_and_a_different_api_base_together_are_a_configuration_error():
    with pytest.raises(em.errors.ConfigurationError, match="api_base is DSPy's name for base_url"):
        em.LM("openai/m", base_url="http://127.0.0.1:1/v1", api_base="http://127.0.0.1:2/v1", api_key="k")
    lm = em.LM("openai/m", base_url="http://127.0.0.1:1/v1", api_base="http://127.0.0.1:1/v1/", api_key="k")
    assert lm.base_url == "http://127.0.0.1:1/v1"


class _Replier:
    """A loopback server (stdlib) that answers every POST with one status and JSON body, quoting the key it got."""

    def __init__(self, status, message):
        import http.server
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                key = self.headers.get("Authorization", "").removeprefix("Bearer ") or self.headers.get("x-api-key", "")
                reply = json.dumps({"type": "error", "error": {"type": "auth", "message": message.format(key=key)}})
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply.encode())

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


# --- a refused key (issue 35, item 11)

ODD_KEY = "not-shaped-like-a-key-7f3a9"


def test_a_401_names_the_environment_variable_and_never_carries_the_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", ODD_KEY)
    with _Replier(401, "Incorrect API key provided: {key}. Find yours at the dashboard.") as srv:
        lm = em.LM("openai/m", base_url=f"{srv.url}/v1", cache=False)
        with pytest.raises(ProviderError) as info:
            lm.request([{"role": "user", "content": "hi"}])
    text = str(info.value)
    assert ODD_KEY not in text
    assert "OPENAI_API_KEY" in text and "HTTP 401" in text and "Incorrect API key provided: ***" in text
    assert info.value.status == 401 and not info.value.retryable


def test_a_401_for_a_passed_key_says_so_and_redacts_it():
    with _Replier(401, "bad key {key}") as srv:
        lm = em.LM("openai/m", base_url=f"{srv.url}/v1", api_key=SECRET, cache=False)
        with pytest.raises(ProviderError) as info:
            lm.request([{"role": "user", "content": "hi"}])
    assert SECRET not in str(info.value) and "api_key passed to em.LM" in str(info.value)


def test_any_provider_error_message_is_redacted():
    with _Replier(500, "internal error while checking {key}; upstream said Bearer sk-live-abcdefgh1234") as srv:
        lm = em.LM("openai/m", base_url=f"{srv.url}/v1", api_key=ODD_KEY, cache=False, num_retries=0)
        with pytest.raises(ProviderError) as info:
            lm.request([{"role": "user", "content": "hi"}])
    assert ODD_KEY not in str(info.value) and "sk-live" not in str(info.value)


def test_anthropic_401_names_its_variable_and_redacts_the_key(monkeypatch):
    pytest.importorskip("anthropic")
    monkeypatch.setenv("ANTHROPIC_API_KEY", ODD_KEY)
    with _Replier(401, "invalid x-api-key {key}") as srv:
        lm = em.LM("anthropic/claude-x", base_url=srv.url, cache=False, num_retries=0)
        with pytest.raises(ProviderError) as info:
            lm.request([{"role": "user", "content": "hi"}])
    assert ODD_KEY not in str(info.value) and "ANTHROPIC_API_KEY" in str(info.value)


def test_redact_text_removes_keys_and_keeps_the_rest():
    from elixirml._secrets import redact_text

    assert redact_text("key mine-1234 refused", ["mine-1234"]) == "key *** refused"
    assert redact_text("got sk-proj-AbCdEf123456 here") == "got *** here"
    assert redact_text("Authorization: Bearer abc.def-123") == "Authorization: Bearer ***"
    assert redact_text("api_key=hunter22&x=1") == "api_key=***&x=1"
    assert redact_text("see https://u:pw@h/v1?api_key=zz") == "see https://u:***@h/v1?api_key=***"
    assert redact_text("max_tokens: 5123 is more than 4096") == "max_tokens: 5123 is more than 4096"


def test_litellm_401_names_the_providers_variable_and_redacts_the_key(monkeypatch):
    pytest.importorskip("litellm")
    monkeypatch.setenv("OPENAI_API_KEY", ODD_KEY)
    with _Replier(401, "Incorrect API key provided: {key}") as srv:
        lm = em.LM("litellm/openai/m", api_base=f"{srv.url}/v1", cache=False, num_retries=0)
        with pytest.raises(ProviderError) as info:
            lm.request([{"role": "user", "content": "hi"}])
    assert ODD_KEY not in str(info.value) and "OPENAI_API_KEY" in str(info.value)


# --- streaming takes the path of a request (issue 35, item 8)


def _stream_all(lm, messages=None, **settings):
    async def main():
        return [c async for c in lm.astream(messages or [{"role": "user", "content": "item 3"}], **settings)]

    return asyncio.run(main())


def test_a_stream_counts_against_the_call_budget(server):
    from elixirml.lm._usage import spending_limit

    lm = make_lm(server)
    with spending_limit(1) as budget:
        assert "".join(_stream_all(lm)).startswith("[[ ## answer")
        for _ in range(2):
            with pytest.raises(em.errors.BudgetExceededError):
                _stream_all(lm)
    assert budget.used == 1 and len(server.requests) == 1


def test_a_stream_counts_in_usage_and_its_completed_answer_is_cached(server, tmp_path):
    lm = make_lm(server, cache=Cache(tmp_path / "c.sqlite"))
    with em.track_usage() as usage:
        first = "".join(_stream_all(lm))
    assert usage.calls == 1 and usage.total_tokens > 0
    again = _stream_all(lm)
    assert "".join(again) == first and len(server.requests) == 1  # the second came from the cache
    assert lm.history[-1]["cached"] is True


def test_a_stream_is_retried_before_its_first_chunk():
    with FakeLMServer(item_answer, failure_rate=0.6, faults=("503", "429"), seed=2) as srv:
        lm = em.LM("openai/fake", base_url=srv.base_url, api_key="k", cache=False)
        lm.retry = RetryPolicy(retries=20, base_delay=0.001, max_delay=0.005)
        for i in range(5):
            assert "".join(_stream_all(lm, [{"role": "user", "content": f"item {i}"}])).startswith("[[ ## answer")
        assert sum(srv.fault_counts.values()) > 0  # faults happened, and every stream still finished


def test_streams_obey_the_concurrency_limit():
    with FakeLMServer(item_answer, latency=0.05) as srv:
        lm = em.LM("openai/fake", base_url=srv.base_url, api_key="k", cache=False, max_concurrency=2)

        async def main():
            async def one(i):
                return "".join([c async for c in lm.astream([{"role": "user", "content": f"item {i}"}])])

            return await asyncio.gather(*(one(i) for i in range(6)))

        assert len(asyncio.run(main())) == 6
        assert srv.max_in_flight == 2


def test_a_plain_json_answer_to_a_stream_request_is_the_whole_answer():
    reply = {"choices": [{"message": {"content": "[[ ## answer ## ]]\nwhole\n\n[[ ## completed ## ]]"}}], "usage": {}}
    with FakeLMServer(lambda body: {"raw": json.dumps(reply)}) as srv:
        lm = em.LM("openai/fake", base_url=srv.base_url, api_key="k", cache=False)
        stream = em.streamify(em.Predict("question -> answer", lm=lm))

        async def main():
            return [event async for event in stream(question="q")]

        events = asyncio.run(main())
    assert events[-1].answer == "whole"  # Prediction(answer='') before
    assert srv.requests[0]["stream"] is True


def test_a_stream_that_fails_before_its_first_piece_goes_to_the_fallbacks():
    with FakeLMServer(item_answer, failure_rate=1.0, faults=("500",)) as srv:
        fallback = em.DummyLM(["from the fallback"], stream_chunk=5)
        lm = em.LM("openai/fake", base_url=srv.base_url, api_key="k", cache=False, num_retries=0, fallbacks=[fallback])
        with em.track_usage() as usage:
            chunks = _stream_all(lm)
    assert chunks == ["from ", "the f", "allba", "ck"]  # the fallback's own stream, piece by piece
    assert len(srv.requests) == 1 and len(fallback.requests) == 1
    assert usage.calls == 1 and fallback.history[-1]["outputs"] == ["from the fallback"]


class _BreaksAfterOnePiece(em.DummyLM):
    """Streams one piece of its answer, then loses the connection (a retryable failure)."""

    async def _stream(self, messages, settings):
        self.requests.append({"messages": messages, "settings": settings})
        yield "[[ ## answer"
        raise ProviderError("stream broken (ClientPayloadError)", retryable=True)


def test_a_stream_that_breaks_after_a_piece_is_neither_retried_nor_sent_to_a_fallback():
    fallback = em.DummyLM(["never asked"])
    lm = _BreaksAfterOnePiece([], fallbacks=[fallback], retry=RetryPolicy(retries=3, base_delay=0.001))
    seen = []

    async def main():
        async for piece in lm.astream([{"role": "user", "content": "q"}]):
            seen.append(piece)

    with pytest.raises(ProviderError, match="stream broken"):
        asyncio.run(main())
    assert seen == ["[[ ## answer"]  # what reached the reader is not followed by a second answer
    assert len(lm.requests) == 1 and fallback.requests == []


def test_a_stream_stopped_early_frees_its_concurrency_slot():
    with FakeLMServer(item_answer, stream_chunk=2) as srv:
        lm = em.LM("openai/fake", base_url=srv.base_url, api_key="k", cache=False, max_concurrency=1)

        async def main():
            stream = lm.astream([{"role": "user", "content": "item 1"}])
            async for _ in stream:
                break
            await stream.aclose()
            return await asyncio.wait_for(lm.arequest([{"role": "user", "content": "item 2"}]), 5)

        assert asyncio.run(main()).text.startswith("[[ ## answer")


class _KeepAliveServer:
    """Answers a stream request with SSE comments only, one every 0.1 s, for up to 25 s."""

    def __init__(self):
        import http.server
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                try:
                    for _ in range(250):
                        self.wfile.write(b": keep-alive\n\n")
                        self.wfile.flush()
                        time.sleep(0.1)
                except OSError:
                    pass

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_a_stream_that_sends_only_keep_alives_times_out():
    with _KeepAliveServer() as srv:
        lm = em.LM("openai/fake", base_url=srv.base_url, api_key="k", cache=False, timeout=0.5, num_retries=0)
        start = time.perf_counter()
        with pytest.raises(em.errors.ProviderTimeoutError, match="sent nothing for 0.5s"):
            _stream_all(lm)
        assert time.perf_counter() - start < 3  # it hung for 25 s before


def test_an_answer_its_validator_refuses_carries_its_usage(server):
    lm = make_lm(server)

    def refuse(response):
        raise em.errors.ValidationError("S", "answer", response.text, "refused for the test")

    with pytest.raises(em.errors.ValidationError) as info:
        lm.request([{"role": "user", "content": "item 3"}], validate=refuse)
    assert info.value.usage is not None and info.value.usage.calls == 1
    assert info.value.usage.total_tokens == lm.usage.total_tokens > 0
