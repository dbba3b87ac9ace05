"""The web console: pages over a filled store (ASGI client) and in a real browser (headless Chromium)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import elixirml as em

pytest.importorskip("fastapi", reason="the console needs the 'serve' extra (fastapi)")
from fastapi.testclient import TestClient

from elixirml.console import create_console_app

CHROMIUM = os.environ.get("ELIXIRML_CHROMIUM", "/usr/bin/chromium")  # Debian's package
EVIL = "<script>alert('x')</script>"


def _answer(messages: list[dict[str, Any]], settings: dict[str, Any]) -> dict[str, str]:
    """The LM of the evaluations: right on even items, wrong on odd ones, raising on item 3."""
    text = str(messages[-1]["content"])
    number = int(re.findall(r"item (\d+)", text)[-1])
    if number == 3:
        raise RuntimeError("the backend fell over on item 3")
    return {"reasoning": "count it", "answer": str(number) if number % 2 == 0 else "wrong"}


def _searched(messages: list[dict[str, Any]], settings: dict[str, Any]) -> dict[str, str]:
    """The LM of the search: "number only" is always right and terse, "think it through" right but wordy."""
    system, question = str(messages[0]["content"]), str(messages[-1]["content"])
    number = int(re.findall(r"item (\d+)", question)[-1])
    if "number only" in system:
        return {"reasoning": "n", "answer": str(number)}
    if "Think it through" in system:
        return {"reasoning": "Let me count carefully, one by one, to be sure. " * 4, "answer": str(number)}
    return {"reasoning": "a guess", "answer": str(number) if number % 2 == 0 else "?"}


def fill_store(url: str) -> dict[str, Any]:
    """A store with a program in two versions, two optimization runs, two evaluations and a trace."""
    store = em.Store(url)
    v1 = em.ChainOfThought("question -> answer")
    store.save(v1, "qa", tags=["baseline"], message="first cut")
    v2 = v1.deepcopy()
    v2.signature = v2.signature.with_instructions(f"Answer with one number. {EVIL}")
    v2.demos = [
        em.Example(question="item 10", reasoning="ten", answer="10"),
        em.Example(question="item 12", reasoning="twelve", answer="12"),
    ]
    store.save(v2, "qa", tags=["tuned"], message="instructions and demos")

    data = [em.Example(question=f"item {i}", answer=str(i)).with_inputs("question") for i in range(6)]
    em.configure(store=url, lm=em.FunctionLM(_answer))
    em.evaluate(v1, data, em.metrics.exact_match, display_progress=False)
    em.configure(lm=em.DummyLM({"item": {"reasoning": "r", "answer": "0"}}))
    em.evaluate(store.load("qa"), data, em.metrics.exact_match, display_progress=False)
    evaluations = [e["id"] for e in store.evaluations()]  # newest first

    em.configure(lm=em.FunctionLM(_searched))
    candidates = {"self": ["Reply with the number only.", "Think it through, then give the number, and nothing else."]}
    search = em.optimizers.VariableSearch(
        [em.metrics.exact_match, "tokens"], n_trials=5, seed=1, instruction_candidates=candidates
    )
    search.compile(store.load("qa"), trainset=data[:4], save_as="qa-search")

    em.configure(lm=em.DummyLM({"Paris": {"reasoning": "It is in France.", "answer": "Paris"}}))
    program = store.load("qa")
    with store.recording("qa", {"question": "Where is Paris?"}) as rec:
        rec.outputs = program(question="Where is Paris?").to_dict()
    em.configure(store=None, lm=None)
    assert [e["id"] for e in store.evaluations()] == evaluations  # a search's trials are not evaluations
    runs = store.runs()
    info = {
        "evaluations": evaluations,
        "run": runs[0]["id"],
        "execution": rec.execution_id,
    }
    store.close()
    return info


@pytest.fixture
def filled(tmp_path):
    url = f"sqlite:///{tmp_path / 'console.db'}"
    info = fill_store(url)
    return url, info


@pytest.fixture
def client(filled):
    url, info = filled
    lm = em.DummyLM({"Rome": {"reasoning": "It is the capital of Italy.", "answer": "Rome, in Italy"}}, stream_chunk=3)
    app = create_console_app(url, lm=lm)
    with TestClient(app, base_url="http://localhost") as c:
        yield c, info, url


# ---------------------------------------------------------------------- store additions the pages rely on
def test_recording_keeps_spans_messages_and_raw_answers(filled):
    url, info = filled
    store = em.Store(url)
    execution = store.execution(info["execution"])
    assert execution["outputs"]["answer"] == "Paris"
    kinds = [s["kind"] for s in execution["spans"]]
    assert kinds[0] == "module" and {"lm", "adapter_format", "adapter_parse"} <= set(kinds)
    ids = {s["id"] for s in execution["spans"]}
    assert all(s["parent"] in ids for s in execution["spans"][1:])  # one tree under the program's span
    assert all(s["duration"] is not None and s["duration"] >= 0 for s in execution["spans"])
    step = execution["trace"][0]
    assert "Paris" in step["completion"] and step["messages"][0]["role"] == "system"
    assert store.last_execution()["id"] == info["execution"]
    assert [e["id"] for e in store.executions(program="qa")] == [info["execution"]]
    with pytest.raises(em.errors.LoadError):
        store.execution(10_000)
    store.close()


def test_recording_stores_a_failed_run_with_its_error(tmp_path):
    store = em.Store(f"sqlite:///{tmp_path / 'fail.db'}")
    em.configure(lm=em.FunctionLM(lambda m, s: (_ for _ in ()).throw(RuntimeError("backend down"))))
    with pytest.raises(RuntimeError), store.recording("p", {"q": "x"}) as rec:
        em.Predict("q -> a")(q="x")
    stored = store.execution(rec.execution_id)
    assert "backend down" in stored["error"]
    assert any("backend down" in s["error"] for s in stored["spans"])
    store.close()


def test_evaluation_by_id_has_results_input_keys_and_the_stored_version(filled):
    url, info = filled
    store = em.Store(url)
    newest, oldest = (store.evaluation(i) for i in info["evaluations"])
    assert oldest["summary"]["input_keys"] == ["question"] and len(oldest["results"]) == 6
    assert oldest["program"] == "qa" and oldest["version_id"] == store.get_version("qa", 1)["id"]
    assert newest["program"] == "qa" and newest["version_id"] == store.get_version("qa", 2)["id"]
    store.close()


# ---------------------------------------------------------------------- pages
def test_overview_and_programs(client):
    c, _, _ = client
    page = c.get("/")
    assert page.status_code == 200
    assert "qa" in page.text and "VariableSearch" in page.text and "Recent traces" in page.text
    assert 'href="/static/console.css"' in page.text
    css = c.get("/static/console.css")
    assert css.status_code == 200 and "svg .point" in css.text
    assert c.get("/static/console.js").status_code == 200
    listing = c.get("/catalog").text
    assert "v2" in listing and "question: str -&gt; reasoning: str, answer: str" in listing


def test_program_versions_and_diff(client):
    c, _, _ = client
    page = c.get("/catalog/qa").text
    assert "first cut" in page and "instructions and demos" in page and "baseline" in page
    version = c.get("/catalog/qa/versions/2").text
    assert "item 10" in version and "Answer with one number." in version
    diff = c.get("/catalog/qa/diff", params={"a": 1, "b": 2}).text
    assert "<ins>" in diff and "<del>" in diff and "0 → 2" in diff
    assert "Given the fields" in diff and "item 12" in diff
    assert EVIL not in diff and "&lt;script&gt;" in diff  # instructions are user text: escaped
    same = c.get("/catalog/qa/diff", params={"a": 2, "b": 2}).text
    assert "have the same instructions, demos and variable values" in same
    missing = c.get("/catalog/nope")
    assert missing.status_code == 404 and "No stored program named" in missing.text
    bad = c.get("/catalog/qa/diff", params={"a": 1, "b": 9})
    assert bad.status_code == 404 and "has no version 9" in bad.text


def test_run_page_plots_trials_best_and_pareto_front(client):
    c, info, url = client
    run = em.Store(url).run(info["run"])
    page = c.get(f"/runs/{info['run']}").text
    assert "Trial scores" in page and 'class="best"' in page
    assert page.count('class="trial-link"') == 2 * len(run["trial_list"])  # both plots link every trial
    for trial in run["trial_list"]:
        assert f'id="trial-{trial["number"]}"' in page and f'href="#trial-{trial["number"]}"' in page
    assert "Pareto front" in page and "tokens (lower is better)" in page and "front-point" in page
    assert "instructions" in page  # each trial's configuration is on the page
    listing = c.get("/runs").text
    assert info["run"][:18] in listing and "finished" in listing


def test_evaluation_page_interval_filters_and_escaping(client):
    c, info, _ = client
    newest, oldest = info["evaluations"]
    page = c.get(f"/evaluations/{oldest}").text
    assert "95% CI" in page and "±" in page
    assert "the backend fell over on item 3" in page
    assert page.count('class="row-') == 6
    errors = c.get(f"/evaluations/{oldest}", params={"show": "errors"}).text
    assert errors.count('class="row-') == 1 and "row-error" in errors
    wrong = c.get(f"/evaluations/{oldest}", params={"show": "wrong"}).text
    assert wrong.count('class="row-wrong"') == 2 and "row-error" not in wrong  # items 1 and 5
    assert c.get(f"/evaluations/{oldest}", params={"show": "bogus"}).status_code == 400
    compare = c.get("/evaluations/compare", params={"a": oldest, "b": newest}).text
    assert "intervals" in compare and compare.count('class="pair ') == 6
    assert "B is better on" in compare and 'data-change="worse"' in compare
    assert "Compare A and B side by side" in c.get("/evaluations").text


def test_trace_page_shows_span_tree_messages_and_raw_answer(client):
    c, info, _ = client
    page = c.get(f"/traces/{info['execution']}").text
    assert "Span tree" in page and "chat dummy" in page and "format ChatAdapter" in page
    assert page.count('class="span ') >= 4
    assert "Where is Paris?" in page and "It is in France." in page
    assert "Raw answer" in page and "[[ ## answer ## ]]" in page
    assert "not recorded" not in page


def test_trace_page_says_when_a_run_has_no_spans(client):
    c, _, url = client
    store = em.Store(url)
    old = store.add_execution(program_name="legacy", inputs={"q": 1}, outputs={}, trace=[])
    page = c.get(f"/traces/{old}").text
    assert "recorded without a span tree" in page and "made no predictor calls" in page
    store.close()


def test_try_it_form_streams_the_answer_and_records_a_trace(client):
    c, _, url = client
    form = c.get("/catalog/qa/try").text
    assert 'name="question"' in form and "required" in form
    with c.stream("POST", "/catalog/qa/try", json={"inputs": {"question": "Where is Rome?"}}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        body = "".join(response.iter_text())
    events = re.findall(r"event: (\w+)\ndata: (.*)\n\n", body)
    kinds = [k for k, _ in events]
    assert kinds.count("chunk") > 2 and kinds[-1] == "result"
    import json

    chunks = "".join(json.loads(d)["text"] for k, d in events if k == "chunk" and json.loads(d)["field"] == "answer")
    assert chunks.strip() == "Rome, in Italy"
    result = json.loads(events[-1][1])
    assert result["outputs"]["answer"] == "Rome, in Italy"
    stored = em.Store(url).execution(result["execution_id"])
    assert stored["inputs"] == {"question": "Where is Rome?"} and stored["spans"]


def test_try_it_reports_errors_in_the_stream(client):
    c, _, _ = client
    with c.stream("POST", "/catalog/qa/try", json={"inputs": {}}) as response:
        body = "".join(response.iter_text())
    assert "event: error" in body and "question" in body
    assert c.post("/catalog/qa/try", json=[1]).status_code == 400


def test_try_it_without_an_lm_says_so(filled):
    url, _ = filled
    with TestClient(create_console_app(url), base_url="http://localhost") as c:
        assert "No LM is configured" in c.get("/catalog/qa/try").text
        with c.stream("POST", "/catalog/qa/try", json={"inputs": {"question": "q"}}) as response:
            body = "".join(response.iter_text())
    assert "event: error" in body and "No LM is configured" in body


def test_mounted_under_a_prefix_links_stay_inside_it(filled):
    from fastapi import FastAPI

    url, _ = filled
    outer = FastAPI()
    outer.mount("/console", create_console_app(url))
    with TestClient(outer, base_url="http://localhost") as c:
        page = c.get("/console/catalog").text
    assert 'href="/console/catalog/qa"' in page and 'href="/console/static/console.css"' in page


def test_mounted_at_the_root_beside_a_programs_api(filled):
    from fastapi import FastAPI

    url, _ = filled
    outer = FastAPI()  # as elixirml serve: its own /programs API first, the console at /

    @outer.get("/programs")
    def api() -> list[str]:
        return ["qa"]

    outer.mount("/", create_console_app(url))
    with TestClient(outer, base_url="http://localhost") as c:
        assert c.get("/programs").json() == ["qa"]
        page = c.get("/catalog/qa")
        assert page.status_code == 200 and "first cut" in page.text
        assert "Programs" in c.get("/").text


def test_console_command_is_listed():
    from typer.testing import CliRunner

    from elixirml.cli import app

    result = CliRunner().invoke(app, ["console", "--help"])
    assert result.exit_code == 0 and "--store" in result.output and "--port" in result.output


# ---------------------------------------------------------------------- a real browser
def _chromium_reason() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"Chromium is not installed at {CHROMIUM} (Debian package 'chromium'; `make test` installs it as root)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the Python package 'playwright' is not installed (the 'dev' extra)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(filled):
    """The console under uvicorn on 127.0.0.1, in a thread of this process; stopped after the test."""
    import uvicorn

    url, info = filled
    lm = em.DummyLM({"Rome": {"reasoning": "It is the capital of Italy.", "answer": "Rome, in Italy"}}, stream_chunk=2)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_console_app(url, lm=lm), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", info
    server.should_exit = True
    thread.join(timeout=10)


def test_in_a_real_browser(served, tmp_path):
    reason = _chromium_reason()
    if reason is not None:
        print(f"skipping the browser test: {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    base, info = served
    newest, oldest = info["evaluations"]
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        problems: list[str] = []
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        page.on("dialog", lambda dialog: problems.append(f"a dialog opened: {dialog.message}"))

        def visit(path: str, name: str, *texts: str) -> None:
            response = page.goto(base + path)
            assert response is not None and response.status == 200, path
            body = page.inner_text("main")
            for text in texts:
                assert text in body, f"{text!r} not on {path}"
            page.screenshot(path=str(shots / f"{name}.png"), full_page=True)

        visit("/", "overview", "Programs", "qa", "VariableSearch")
        visit("/catalog/qa/versions/2", "version", "Answer with one number.", "item 12")
        visit("/catalog/qa", "program", "first cut", "instructions and demos")
        page.click("text=Show the differences")
        page.wait_for_url(lambda url: "/diff?" in url)
        assert "a=1" in page.url and "b=2" in page.url, page.url
        assert page.locator(".word-diff ins").count() > 0
        assert EVIL in page.inner_text(".word-diff")  # shown as text, never run (no dialog opened)
        page.screenshot(path=str(shots / "diff.png"), full_page=True)

        visit(f"/runs/{info['run']}", "run", "Trial scores", "Pareto front", "Trials")
        assert page.locator("#trials-plot svg circle.point").count() >= 5
        page.locator("#trials-plot a.trial-link").first.click()
        assert page.locator("tr.highlight").count() == 1
        assert re.search(r"#trial-\d+$", page.url)

        visit(f"/evaluations/{oldest}", "evaluation", "95% CI", "the backend fell over on item 3")
        page.click("a[data-filter=errors]")
        page.wait_for_url(re.compile(r".*show=errors"))
        assert page.locator("table.examples tbody tr").count() == 1
        page.screenshot(path=str(shots / "evaluation-errors.png"), full_page=True)
        visit(f"/evaluations/compare?a={oldest}&b={newest}", "compare", "B is better on")
        page.check("#only-changed")
        visible = page.locator("#pairs tbody tr:visible").count()
        assert 0 < visible < 6

        visit(f"/traces/{info['execution']}", "trace", "Span tree", "chat dummy", "Raw answer", "It is in France.")

        visit("/catalog/qa/try", "try-form", "question")
        page.fill("#input-question", "Where is Rome?")
        page.click("#run-button")
        page.wait_for_selector("#trace-link", timeout=20_000)
        assert page.inner_text("#out-answer") == "Rome, in Italy"
        assert page.inner_text("#run-state") == "done"
        page.screenshot(path=str(shots / "try-answered.png"), full_page=True)
        page.click("#trace-link")
        page.wait_for_url(re.compile(r".*/traces/\d+$"))
        assert "Where is Rome?" in page.inner_text("main")
        browser.close()
    assert not problems, problems
    saved = sorted(f.name for f in shots.iterdir())
    assert len(saved) == 11, saved
    keep = Path(os.environ.get("ELIXIRML_CONSOLE_SHOTS", ""))
    if keep.name:  # to look at the pages: ELIXIRML_CONSOLE_SHOTS=/some/dir pytest tests/serve/test_console.py
        keep.mkdir(parents=True, exist_ok=True)
        for f in shots.iterdir():
            shutil.copy(f, keep / f.name)


def test_plot_axes_cover_every_value_and_the_front_is_the_non_dominated_set():
    from elixirml.console._plots import _ticks, pareto_front

    for low, high in ((235, 291), (0, 4), (0.5, 1.0), (7, 7), (-3, 12.5)):
        ticks = _ticks(low, high)
        assert ticks[0] <= low and ticks[-1] >= high and len(ticks) <= 12
    trials = [
        {"number": 0, "scores": {"acc": 0.9, "cost": 5.0}},
        {"number": 1, "scores": {"acc": 0.9, "cost": 3.0}},
        {"number": 2, "scores": {"acc": 0.5, "cost": 1.0}},
        {"number": 3, "scores": {"acc": 0.4, "cost": 2.0}},
        {"number": 4, "scores": {"acc": 1.0, "cost": 9.0}, "status": "budget"},
    ]
    assert pareto_front(trials, ["acc", "cost"], {"acc": "maximize", "cost": "minimize"}) == [1, 2]


def test_try_it_form_follows_the_input_schema_and_coerces_values():
    from elixirml.console._views import coerce_inputs, input_fields

    program = em.Predict("question: str, k: int, strict: bool, tags: list[str] -> answer")
    fields = input_fields(program)
    assert [(f["name"], f["type"], f["required"]) for f in fields] == [
        ("question", "string", True),
        ("k", "integer", True),
        ("strict", "boolean", True),
        ("tags", "array", True),
    ]
    values = coerce_inputs(fields, {"question": "q", "k": "3", "strict": True, "tags": '["a", "b"]'})
    assert values == {"question": "q", "k": 3, "strict": True, "tags": ["a", "b"]}
    with pytest.raises(ValueError, match="'k' must be integer"):
        coerce_inputs(fields, {"k": "three"})

    class Two(em.Module):
        def __init__(self):
            super().__init__()
            self.first = em.Predict("context, question -> answer")

        def forward(self, context, question, hint=""):
            return self.first(context=context, question=question)

    assert [(f["name"], f["required"]) for f in input_fields(Two())] == [
        ("context", True),
        ("question", True),
        ("hint", False),
    ]
