"""The server as an attacker meets it, on a real uvicorn on 127.0.0.1 (issue 34).

Tokens on every path (docs included), one identity per caller for the limits, Host and Origin
checks, JSON-only running endpoints, typed 4xx for hostile bodies, redacted upstream errors,
invalid LM output as 502, slow bodies, and the console's login.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time

import httpx
import pytest

import elixirml as em
from elixirml.serve._server import server_config
from elixirml.serve._state import ServeSettings

uvicorn = pytest.importorskip("uvicorn")

ANSWER = "[[ ## answer ## ]]\n{}\n\n[[ ## completed ## ]]"
TOKEN = "client-token-123456"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def make_lm(delay: float = 0.0) -> em.FunctionLM:
    async def answer(messages, settings):
        if delay:
            await asyncio.sleep(delay)
        question = messages[-1]["content"].split("[[ ## question ## ]]")[-1].split("\n\n")[0].strip()
        return ANSWER.format(f"A: {question}")

    return em.FunctionLM(answer)


@contextlib.contextmanager
def serving(app, lifespan="off", **options):
    """``app`` on a real uvicorn at 127.0.0.1, configured as ``elixirml serve`` configures it."""
    config = server_config(app, host="127.0.0.1", port=0, log_level="warning", **options)
    config.lifespan = lifespan  # "on" starts the job manager
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def store(tmp_path):
    s = em.Store(f"sqlite:///{tmp_path / 'security.db'}")
    s.save(em.Predict("question -> answer"), "qa")
    yield s
    s.close()


# ---------------------------------------------------------------------- item 2: docs need the token
def test_docs_need_the_token_and_only_probes_are_open(store):
    app = em.serve.create_app(store, lm=make_lm(), tokens=[TOKEN], jobs=False)
    with serving(app) as url:
        for path in ("/openapi.json", "/docs", "/redoc", "/programs", "/v1/models"):
            refused = httpx.get(url + path)
            assert refused.status_code == 401, path
            assert refused.headers["www-authenticate"] == "Bearer" and "qa" not in refused.text
            assert httpx.get(url + path, headers=AUTH).status_code == 200, path
        for path in ("/healthz", "/readyz", "/metrics"):
            assert httpx.get(url + path).status_code == 200, path


# ---------------------------------------------------------------------- item 3: one identity per caller
async def _together(url: str, headers_of, n: int = 6) -> list[int]:
    async with httpx.AsyncClient(timeout=20) as client:
        responses = await asyncio.gather(
            *(
                client.post(url + "/programs/qa/run", json={"question": f"q{i}"}, headers=headers_of(i))
                for i in range(n)
            )
        )
    return sorted(r.status_code for r in responses)


def test_two_authorization_headers_are_refused(store):
    app = em.serve.create_app(
        store, lm=make_lm(delay=0.5), tokens=[TOKEN], settings=ServeSettings(max_concurrency=2), jobs=False
    )
    with serving(app) as url:
        doubled = lambda i: httpx.Headers([("authorization", f"Bearer {TOKEN}"), ("authorization", f"Bearer x{i}")])  # noqa: E731
        assert asyncio.run(_together(url, doubled)) == [400] * 6
        reversed_ = lambda i: httpx.Headers([("authorization", f"Bearer x{i}"), ("authorization", f"Bearer {TOKEN}")])  # noqa: E731
        assert asyncio.run(_together(url, reversed_)) == [400] * 6
        assert asyncio.run(_together(url, lambda i: AUTH)) == [200, 200, 429, 429, 429, 429]


def test_without_tokens_the_limit_keys_on_the_client_address_not_a_made_up_header(store):
    app = em.serve.create_app(store, lm=make_lm(delay=0.5), tokens=[], settings=ServeSettings(max_concurrency=2))
    with serving(app) as url:
        made_up = lambda i: {"Authorization": f"Bearer made-up-{i}"}  # noqa: E731
        assert asyncio.run(_together(url, made_up)) == [200, 200, 429, 429, 429, 429]
        forwarded = lambda i: {"X-Forwarded-For": f"10.0.0.{i}"}  # noqa: E731  no proxy is trusted by default
        assert asyncio.run(_together(url, forwarded)) == [200, 200, 429, 429, 429, 429]
    app = em.serve.create_app(store, lm=make_lm(delay=0.5), tokens=[], settings=ServeSettings(max_concurrency=2))
    with serving(app, forwarded_allow_ips="127.0.0.1") as url:  # the operator's proxy runs on this host
        assert asyncio.run(_together(url, forwarded)) == [200] * 6


# ---------------------------------------------------------------------- item 4: Host, Origin, Content-Type
def test_a_foreign_host_is_refused_unless_allowed(store):
    app = em.serve.create_app(store, lm=make_lm(), tokens=[])  # the console is mounted at /
    with serving(app) as url:
        evil = {"Host": "evil.example"}
        run = httpx.post(url + "/programs/qa/run", json={"question": "x"}, headers=evil)
        assert run.status_code == 400 and "--allowed-host evil.example" in run.json()["detail"]
        assert httpx.get(url + "/catalog", headers=evil).status_code == 400
        assert httpx.get(url + "/catalog", headers={"Host": "evil.example:8000"}).status_code == 400
        for host in ("localhost", "127.0.0.1:9", "[::1]:80", "10.1.2.3"):  # an IP address is never rebound
            assert httpx.get(url + "/catalog", headers={"Host": host}).status_code == 200, host
        assert httpx.get(url + "/healthz", headers=evil).status_code == 200  # probes come by any name
    app = em.serve.create_app(store, lm=make_lm(), tokens=[], settings=ServeSettings(allowed_hosts=("api.example",)))
    with serving(app) as url:
        ok = httpx.post(url + "/programs/qa/run", json={"question": "x"}, headers={"Host": "api.example"})
        assert ok.status_code == 200
        assert httpx.get(url + "/catalog", headers={"Host": "evil.example"}).status_code == 400


def test_running_endpoints_take_json_only_and_refuse_other_origins(store):
    app = em.serve.create_app(store, lm=make_lm(), tokens=[])
    with serving(app) as url:
        before = len(store.executions(limit=100))
        plain = {"Content-Type": "text/plain"}
        for path, body in (
            ("/programs/qa/run", '{"question": "x"}'),
            ("/programs/qa/stream", '{"question": "x"}'),
            ("/programs/qa/deploy", "{}"),
            ("/programs/qa/rollback", ""),
            ("/v1/chat/completions", '{"model": "qa", "messages": [{"role": "user", "content": "x"}]}'),
            ("/jobs", "{}"),
            ("/catalog/qa/try", '{"inputs": {"question": "x"}}'),
        ):
            refused = httpx.post(url + path, content=body, headers=plain)
            assert refused.status_code == 415 and "application/json" in refused.json()["detail"], path
            form = httpx.post(url + path, data={"question": "x"})
            assert form.status_code == 415, path
        assert len(store.executions(limit=100)) == before  # "try it" recorded no trace
        cross = httpx.post(url + "/programs/qa/run", json={"question": "x"}, headers={"Origin": "https://evil.example"})
        assert cross.status_code == 403 and "evil.example" in cross.json()["detail"]
        assert httpx.get(url + "/catalog", headers={"Origin": "null"}).status_code == 403
        same = httpx.post(url + "/programs/qa/run", json={"question": "x"}, headers={"Origin": url})
        assert same.status_code == 200
        charset = {"Content-Type": "application/json; charset=utf-8"}
        assert httpx.post(url + "/programs/qa/run", content='{"question": "x"}', headers=charset).status_code == 200


# ---------------------------------------------------------------------- item 5: the console's login
def test_console_refuses_a_public_address_without_a_login(store, monkeypatch):
    from typer.testing import CliRunner

    from elixirml.cli import app as cli

    monkeypatch.delenv("ELIXIRML_SERVE_TOKENS", raising=False)
    out = CliRunner().invoke(cli, ["--store", store.url, "console", "--host", "0.0.0.0", "--port", "1"])
    assert out.exit_code != 0 and "needs a login" in out.output


def test_console_with_tokens_requires_the_login_on_every_page_and_action(store):
    from elixirml.console import create_console_app

    lm = em.DummyLM({"x": {"answer": "y"}})
    app = create_console_app(store.url, lm=lm, tokens=[TOKEN])
    with serving_console(app) as url:
        page = httpx.get(url + "/catalog")
        assert page.status_code == 303 and page.headers["location"] == "/login"
        assert httpx.get(url + "/login").status_code == 200 and "qa" not in httpx.get(url + "/login").text
        tried = httpx.post(url + "/catalog/qa/try", json={"inputs": {"question": "x"}})
        assert tried.status_code == 401
        assert httpx.post(url + "/login", json={"token": "wrong-token-xyz"}).status_code == 401
        login = httpx.post(url + "/login", json={"token": TOKEN})
        assert login.status_code == 204
        cookie = login.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and TOKEN not in cookie
        with httpx.Client(base_url=url, cookies=login.cookies) as browser:
            assert browser.get("/catalog").status_code == 200
            with browser.stream("POST", "/catalog/qa/try", json={"inputs": {"question": "x"}}) as answer:
                assert answer.status_code == 200 and "event: result" in "".join(answer.iter_text())
        assert httpx.get(url + "/catalog", headers=AUTH).status_code == 200
        assert httpx.get(url + "/catalog", cookies={"elixirml_session": "forged"}).status_code == 303


@contextlib.contextmanager
def serving_console(app):
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)


# ---------------------------------------------------------------------- item 6: hostile bodies are typed 4xx
def test_hostile_bodies_get_a_typed_4xx_never_a_500(store):
    app = em.serve.create_app(store, lm=make_lm(), tokens=[])
    with serving(app, lifespan="on") as url:
        json_type = {"Content-Type": "application/json"}
        chat = "/v1/chat/completions"
        for path in ("/programs/qa/run", "/programs/qa/batch", "/programs/qa/deploy", chat, "/jobs"):
            deep = httpx.post(url + path, content="[" * 100_000, headers=json_type)
            assert deep.status_code == 400 and "nested deeper" in deep.json()["detail"], path
            nan = httpx.post(url + path, content='{"question": NaN}', headers=json_type)
            assert nan.status_code == 400 and "NaN" in nan.json()["detail"], path
            huge = httpx.post(url + path, content='{"question": 1e400}', headers=json_type)
            assert huge.status_code == 400 and "too large" in huge.json()["detail"], path
        messages = [{"role": "user", "content": "x"}]
        for extra, named in (
            ({"stream_options": "yes"}, "stream_options"),
            ({"stream": True, "stream_options": {"include_usage": "yes"}}, "include_usage"),
            ({"stream": "yes"}, "stream"),
            ({"n": True}, "n must be 1"),
            ({"user": 5}, "user"),
        ):
            r = httpx.post(url + chat, json={"model": "qa", "messages": messages, **extra})
            assert r.status_code == 400 and named in r.json()["error"]["message"], extra
        r = httpx.post(url + chat, json={"model": "qa", "messages": ["hello"]})
        assert r.status_code == 400
        nested = '{"question": ' + "[" * 5000 + "]" * 5000 + "}"
        r = httpx.post(url + chat, json={"model": "qa", "messages": [{"role": "user", "content": nested}]})
        assert r.status_code == 200  # not JSON inputs: the text is the question
        deploy = httpx.post(url + "/programs/qa/deploy", json={"version": 10**30})
        assert deploy.status_code == 422 and deploy.json()["detail"][0]["loc"] == ["body", "version"]
        job = {"kind": "evaluate", "program": "qa@" + "9" * 30, "rows": [{"question": "q", "answer": "a"}]}
        r = httpx.post(url + "/jobs", json={**job, "inputs": ["question"]})
        assert r.status_code == 400 and "9" * 30 in r.json()["detail"]  # the detail names the version
        assert httpx.get(url + "/programs/qa/versions").status_code == 200


# ---------------------------------------------------------------------- item 8: upstream messages are redacted
UNSHAPED = "zq81-not-shaped-like-a-key-5521"  # a credential of the server's that no pattern would spot


class _Refuser:
    """A loopback OpenAI-like server that answers 401 quoting the key it got, as OpenAI does."""

    def __init__(self):
        import http.server
        import json as json_

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                key = self.headers.get("Authorization", "").removeprefix("Bearer ")
                reply = json_.dumps({"error": {"message": f"Incorrect API key provided: {key}. See your dashboard."}})
                self.send_response(401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply.encode())

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _every_error_text(url: str, program: str = "qa") -> str:
    """The run, batch, stream and chat (plain and streamed) answers of one failing question, as text."""
    body = {"question": "x"}
    texts = []
    run = httpx.post(f"{url}/programs/{program}/run", json=body)
    assert run.status_code == 502, run.text
    texts.append(run.text)
    texts.append(httpx.post(f"{url}/programs/{program}/batch", json=[body]).text)
    stream = httpx.post(f"{url}/programs/{program}/stream", json=body)
    assert "event: error" in stream.text
    texts.append(stream.text)
    chat = {"model": program, "messages": [{"role": "user", "content": "x"}]}
    texts.append(httpx.post(f"{url}/v1/chat/completions", json=chat).text)
    streamed = httpx.post(f"{url}/v1/chat/completions", json={**chat, "stream": True})
    assert '"error"' in streamed.text
    texts.append(streamed.text)
    return "\n".join(texts)


def test_upstream_messages_are_redacted_before_clients_logs_and_spans(store, monkeypatch, caplog):
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    monkeypatch.setenv("UPSTREAM_API_KEY", UNSHAPED)

    async def leaky(messages, settings):
        raise em.errors.ProviderResponseError(
            f"gateway refused credential {UNSHAPED} (also Bearer sk-live-abcdef123456)"
        )

    def program_bug(messages, settings):
        raise RuntimeError(f"the tool was called with token={UNSHAPED}")

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    store.save(em.Predict("question -> answer"), "buggy")
    app = em.serve.create_app(store, programs=["qa"], lm=em.FunctionLM(leaky), tokens=[], tracer_provider=provider)
    buggy = em.serve.create_app(store, programs=["buggy"], lm=em.FunctionLM(program_bug), tokens=[])
    with caplog.at_level("DEBUG"):
        with serving(app) as url:
            text = _every_error_text(url)
        with serving(buggy) as url:
            failed = httpx.post(url + "/programs/buggy/run", json={"question": "x"})
    assert failed.status_code >= 500 and UNSHAPED not in failed.text and "token=***" in failed.text
    assert UNSHAPED not in text and "sk-live" not in text and "gateway refused credential ***" in text
    assert UNSHAPED not in caplog.text and "the tool was called with token=***" in caplog.text
    for span in memory.get_finished_spans():
        recorded = str(span.attributes) + str(span.status.description) + str([e.attributes for e in span.events])
        assert UNSHAPED not in recorded and "sk-live" not in recorded, span.name


def test_a_refused_key_is_named_by_its_variable_never_by_its_value(store, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", UNSHAPED)
    with _Refuser() as upstream:
        lm = em.LM("openai/m", base_url=upstream.url, cache=False, num_retries=0)
        app = em.serve.create_app(store, lm=lm, tokens=[])
        with serving(app) as url:
            text = _every_error_text(url)
    assert UNSHAPED not in text
    assert "OPENAI_API_KEY" in text and "401" in text
    # the hint after the variable's name survives redaction ("OPENAI_API_KEY: check it" read as a key=value)
    assert "check it, or set a valid one" in text


# ---------------------------------------------------------------------- item 7: unusable LM output is a 502
def test_an_answer_json_cannot_carry_is_a_502_naming_it(store, tmp_path):
    from fastapi.testclient import TestClient

    store.save(em.Predict("question -> answer, score: float"), "scored")

    def broken_answer(messages, settings):
        if "score" in str(messages[0]["content"]):
            return "[[ ## answer ## ]]\nfine\n\n[[ ## score ## ]]\nnan\n\n[[ ## completed ## ]]"
        return ANSWER.format("A\ud800B")

    app = em.serve.create_app(store, lm=em.FunctionLM(broken_answer), tokens=[])
    with serving(app) as url:
        for program, why in (("qa", "lone surrogate (U+D800)"), ("scored", "outputs.score is nan")):
            run = httpx.post(f"{url}/programs/{program}/run", json={"question": "x"})
            assert run.status_code == 502, run.text
            assert "provider's answer was invalid" in run.json()["detail"] and why in run.json()["detail"]
            assert run.json()["type"] == "OutputError"
            batch = httpx.post(f"{url}/programs/{program}/batch", json=[{"question": "x"}]).json()
            assert batch["results"][0]["error"]["status"] == 502
            stream = httpx.post(f"{url}/programs/{program}/stream", json={"question": "x"})
            assert stream.status_code == 200 and "event: error" in stream.text and why in stream.text
            chat = {"model": program, "messages": [{"role": "user", "content": "x"}]}
            reply = httpx.post(f"{url}/v1/chat/completions", json=chat)
            assert reply.status_code == 502 and why in reply.json()["error"]["message"]
            streamed = httpx.post(f"{url}/v1/chat/completions", json={**chat, "stream": True})
            assert streamed.status_code == 200 and why in streamed.text and streamed.text.endswith("[DONE]\n\n")
        metrics = httpx.get(url + "/metrics").text
        assert 'elixirml_request_errors_total{program="qa",version="1"}' in metrics
    from elixirml.console import create_console_app

    console = create_console_app(store.url, lm=em.FunctionLM(broken_answer))
    with (
        TestClient(console, base_url="http://localhost") as c,
        c.stream("POST", "/catalog/qa/try", json={"inputs": {"question": "x"}}) as response,
    ):
        body = "".join(response.iter_text())
    assert "event: error" in body and "lone surrogate" in body


# ---------------------------------------------------------------------- item 10: slow clients
async def _slow_upload(port: int, seconds: float) -> bytes:
    """A request whose body arrives a byte at a time for ``seconds``; what the server answered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = b'{"question": "slow"}'
    head = "POST /programs/qa/run HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    writer.write((head + f"Content-Length: {len(body)}\r\n\r\n").encode())
    await writer.drain()
    answer = asyncio.create_task(reader.read(2000))
    try:
        for byte in body[:-1]:  # never the last byte: the body does not end within ``seconds``
            if answer.done():
                break
            writer.write(bytes([byte]))
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            await asyncio.sleep(seconds / len(body))
        return await asyncio.wait_for(answer, 10)
    finally:
        writer.close()


