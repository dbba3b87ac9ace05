"""em.serve on a real uvicorn on 127.0.0.1: the official openai client, `elixirml deploy`, a SIGTERM drain."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

import elixirml as em
from elixirml.testing import FakeLMServer

uvicorn = pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")

ANSWER = "[[ ## answer ## ]]\n{}\n\n[[ ## completed ## ]]"


def answer(messages, settings):
    question = messages[-1]["content"].split("[[ ## question ## ]]")[-1].split("\n\n")[0].strip()
    return ANSWER.format(f"The answer to {question}")


@contextlib.contextmanager
def live_server(app):
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
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
    s = em.Store(f"sqlite:///{tmp_path / 'live.db'}")
    s.save(em.Predict("question -> answer"), "qa")
    s.save(em.Predict("question -> answer", config={"temperature": 0.1}), "qa")
    s.save(em.Predict("context, question -> answer"), "rag")
    yield s
    s.close()


def test_openai_client_plain_and_streaming(store):
    app = em.serve.create_app(store, lm=em.FunctionLM(answer), tokens=["client-token-123"])
    with live_server(app) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="client-token-123", max_retries=0)
        reply = client.chat.completions.create(model="qa", messages=[{"role": "user", "content": "life"}])
        assert reply.choices[0].message.content == "The answer to life"
        assert reply.choices[0].finish_reason == "stop" and reply.usage.total_tokens > 0
        assert reply.system_fingerprint == "qa@v2"

        pieces = []
        stream = client.chat.completions.create(
            model="qa",
            messages=[{"role": "user", "content": "streams"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        usage = None
        for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                pieces.append(choice.delta.content or "")
        assert "".join(pieces) == "The answer to streams"
        assert usage is not None and usage.total_tokens > 0

        multi = client.chat.completions.create(
            model="rag", messages=[{"role": "user", "content": '{"context": "c", "question": "json"}'}]
        )
        assert multi.choices[0].message.content == "The answer to json"

        with pytest.raises(openai.UnprocessableEntityError):
            client.chat.completions.create(model="rag", messages=[{"role": "user", "content": "plain text"}])
        with pytest.raises(openai.BadRequestError, match="temperature"):
            client.chat.completions.create(model="qa", messages=[{"role": "user", "content": "x"}], temperature=0.5)
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=url + "/v1", api_key="wrong-token-xyz", max_retries=0).chat.completions.create(
                model="qa", messages=[{"role": "user", "content": "x"}]
            )
        assert [m.id for m in client.models.list()] == ["qa", "rag"]


def test_cli_deploy_and_rollback_against_a_running_server(store, monkeypatch):
    from typer.testing import CliRunner

    from elixirml.cli import app as cli

    monkeypatch.setenv("ELIXIRML_SERVE_TOKEN", "deploy-token-123")
    server_app = em.serve.create_app(store, lm=em.FunctionLM(answer), tokens=["deploy-token-123"])
    with live_server(server_app) as url:
        runner = CliRunner()
        out = runner.invoke(cli, ["deploy", "qa@1", "--server", url])
        assert out.exit_code == 0, out.output
        assert "v1 is live" in out.output
        r = httpx.post(
            url + "/programs/qa/run", json={"question": "x"}, headers={"Authorization": "Bearer deploy-token-123"}
        )
        assert r.headers["x-program-version"] == "1"
        out = runner.invoke(cli, ["deploy", "qa@2", "--server", url, "--traffic", "0.25"])
        assert out.exit_code == 0 and "canary v2 gets 25%" in out.output
        out = runner.invoke(cli, ["deploy", "qa", "--server", url, "--rollback"])
        assert out.exit_code == 0 and "ended the canary" in out.output
        out = runner.invoke(cli, ["deploy", "qa@7", "--server", url])
        assert out.exit_code == 2 and "404" in out.output


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def served_subprocess(tmp_path, lm_url: str, drain_timeout: float):
    """`elixirml serve` in a child process over a store with one program; yields its base URL and process."""
    url = f"sqlite:///{tmp_path / 'drain.db'}"
    store = em.Store(url)
    store.save(em.Predict("question -> answer"), "qa")
    store.close()
    port = _free_port()
    env = {**os.environ, "OPENAI_BASE_URL": lm_url, "OPENAI_API_KEY": "fake-key"}
    command = [sys.executable, "-m", "elixirml", "--store", url, "--lm", "openai/fake"]
    command += ["serve", "--port", str(port), "--drain-timeout", str(drain_timeout), "--log-level", "warning"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _call_in_thread(base: str, result: dict, question: str) -> threading.Thread:
    def call():
        try:
            result["response"] = httpx.post(base + "/programs/qa/run", json={"question": question}, timeout=15)
        except httpx.HTTPError as exc:
            result["error"] = exc

    caller = threading.Thread(target=call)
    caller.start()
    return caller


def test_sigterm_drains_requests_in_flight(tmp_path):
    with (
        FakeLMServer(lambda body: ANSWER.format("drained"), latency=1.0) as lm_server,
        served_subprocess(tmp_path, lm_server.base_url, drain_timeout=10) as (base, proc),
    ):
        result: dict = {}
        caller = _call_in_thread(base, result, "drained?")
        time.sleep(0.4)  # the request is in flight, waiting on the LM
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        with pytest.raises(httpx.ConnectError):
            httpx.get(base + "/healthz", timeout=1)  # no new connections while draining
        caller.join(15)
        response = result["response"]
        assert response.status_code == 200 and response.json()["outputs"] == {"answer": "drained"}
        assert proc.wait(15) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once drained


def test_sigterm_drain_stops_at_its_deadline(tmp_path):
    with (
        FakeLMServer(lambda body: ANSWER.format("late"), latency=8.0) as lm_server,
        served_subprocess(tmp_path, lm_server.base_url, drain_timeout=1) as (base, proc),
    ):
        result: dict = {}
        caller = _call_in_thread(base, result, "too late?")  # a question no other test asks: not cached
        time.sleep(0.4)
        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(6) in (0, -signal.SIGTERM)
        assert time.monotonic() - began < 5  # it did not wait for the 8 s answer
        caller.join(15)
        assert "error" in result or result["response"].status_code >= 500
