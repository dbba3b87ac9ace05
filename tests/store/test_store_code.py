"""Programs defined in scripts and files: saved, then loaded, run and served by new processes."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import time

import httpx
import pytest

import elixirml as em
from elixirml.errors import ConfigurationError, LoadError
from elixirml.testing import FakeLMServer

SCRIPT = textwrap.dedent(
    """
    import os

    import elixirml as em


    class QAProgram(em.Program):
        def __init__(self):
            super().__init__()
            self.answer = em.Predict("question -> answer")

        def forward(self, question):
            return self.answer(question=question)


    if __name__ == "__main__":
        print("THE DEMO RAN")
        em.Store().save(QAProgram(), "qa")
    """
)
ANSWER = "[[ ## answer ## ]]\n{}\n\n[[ ## completed ## ]]"


def _answer(body):
    question = body["messages"][-1]["content"].split("[[ ## question ## ]]")[-1].split("\n\n")[0].strip()
    return ANSWER.format(f"about {question}")


@pytest.fixture
def project(tmp_path):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "qa_script.py").write_text(SCRIPT)
    rows = [{"question": f"q{i}", "answer": f"about q{i}"} for i in range(3)]
    (folder / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with FakeLMServer(_answer) as lm:
        env = {
            **os.environ,
            "ELIXIRML_STORE": f"sqlite:///{tmp_path / 'scripts.db'}",
            "OPENAI_BASE_URL": lm.base_url,
            "OPENAI_API_KEY": "fake-key",
        }
        yield folder, env


def _run(env, *args, cwd=None):
    done = subprocess.run(
        [sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _cli(env, *args, cwd=None):
    return _run(env, "-m", "elixirml", "--lm", "openai/fake", *args, cwd=cwd)


def test_a_program_saved_by_a_script_loads_and_runs_in_new_processes(project, tmp_path):
    folder, env = project
    assert "THE DEMO RAN" in _run(env, str(folder / "qa_script.py"), cwd=folder)
    elsewhere = tmp_path  # not the script's folder: nothing to find it by but what the store recorded
    loaded = _run(
        env,
        "-c",
        "import elixirml as em; p = em.Store().load('qa'); print(type(p).__name__, type(p.answer).__name__)",
        cwd=elsewhere,
    )
    assert loaded.split() == ["QAProgram", "Predict"]  # and the script's __main__ block did not run again
    out = _cli(env, "run", "qa", "--input", "question=life", "--json", cwd=elsewhere)
    assert json.loads(out) == {"answer": "about life"}


def test_a_program_optimized_from_a_file_runs_and_serves_by_name(project, tmp_path):
    folder, env = project
    prog = f"{folder / 'qa_script.py'}:QAProgram"
    data = str(folder / "data.jsonl")
    _cli(env, "optimize", prog, data, "--inputs", "question", "--optimizer", "labeled", "--save", "tuned")
    assert json.loads(_cli(env, "run", "tuned", "-i", "question=x", "--json", cwd=tmp_path)) == {"answer": "about x"}

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "elixirml", "--lm", "openai/fake", "serve", "--port", str(port)]
    command += ["--allow-path", str(folder), "--log-level", "warning"]
    proc = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        listed = httpx.get(base + "/programs", timeout=10).json()
        assert listed["unavailable"] == {} and [p["name"] for p in listed["programs"]] == ["tuned"]
        reply = httpx.post(base + "/programs/tuned/run", json={"question": "served"}, timeout=30)
        assert reply.status_code == 200, reply.text
        assert reply.json()["outputs"]["answer"] == "about served"
    finally:
        proc.kill()
        proc.wait()


def test_the_server_imports_a_file_only_where_the_operator_allows(project, tmp_path):
    folder, env = project
    _cli(env, "optimize", f"{folder / 'qa_script.py'}:QAProgram", str(folder / "data.jsonl"), "--inputs", "question")
    from elixirml.serve._loader import ProgramLoader

    store = em.Store(env["ELIXIRML_STORE"])
    info = store.versions("QAProgram")[0]
    assert info["class_path"].startswith("elixirml_file_qa_script_") and info["class_file"] == str(
        (folder / "qa_script.py").resolve()
    )
    with pytest.raises(LoadError, match=r"--allow-path .*qa_script\.py"):
        ProgramLoader(store, allow_modules=["elixirml_file_qa_script"]).load("QAProgram")
    with pytest.raises(LoadError, match="not imported and not allowed"):
        ProgramLoader(store, allow_paths=[tmp_path / "elsewhere"]).load("QAProgram")
    loaded = ProgramLoader(store, allow_paths=[folder / "qa_script.py"]).load("QAProgram")
    assert type(loaded.program).__name__ == "QAProgram"
    store.close()


def test_a_class_no_new_process_can_find_is_refused_when_saved(tmp_path, project):
    _, env = project

    class Local(em.Program):
        def __init__(self):
            super().__init__()
            self.answer = em.Predict("question -> answer")

    store = em.Store(f"sqlite:///{tmp_path / 'refused.db'}")
    with pytest.raises(ConfigurationError, match=r"Local.*inside a function.*top level of a module or \.py file"):
        store.save(Local(), "local")
    assert store.programs() == []
    store.close()
    interactive = textwrap.dedent(
        """
        import elixirml as em
        from elixirml.errors import ConfigurationError

        class Typed(em.Program):
            def __init__(self):
                super().__init__()
                self.answer = em.Predict("question -> answer")

        try:
            em.Store().save(Typed(), "typed")
        except ConfigurationError as exc:
            print("refused:", exc)
        print("stored:", [p["name"] for p in em.Store().programs()])
        """
    )
    out = _run(env, "-c", interactive)
    assert "refused: Cannot store a 'Typed': it is defined in an interactive session" in out
    assert "Move Typed into a .py file" in out and "stored: []" in out


def test_saving_from_a_script_whose_top_level_does_work_warns_that_loading_would_repeat_it(project):
    folder, env = project
    unguarded = SCRIPT.split("if __name__")[0] + 'print("side effect")\nem.Store().save(QAProgram(), "raw")\n'
    (folder / "raw_script.py").write_text(unguarded)
    done = subprocess.run(
        [sys.executable, str(folder / "raw_script.py")], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "QAProgram is saved from" in done.stderr
    assert re.search(r"\(line (\d+), (\d+)\)", done.stderr).groups() == ("16", "17"), done.stderr
    assert 'Put the script\'s own work under if __name__ == "__main__":' in done.stderr
    guarded = subprocess.run(
        [sys.executable, str(folder / "qa_script.py")], env=env, capture_output=True, text=True, timeout=120
    )
    assert guarded.returncode == 0 and "is saved from" not in guarded.stderr, guarded.stderr