def test_slow_bodies_time_out_with_408_and_hold_no_slot(store):
    settings = ServeSettings(max_concurrency=2, read_timeout=1.0)
    app = em.serve.create_app(store, lm=make_lm(), tokens=[], settings=settings)
    with serving(app) as url:
        port = int(url.rsplit(":", 1)[1])

        async def go():
            slow = [asyncio.create_task(_slow_upload(port, 3.0)) for _ in range(8)]
            await asyncio.sleep(0.3)  # the slow bodies are arriving
            async with httpx.AsyncClient() as client:
                quick = [await client.post(url + "/programs/qa/run", json={"question": f"q{i}"}) for i in range(4)]
                ready = await client.get(url + "/readyz")
            return quick, ready, await asyncio.gather(*slow)

        started = time.monotonic()
        quick, ready, slow = asyncio.run(go())
        assert [r.status_code for r in quick] == [200] * 4  # not 429: uploads hold no slot
        assert ready.json()["in_flight"] == 0
        assert all(answer.startswith(b"HTTP/1.1 408") for answer in slow), slow
        assert b"did not arrive within 1 s" in slow[0]
        assert time.monotonic() - started < 2.9  # answered at the read timeout, not when the client gave up
        metrics = httpx.get(url + "/metrics").text
        assert 'elixirml_rejected_total{reason="body_timeout"} 8' in metrics


