"""em.serve: every endpoint, validation, SSE framing, deploy/canary/rollback, reload, auth, limits."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

import elixirml as em
from elixirml.errors import ConfigurationError
from elixirml.serve._state import ServeSettings

pytest.importorskip("fastapi")

ANSWER = "[[ ## answer ## ]]\n{}\n\n[[ ## completed ## ]]"


def question_of(messages) -> str:
    text = messages[-1]["content"]
    return text.split("[[ ## question ## ]]")[-1].split("\n\n")[0].strip()


def make_lm(delay: float = 0.0, prefix: str = "A:") -> em.FunctionLM:
    async def answer(messages, settings):
        if delay:
            await asyncio.sleep(delay)
        q = question_of(messages)
        if q == "explode":
            raise em.errors.ProviderResponseError("upstream broke")
        return ANSWER.format(f"{prefix} {q}")

    return em.FunctionLM(answer)


@pytest.fixture
def store(tmp_path):
    s = em.Store(f"sqlite:///{tmp_path / 'serve.db'}")
    s.save(em.Predict("question -> answer"), "qa")
    s.save(em.Predict("question -> answer", config={"temperature": 0.2}), "qa")
    s.save(em.Predict("context, question -> answer: int"), "typed")
    yield s
    s.close()


def client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost")


def run(coro):
    return asyncio.run(coro)


def sse_events(text: str) -> list[tuple[str, dict]]:
    assert text.endswith("\n\n")
    events = []
    for block in text.strip("\n").split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        assert set(fields) == {"id", "event", "data"}, block
        events.append((fields["event"], json.loads(fields["data"])))
    return events


def test_import_elixirml_does_not_import_fastapi():
    import subprocess

    code = "import sys, elixirml as em; assert 'fastapi' not in sys.modules; em.serve.create_app; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr


def test_run_answers_with_outputs_version_usage_and_trace(store):
    app = em.serve.create_app(store, lm=make_lm(), tokens=[])
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"

    async def go():
        async with client(app) as c:
            r = await c.post(
                "/programs/qa/run",
                json={"question": "Where?"},
                headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"},
            )
            return r

    r = run(go())
    assert r.status_code == 200
    body = r.json()
    assert body["outputs"] == {"answer": "A: Where?"}
    assert body["version"] == 2 and r.headers["x-program-version"] == "2"
    assert body["usage"]["calls"] == 1 and body["usage"]["total_tokens"] > 0
    assert body["latency"] > 0
    assert body["trace_id"] == trace_id  # the caller's trace continues


def test_only_named_programs_and_pinned_versions(store):
    app = em.serve.create_app(store, programs=["qa@1"], lm=make_lm(), tokens=[])

    async def go():
        async with client(app) as c:
            return (
                await c.get("/programs"),
                await c.post("/programs/qa/run", json={"question": "x"}),
                await c.post("/programs/typed/run", json={"question": "x", "context": "c"}),
            )

    listing, ok, missing = run(go())
    assert [p["name"] for p in listing.json()["programs"]] == ["qa"]
    assert ok.json()["version"] == 1
    assert missing.status_code == 404 and "typed" in missing.json()["detail"]


def test_validation_errors_list_each_field_and_are_4xx(store):
    app = em.serve.create_app(store, lm=make_lm(), tokens=[])

    async def go():
        async with client(app) as c:
            bad = await c.post("/programs/typed/run", json={"context": 3, "extra": 1})
            not_json = await c.post("/programs/qa/run", content=b"{nope", headers={"content-type": "application/json"})
            not_object = await c.post("/programs/qa/run", json=["x"])
            unknown = await c.post("/programs/nope/run", json={})
            return bad, not_json, not_object, unknown

    bad, not_json, not_object, unknown = run(go())
    assert bad.status_code == 422
    problems = {(tuple(d["loc"]), d["type"]) for d in bad.json()["detail"]}
    assert problems == {
        (("body", "context"), "string_type"),
        (("body", "question"), "missing"),
        (("body", "extra"), "extra_forbidden"),
    }
    assert not_json.status_code == 400 and "not valid JSON" in not_json.json()["detail"]
    assert not_object.status_code == 422
    assert unknown.status_code == 404


def test_provider_failure_is_a_gateway_error_with_version(store):
    app = em.serve.create_app(store, lm=make_lm(), tokens=[])

    async def go():
        async with client(app) as c:
            return await c.post("/programs/qa/run", json={"question": "explode"}), await c.get("/metrics")

    r, metrics = run(go())
    assert r.status_code == 502
    assert r.json()["type"] == "ProviderResponseError" and r.headers["x-program-version"] == "2"
    assert 'elixirml_request_errors_total{program="qa",version="2"} 1' in metrics.text


def test_stream_frames_status_chunks_then_prediction(store):
    app = em.serve.create_app(store, lm=make_lm(), tokens=[])

    async def go():
        async with client(app) as c:
            return await c.post("/programs/qa/stream", json={"question": "stream me"}), await c.post(
                "/programs/qa/stream", json={"question": "explode"}
            )

    r, failed = run(go())
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["x-program-version"] == "2"
    events = sse_events(r.text)
    kinds = [e for e, _ in events]
    assert kinds[0] == "status" and events[0][1]["kind"] == "accepted"
    assert "chunk" in kinds and kinds[-1] == "prediction"
    streamed = "".join(d["text"] for e, d in events if e == "chunk" and d["field"] == "answer")
    assert streamed.strip() == "A: stream me"
    assert events[-1][1]["outputs"] == {"answer": "A: stream me"} and events[-1][1]["version"] == 2
    failed_events = sse_events(failed.text)
    assert failed_events[-1][0] == "error" and failed_events[-1][1]["status"] == 502


def test_batch_has_errors_per_item(store):
    app = em.serve.create_app(store, lm=make_lm(), tokens=[], settings=ServeSettings(max_batch=3))

    async def go():
        async with client(app) as c:
            ok = await c.post("/programs/qa/batch", json=[{"question": "a"}, {"q": 1}, {"question": "explode"}])
            big = await c.post("/programs/qa/batch", json=[{"question": "a"}] * 4)
            return ok, big

    ok, big = run(go())
    results = ok.json()["results"]
    assert results[0]["outputs"] == {"answer": "A: a"}
    assert results[1]["error"]["status"] == 422
    assert results[2]["error"]["status"] == 502
    assert ok.json()["errors"] == 2
    assert big.status_code == 413


def test_program_listing_versions_health_and_metrics(store):
    app = em.serve.create_app(store, lm=make_lm(), tokens=[])

    async def go():
        async with client(app) as c:
            await c.post("/programs/qa/run", json={"question": "x"})
            return [
                await c.get(p)
                for p in ("/programs", "/programs/qa", "/programs/qa/versions", "/healthz", "/readyz", "/metrics")
            ]

    programs, one, versions, health, ready, metrics = run(go())
    assert {p["name"] for p in programs.json()["programs"]} == {"qa", "typed"}
    assert one.json()["live"]["version"] == 2 and one.json()["live"]["requests"] == 1
    assert one.json()["inputs"] == ["question"] and one.json()["outputs"] == ["answer"]
    rows = versions.json()["versions"]
    assert [(r["number"], r["live"]) for r in rows] == [(1, False), (2, True)]
    assert health.json() == {"status": "ok"} and ready.status_code == 200
    text = metrics.text
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "# TYPE elixirml_request_duration_seconds histogram" in text
    assert 'elixirml_request_duration_seconds_count{program="qa",version="2"} 1' in text
    assert 'elixirml_request_duration_seconds_bucket{program="qa",version="2",le="+Inf"} 1' in text
    assert 'elixirml_tokens_total{program="qa",version="2",kind="prompt"}' in text
    assert 'elixirml_live_version{program="qa"} 2' in text


def test_openapi_has_each_programs_real_schemas(store):
    app = em.serve.create_app(store, lm=make_lm(), tokens=[])

    async def go():
        async with client(app) as c:
            return (await c.get("/openapi.json")).json()

    doc = run(go())
    schemas = doc["components"]["schemas"]
    assert schemas["TypedInputs"]["required"] == ["context", "question"]
    assert schemas["TypedOutputs"]["properties"]["answer"]["type"] == "integer"
    run_op = doc["paths"]["/programs/typed/run"]["post"]
    assert run_op["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/TypedInputs"
    }
    assert "/programs/qa/stream" in doc["paths"] and "/programs/qa/batch" in doc["paths"]


def test_deploy_canary_rollback_with_per_version_counts(store):
    app = em.serve.create_app(store, lm=make_lm(), tokens=[])

    async def go():
        async with client(app) as c:
            r = await c.post("/programs/qa/deploy", json={"version": 1})
            assert r.status_code == 200 and r.json()["live"] == 1
            assert (await c.post("/programs/qa/run", json={"question": "x"})).json()["version"] == 1
            r = await c.post("/programs/qa/deploy", json={"version": 2, "traffic": 0.5})
            assert r.json()["canary"] == 2 and r.json()["live"] == 1
            seen = [(await c.post("/programs/qa/run", json={"question": "x"})).json()["version"] for _ in range(60)]
            assert set(seen) == {1, 2}
            info = (await c.get("/programs/qa")).json()
            assert info["canary"]["version"] == 2 and info["canary"]["traffic"] == 0.5
            assert info["versions"]["1"]["requests"] + info["versions"]["2"]["requests"] == 61
            assert info["canary"]["requests"] == seen.count(2)
            r = await c.post("/programs/qa/rollback", json={})
            assert r.json()["canary"] is None and r.json()["live"] == 1
            r = await c.post("/programs/qa/rollback", json={})  # back to v2, live before the deploy of v1
            assert r.json()["live"] == 2
            assert (await c.post("/programs/qa/rollback", json={})).status_code == 409
            assert (await c.post("/programs/qa/deploy", json={"version": 9})).status_code == 404
            assert (await c.post("/programs/qa/deploy", json={"version": 1, "traffic": 1.5})).status_code == 422
            assert (await c.post("/programs/nope/rollback", json={})).status_code == 404

    run(go())


def test_swap_and_canary_under_load_fail_no_request(store):
    app = em.serve.create_app(store, lm=make_lm(delay=0.02), tokens=[], settings=ServeSettings(max_concurrency=500))

    async def go():
        async with client(app) as c:
            slow = asyncio.create_task(c.post("/programs/qa/run", json={"question": "slow"}))
            await asyncio.sleep(0.005)
            await c.post("/programs/qa/deploy", json={"version": 1})  # the slow request started on v2
            first = await slow
            assert first.status_code == 200 and first.json()["version"] == 2

            answers: list[tuple[int, httpx.Response]] = []
            seen: set[int] = set()
            changing = True

            async def traffic(lane: int) -> None:
                # requests keep arriving, 8 at a time, for as long as the versions change
                i = lane
                while changing or i < 80:
                    response = await c.post("/programs/qa/run", json={"question": f"q{i}"})
                    answers.append((i, response))
                    if response.status_code == 200:
                        seen.add(response.json()["version"])
                    i += 8

            async def served(version: int) -> None:
                # a version is only left once requests were answered by it (however slow this machine is)
                seen.discard(version)
                for _ in range(2000):
                    if version in seen:
                        return
                    await asyncio.sleep(0.005)
                raise AssertionError(f"no request was answered by version {version} while it was live")

            async def deploys() -> None:
                nonlocal changing
                await served(1)
                for body, version in (({"version": 2}, 2), ({"version": 1, "traffic": 0.3}, 1), ({"version": 1}, 1)):
                    assert (await c.post("/programs/qa/deploy", json=body)).status_code == 200
                    await served(version)
                assert (await c.post("/programs/qa/rollback", json={})).status_code == 200
                await asyncio.sleep(0.05)
                changing = False

            await asyncio.gather(*(traffic(lane) for lane in range(8)), deploys())
            assert len(answers) >= 80
            assert all(r.status_code == 200 for _, r in answers)
            assert all(r.json()["outputs"]["answer"] == f"A: q{i}" for i, r in answers)
            assert {r.json()["version"] for _, r in answers} == {1, 2}
            assert all(r.headers["x-program-version"] == str(r.json()["version"]) for _, r in answers)

    run(go())


MODULE_V1 = """
import elixirml as em

