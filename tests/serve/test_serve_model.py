"""The first call is not a surprise: the server loads its local model at start-up, a script says it is loading."""

from __future__ import annotations

import json
import sys
import threading
import time
import types

import pytest

import elixirml as em
from elixirml.lm import _local

pytest.importorskip("fastapi", reason="serving needs the 'serve' extra")
from fastapi.testclient import TestClient


class FakeLlama:
    """Stands in for llama_cpp.Llama: counts loads, answers JSON."""

    loads = 0
    gate: threading.Event | None = None

    def __init__(self, **kwargs):
        if FakeLlama.gate is not None:
            assert FakeLlama.gate.wait(10), "the test never let the model finish loading"
        FakeLlama.loads += 1

    def create_chat_completion(self, messages, **kwargs):
        return {
            "choices": [{"message": {"content": json.dumps({"answer": "loaded"})}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2},
        }

    def close(self):
        pass


@pytest.fixture
def fake_llama(monkeypatch, tmp_path):
    """A fresh model registry over a fake llama.cpp, and a GGUF file that is never read."""
    module = types.ModuleType("llama_cpp")
    module.Llama = FakeLlama
    monkeypatch.setitem(sys.modules, "llama_cpp", module)
    monkeypatch.setattr(_local, "_REGISTRY", _local._ModelRegistry())
    monkeypatch.setattr(FakeLlama, "loads", 0)
    monkeypatch.setattr(FakeLlama, "gate", None)
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF")
    return path


def test_the_first_call_of_a_script_says_once_that_it_is_loading_the_model(fake_llama, capsys):
    lm = em.LM("local", model_path=fake_llama)
    program = em.Predict("question -> answer")
    with em.context(lm=lm):
        assert program(question="first").answer == "loaded"
        assert program(question="second").answer == "loaded"
    em.LM("local", model_path=fake_llama).load_model()  # a second client of the same model: already in memory
    captured = capsys.readouterr()
    assert captured.out == ""  # stdout stays the program's
    assert captured.err.count("Loading the local model model.gguf") == 1, captured.err
    assert FakeLlama.loads == 1


def test_serve_loads_the_local_model_at_start_up_and_is_ready_only_then(fake_llama, tmp_path):
    store = em.Store(f"sqlite:///{tmp_path / 'serve.db'}")
    store.save(em.Predict("question -> answer"), "qa")
    FakeLlama.gate = threading.Event()
    lm = em.LM("local", model_path=fake_llama)
    app = em.serve.create_app(store, lm=lm, tokens=[], jobs=False)
    with TestClient(app, base_url="http://localhost") as client:
        waiting = client.get("/readyz")
        assert waiting.status_code == 503 and waiting.json()["model"] == "loading"
        assert client.get("/healthz").status_code == 200  # up, not ready
        assert not lm.model_loaded
        FakeLlama.gate.set()
        deadline = time.monotonic() + 10
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the model never finished loading"
            time.sleep(0.02)
        assert client.get("/readyz").json()["model"] == "loaded" and lm.model_loaded
        assert FakeLlama.loads == 1  # before any request
        reply = client.post("/programs/qa/run", json={"question": "x"})
        assert reply.status_code == 200 and reply.json()["outputs"]["answer"] == "loaded"
        assert FakeLlama.loads == 1
    store.close()


def test_a_model_that_fails_to_load_keeps_the_server_unready_and_says_why(fake_llama, tmp_path, monkeypatch):
    def broken(**kwargs):
        raise ValueError("not a GGUF file")

    monkeypatch.setattr(sys.modules["llama_cpp"], "Llama", broken)
    store = em.Store(f"sqlite:///{tmp_path / 'broken.db'}")
    app = em.serve.create_app(store, lm=em.LM("local", model_path=fake_llama), tokens=[], jobs=False)
    with TestClient(app, base_url="http://localhost") as client:
        deadline = time.monotonic() + 10
        while (body := client.get("/readyz").json())["model"] == "loading":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert client.get("/readyz").status_code == 503
        assert body["model"] == "failed: ValueError: not a GGUF file" and body["ready"] is False
    store.close()


def test_a_server_without_a_local_model_is_ready_at_once(tmp_path):
    store = em.Store(f"sqlite:///{tmp_path / 'remote.db'}")
    app = em.serve.create_app(store, lm=em.FunctionLM(lambda m, s: {"answer": "a"}), tokens=[], jobs=False)
    with TestClient(app, base_url="http://localhost") as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["model"] is None
    store.close()