def test_the_console_on_its_own_checks_host_origin_and_json(store):
    from elixirml.console import create_console_app

    app = create_console_app(store.url, lm=em.DummyLM({"x": {"answer": "y"}}))
    with serving_console(app) as url:
        assert httpx.get(url + "/catalog").status_code == 200
        assert httpx.get(url + "/catalog", headers={"Host": "evil.example"}).status_code == 400
        inputs = {"inputs": {"question": "x"}}
        cross = httpx.post(url + "/catalog/qa/try", json=inputs, headers={"Origin": "http://evil.example"})
        assert cross.status_code == 403
        plain = httpx.post(url + "/catalog/qa/try", content=json.dumps(inputs), headers={"Content-Type": "text/plain"})
        assert plain.status_code == 415
    assert store.executions(limit=10) == []  # nothing ran, nothing was recorded


# ---------------------------------------------------------------------- issue 34 item 9: save_as is a name
def test_a_job_cannot_save_under_a_name_no_endpoint_could_serve(store):
    """A job's save_as with a path, a NUL or an @ was recorded and saved (found by the h11 attack run)."""
    app = em.serve.create_app(store, lm=make_lm(), tokens=[TOKEN])
    job = {
        "kind": "optimize",
        "program": "qa",
        "rows": [{"question": "q", "answer": "a"}] * 2,
        "inputs": ["question"],
        "metric": "exact_match",
        "optimizer": "bootstrap",
    }
    headers = {**AUTH, "content-type": "application/json"}
    with serving(app, lifespan="on") as url:
        for name in ("../../x", "a\u0000b", "a/b", "qa@2", " qa", ".hidden", "x'; drop table x;--"):
            refused = httpx.post(url + "/jobs", json={**job, "save_as": name}, headers=headers, timeout=10)
            assert refused.status_code == 400, (name, refused.text)
            assert "save_as" in refused.json()["detail"], name
        accepted = httpx.post(url + "/jobs", json={**job, "save_as": "qa-opt.v2_b"}, headers=headers, timeout=10)
        assert accepted.status_code == 201, accepted.text
    assert all(j["spec"].get("save_as") in (None, "qa-opt.v2_b") for j in store.jobs())