PREFIX = "{prefix}"

class Shout(em.Module):
    def __init__(self):
        super().__init__()
        self.answer = em.Predict("question -> answer")

    async def aforward(self, question: str):
        pred = await self.answer.acall(question=question)
        return em.Prediction(answer=PREFIX + pred.answer)
"""


def test_reload_succeeds_and_failed_reloads_keep_the_old_code(store, tmp_path, monkeypatch):
    package = tmp_path / "servepkg_reload"
    package.mkdir()
    (package / "__init__.py").write_text("")
    source = package / "prog.py"
    source.write_text(textwrap.dedent(MODULE_V1.format(prefix="v1:")))
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    prog = importlib.import_module("servepkg_reload.prog")
    store.save(prog.Shout(), "shout")
    for key in [k for k in sys.modules if k.startswith("servepkg_reload")]:
        del sys.modules[key]  # a fresh server process: the module is imported only because it is allowed

    app = em.serve.create_app(store, programs=["shout"], lm=make_lm(), tokens=[], allow_modules=["servepkg_reload"])
    blocked = em.serve.create_app(store, programs=["qa"], lm=make_lm(), tokens=[])

    async def ask(c):
        r = await c.post("/programs/shout/run", json={"question": "hi"})
        return r.json()["outputs"]["answer"]

    async def go():
        async with client(app) as c:
            assert await ask(c) == "v1:A: hi"
            source.write_text(textwrap.dedent(MODULE_V1.format(prefix="v2:")))
            r = await c.post("/programs/shout/deploy", json={"reload": True})
            assert r.status_code == 200 and r.json()["code"] == "reloaded #1"
            assert await ask(c) == "v2:A: hi"

            source.write_text("def broken(:\n")
            r = await c.post("/programs/shout/deploy", json={"reload": True})
            assert r.status_code == 422 and "SyntaxError" in r.json()["detail"]
            assert "old code keeps serving" in r.json()["detail"]
            assert await ask(c) == "v2:A: hi"

            source.write_text(
                textwrap.dedent(MODULE_V1.format(prefix="v3:")).replace(
                    "super().__init__()", "super().__init__()\n        raise RuntimeError('cannot build')"
                )
            )
            r = await c.post("/programs/shout/deploy", json={"reload": True})
            assert r.status_code == 422 and "does not accept the stored state" in r.json()["detail"]
            assert "cannot build" in r.json()["detail"]
            assert await ask(c) == "v2:A: hi"
            assert sys.modules["servepkg_reload.prog"].PREFIX == "v2:"  # the module in use was put back

        async with client(blocked) as c:
            r = await c.post("/programs/shout/deploy", json={"reload": True})
            assert r.status_code == 422 and "--allow-module servepkg_reload" in r.json()["detail"]

    run(go())


def test_a_stored_class_outside_the_allowed_modules_is_not_imported(store, tmp_path, monkeypatch):
    package = tmp_path / "servepkg_blocked"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "prog.py").write_text(textwrap.dedent(MODULE_V1.format(prefix="x")))
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    store.save(importlib.import_module("servepkg_blocked.prog").Shout(), "blocked")
    for key in [k for k in sys.modules if k.startswith("servepkg_blocked")]:
        del sys.modules[key]
    app = em.serve.create_app(store, lm=make_lm(), tokens=[])
    assert "servepkg_blocked.prog" not in sys.modules
    assert "--allow-module servepkg_blocked" in app.state.serve.unavailable["blocked"]
    with pytest.raises(em.errors.LoadError, match="allow-module"):
        em.serve.create_app(store, programs=["blocked"], lm=make_lm(), tokens=[])


def test_bearer_tokens_are_required_and_never_logged(store, caplog, monkeypatch):
    secret = "s3cret-token-value-1234"
    monkeypatch.setenv("ELIXIRML_SERVE_TOKENS", f"{secret},another-token-5678")
    app = em.serve.create_app(store, lm=make_lm())
    assert secret not in repr(app.state.serve) and len(app.state.serve.tokens) == 2

    async def go():
        async with client(app) as c:
            missing = await c.post("/programs/qa/run", json={"question": "x"})
            wrong = await c.post("/programs/qa/run", json={"question": "x"}, headers={"Authorization": "Bearer nope"})
            good = await c.post(
                "/programs/qa/run", json={"question": "x"}, headers={"Authorization": f"Bearer {secret}"}
            )
            chat = await c.post("/v1/chat/completions", json={"model": "qa", "messages": []})
            health = await c.get("/healthz")
            return missing, wrong, good, chat, health

    with caplog.at_level(logging.DEBUG):
        missing, wrong, good, chat, health = run(go())
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert wrong.status_code == 401 and good.status_code == 200
    assert chat.status_code == 401 and health.status_code == 200
    assert secret not in caplog.text and secret not in wrong.text + missing.text
    with pytest.raises(ConfigurationError, match="at least 8"):
        em.serve.create_app(store, tokens=["short"])


def test_non_loopback_bind_requires_tokens(store):
    app = em.serve.create_app(store, lm=make_lm(), tokens=[])
    with pytest.raises(ConfigurationError, match="requires bearer tokens"):
        em.serve.run(app, host="0.0.0.0", port=0)


def test_body_limit_and_per_token_concurrency_limit(store):
    settings = ServeSettings(max_body_bytes=200, max_concurrency=2, retry_after=3)
    app = em.serve.create_app(
        store, lm=make_lm(delay=0.2), tokens=["token-aaaaaaaa", "token-bbbbbbbb"], settings=settings
    )
    a = {"Authorization": "Bearer token-aaaaaaaa"}
    b = {"Authorization": "Bearer token-bbbbbbbb"}

    async def go():
        async with client(app) as c:
            big = await c.post("/programs/qa/run", json={"question": "x" * 500}, headers=a)

            async def chunks():
                for _ in range(5):
                    yield b"x" * 100

            streamed = await c.post(
                "/programs/qa/run", content=chunks(), headers={**a, "content-type": "application/json"}
            )
            busy = [
                asyncio.create_task(c.post("/programs/qa/run", json={"question": "x"}, headers=a)) for _ in range(2)
            ]
            await asyncio.sleep(0.05)
            refused = await c.post("/programs/qa/run", json={"question": "x"}, headers=a)
            other = asyncio.create_task(c.post("/programs/qa/run", json={"question": "x"}, headers=b))
            done = await asyncio.gather(*busy, other)
            after = await c.post("/programs/qa/run", json={"question": "x"}, headers=a)
            metrics = await c.get("/metrics")
            return big, streamed, refused, done, after, metrics

    big, streamed, refused, done, after, metrics = run(go())
    assert big.status_code == 413 and streamed.status_code == 413
    assert refused.status_code == 429 and refused.headers["retry-after"] == "3"
    assert [r.status_code for r in done] == [200, 200, 200]  # the other token was not limited
    assert after.status_code == 200
    assert 'elixirml_rejected_total{reason="too_many_requests"} 1' in metrics.text


def test_request_span_continues_the_callers_traceparent_and_parents_program_spans(store):
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from elixirml.callbacks import OpenTelemetryCallback

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    em.configure(callbacks=[OpenTelemetryCallback(provider)])
    app = em.serve.create_app(store, lm=make_lm(), tokens=[], tracer_provider=provider)
    trace_id, parent_id = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"

    async def go():
        async with client(app) as c:
            headers = {"traceparent": f"00-{trace_id}-{parent_id}-01"}
            return await c.post("/programs/qa/run", json={"question": "x"}, headers=headers)

    assert run(go()).json()["trace_id"] == trace_id
    spans = {s.name: s for s in memory.get_finished_spans()}
    server = spans["run qa"]
    assert format(server.context.trace_id, "032x") == trace_id
    assert format(server.parent.span_id, "016x") == parent_id
    assert server.attributes["elixirml.program.version"] == 2
    module = spans["module Predict"]
    assert module.parent.span_id == server.context.span_id


def test_the_app_serves_jobs_and_the_console_and_refuses_the_console_beside_tokens(store):
    from fastapi.testclient import TestClient

    app = em.serve.create_app(store, lm=make_lm(), tokens=[])
    with TestClient(app, base_url="http://localhost") as http:  # the lifespan starts the job manager
        job = http.post(
            "/jobs",
            json={
                "kind": "evaluate",
                "program": "qa@1",
                "rows": [{"question": "x", "answer": "A: x"}],
                "inputs": ["question"],
                "metric": "exact_match",
            },
        )
        assert job.status_code == 201, job.text
        for _ in range(200):
            state = http.get(f"/jobs/{job.json()['id']}").json()
            if state["state"] in ("succeeded", "failed"):
                break
            time.sleep(0.05)
        assert state["state"] == "succeeded", state
        assert state["best_score"] == 100.0
        page = http.get("/catalog")
        assert page.status_code == 200 and "qa" in page.text and "<html" in page.text.lower()
        assert http.get("/programs").json()["programs"]  # the API still answers its own paths

    guarded = em.serve.create_app(store, lm=make_lm(), tokens=["s3cret-token-123456"])
    with TestClient(guarded, base_url="http://localhost") as http:
        assert http.get("/catalog").status_code == 401  # every path needs the token
        login = {"Authorization": "Bearer s3cret-token-123456"}
        assert http.get("/catalog", headers=login).status_code == 404  # no console beside tokens
        assert http.get("/jobs").status_code == 401
    with pytest.raises(ConfigurationError, match="console has no login"):
        em.serve.create_app(store, lm=make_lm(), tokens=["s3cret-token-123456"], console=True)


# ---------------------------------------------------------------- the interface of multi-step programs
NEWCOMER = """
import elixirml as em


class Summarize(em.Signature):
    \"\"\"Summarize the text.\"\"\"

    text: str = em.InputField()
    summary: str = em.OutputField()


class Headline(em.Signature):
    \"\"\"Write a headline for the summary.\"\"\"

    summary: str = em.InputField()
    title: str = em.OutputField()
    words: int = em.OutputField(ge=1)


class Article(em.Program):
    def __init__(self):
        super().__init__()
        self.summarize = em.Predict(Summarize)
        self.headline = em.ChainOfThought(Headline)

    def forward(self, text: str, max_words: int = 12) -> em.Prediction:
        summary = self.summarize(text=text)
        head = self.headline(summary=summary.summary)
        return self.tidy(head, summary)

    def tidy(self, head, summary):
        return em.Prediction(headline=head.title.strip(), words=head.words, summary=summary.summary)
"""


def multi_step_lm() -> em.FunctionLM:
    """Every predictor's outputs, in the form its prompt asks for."""
    outputs = {"summary": "A short text.", "reasoning": "r", "title": " Short ", "words": 1}
    outputs |= {"answer": "Paris.", "confidence": 0.9}

    def answer(messages, settings):
        system = messages[0]["content"]
        wanted = {k: v for k, v in outputs.items() if f"`{k}`" in system}
        return json.dumps(wanted) if "single JSON object" in system else wanted

    return em.FunctionLM(answer)