def test_a_host_whose_port_is_not_a_number_is_refused(store):
    """``Host: 127.0.0.1:8000@evil.example`` passed the check: the part after ':' was never looked at."""
    app = em.serve.create_app(store, lm=make_lm(), tokens=[TOKEN], jobs=False)
    with serving(app) as url:
        for host in ("127.0.0.1:1@evil.example", "localhost:80evil", "[::1]evil", "[::1]:x"):
            assert httpx.get(url + "/programs", headers={**AUTH, "Host": host}).status_code == 400, host
        for host in ("127.0.0.1:8000", "localhost", "[::1]:8000", "[::1]", "LOCALHOST"):
            assert httpx.get(url + "/programs", headers={**AUTH, "Host": host}).status_code == 200, host


def test_another_port_on_this_machine_is_another_origin(store):
    """A page served by another local app (another port) is cross-origin; a named proxy host keeps working."""
    app = em.serve.create_app(store, lm=make_lm(), tokens=[], settings=ServeSettings(allowed_hosts=("app.example",)))
    with serving(app) as url:
        port = int(url.rsplit(":", 1)[1])
        for origin in (f"http://127.0.0.1:{port + 1}", f"http://localhost:{port + 1}", "http://127.0.0.1"):
            other = httpx.post(url + "/programs/qa/run", json={"question": "x"}, headers={"Origin": origin})
            assert other.status_code == 403, origin
        same = httpx.post(url + "/programs/qa/run", json={"question": "x"}, headers={"Origin": url})
        assert same.status_code == 200
        # behind a TLS proxy the page is https://app.example while the server sees its own address as Host
        proxied = httpx.post(
            url + "/programs/qa/run", json={"question": "x"}, headers={"Origin": "https://app.example"}
        )
        assert proxied.status_code == 200


def test_a_job_names_fields_not_attributes(store):
    """``"field": "__class__"`` was recorded, ran, and "succeeded" with score 0 (found by the h11 attack run)."""
    app = em.serve.create_app(store, lm=make_lm(), tokens=[TOKEN])
    job = {
        "kind": "evaluate",
        "program": "qa",
        "rows": [{"question": "q", "answer": "a"}] * 2,
        "inputs": ["question"],
        "metric": "exact_match",
    }
    headers = {**AUTH, "content-type": "application/json"}
    with serving(app, lifespan="on") as url:
        for where, value in (("field", "__class__"), ("pred_field", "_private"), ("field", "a.b"), ("field", "1x")):
            refused = httpx.post(url + "/jobs", json={**job, where: value}, headers=headers, timeout=10)
            assert refused.status_code == 400, (where, value, refused.text)
            assert where in refused.json()["detail"], (where, value)
        refused = httpx.post(
            url + "/jobs", json={**job, "inputs": ["question", "__dict__"]}, headers=headers, timeout=10
        )
        assert refused.status_code == 400 and "inputs[1]" in refused.json()["detail"]
        accepted = httpx.post(url + "/jobs", json={**job, "field": "answer", "pred_field": "answer"}, headers=headers)
        assert accepted.status_code == 201, accepted.text
    assert [j["spec"].get("field") for j in store.jobs()] == ["answer"]