def test_multi_step_programs_are_served_with_the_fields_they_take_and_return(tmp_path):
    from elixirml.program import import_source_file

    examples = Path(__file__).resolve().parents[2] / "examples" / "qa_program.py"
    (tmp_path / "newcomer.py").write_text(NEWCOMER)
    store = em.Store(f"sqlite:///{tmp_path / 'multi.db'}")
    store.save(import_source_file(tmp_path / "newcomer.py").Article(), "article")
    qa = import_source_file(examples)
    store.save(qa.QAProgram(), "qa")
    store.save(qa.QAProgram().with_variables(reasoning_strategy="react"), "qa-react")
    app = em.serve.create_app(
        store, lm=multi_step_lm(), tokens=[], allow_paths=[tmp_path / "newcomer.py", examples], console=True
    )

    async def go():
        async with client(app) as c:
            infos = {n: (await c.get(f"/programs/{n}")).json() for n in ("article", "qa", "qa-react")}
            doc = (await c.get("/openapi.json")).json()
            forms = {n: (await c.get(f"/catalog/{n}/try")).text for n in ("article", "qa")}
            ran = (await c.post("/programs/article/run", json={"text": "Some long text."})).json()
            asked = (await c.post("/programs/qa/run", json={"context": "Paris.", "question": "Where?"})).json()
            return infos, doc, forms, ran, asked

    infos, doc, forms, ran, asked = run(go())
    assert infos["article"]["inputs"] == ["text", "max_words"]
    assert infos["article"]["outputs"] == ["headline", "words", "summary"]  # not the last predictor's fields
    assert infos["qa"]["inputs"] == ["context", "question"] and infos["qa"]["outputs"] == ["answer", "confidence"]
    assert infos["qa-react"]["outputs"] == ["answer", "confidence"]
    # what the interface says is what a run returns
    assert list(ran["outputs"]) == infos["article"]["outputs"] and ran["outputs"]["headline"] == "Short"
    assert list(asked["outputs"]) == infos["qa"]["outputs"] and asked["outputs"]["answer"] == "Paris"
    schemas = doc["components"]["schemas"]
    assert schemas["ArticleInputs"]["required"] == ["text"]
    max_words = schemas["ArticleInputs"]["properties"]["max_words"]
    assert max_words == {"default": 12, "title": "Max Words", "type": "integer"}
    outputs = schemas["ArticleOutputs"]["properties"]
    assert list(outputs) == ["headline", "words", "summary"]
    assert outputs["headline"]["type"] == "string"
    assert outputs["words"] == {"minimum": 1, "title": "Words", "type": "integer"}
    assert list(schemas["QaOutputs"]["properties"]) == ["answer", "confidence"]
    assert schemas["QaOutputs"]["properties"]["confidence"]["maximum"] == 1.0
    assert 'name="text"' in forms["article"] and 'name="max_words"' in forms["article"]
    assert 'name="max_words" data-type="integer"' in forms["article"]  # a number field, as its annotation says
    assert 'name="context"' in forms["qa"] and 'name="question"' in forms["qa"]
    store.close()
