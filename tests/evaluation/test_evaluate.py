import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import elixirml as em
from elixirml.runtime import RetryPolicy
from elixirml.testing import FakeLMServer


def number_answer(body):
    number = int(re.search(r"item (\d+)", body["messages"][-1]["content"]).group(1))
    return f"[[ ## answer ## ]]\n{number}\n\n[[ ## completed ## ]]"


def devset(n):
    # gold is right for even items only, so scores are not all equal
    return [
        em.Example(question=f"item {i}", answer=str(i) if i % 2 == 0 else "none").with_inputs("question")
        for i in range(n)
    ]


def server_lm(server, **kwargs):
    return em.LM(
        "openai/fake",
        base_url=server.base_url,
        cache=False,
        timeout=0.5,
        retry=RetryPolicy(retries=15, base_delay=0.01, max_delay=0.05),
        **kwargs,
    )


def test_1000_examples_with_20_percent_failures_match_the_clean_run():
    program = em.Predict("question -> answer")
    with FakeLMServer(number_answer) as clean_server:
        program.set_lm(server_lm(clean_server))
        clean = em.evaluate(program, devset(1000), em.metrics.exact_match, concurrency=64, display_progress=False)
    with FakeLMServer(number_answer, failure_rate=0.2, timeout_delay=1.0, seed=7) as faulty:
        program.set_lm(server_lm(faulty))
        noisy = em.evaluate(program, devset(1000), em.metrics.exact_match, concurrency=64, display_progress=False)
        assert sum(faulty.fault_counts.values()) > 150
    assert len(noisy.results) == 1000 and noisy.errors == 0
    assert [r.index for r in noisy.results] == list(range(1000))
    assert [r.score for r in noisy.results] == [r.score for r in clean.results]
    assert noisy.score == clean.score == 50.0
    assert noisy.usage.calls == 1000  # each example's successful call counted once


def test_metric_errors_are_recorded_and_the_rest_score():
    em.configure(lm=em.DummyLM({"item": {"answer": "x"}}))

    def picky(example, prediction):
        if example.question.endswith("3"):
            raise ValueError("cannot score")
        return True

    with pytest.warns(RuntimeWarning, match="raised on 1 of 10 examples"):
        result = em.evaluate(em.Predict("question -> answer"), devset(10), picky, display_progress=False)
    assert result.errors == 1 and result.metric_errors == 1
    failed = [r for r in result.results if r.error is not None]
    assert failed[0].index == 3 and isinstance(failed[0].error, ValueError) and failed[0].score == 0
    assert sum(r.score for r in result.results) == 9


def test_program_errors_are_recorded_and_max_errors_stops_early():
    # every answer but item 1's is not a number: a per-example failure, recorded and counted
    em.configure(lm=em.DummyLM({"item 1": {"answer": "1"}}, field="question", default={"answer": "many"}))
    result = em.evaluate(
        em.Predict("question -> answer: int"),
        devset(50),
        em.metrics.exact_match,
        max_errors=3,
        concurrency=1,
        display_progress=False,
    )
    assert result.stopped and result.errors == 4 and len(result.results) == 5
    assert all(isinstance(r.error, em.errors.OutputError) for r in result.results if r.index != 1)


def test_a_setup_error_stops_the_evaluation_instead_of_scoring_zero():
    em.configure(lm=em.DummyLM({"item 1": {"answer": "1"}}, field="question"))  # no answer for the others
    with pytest.raises(em.errors.ConfigurationError, match="no scripted answer"):
        em.evaluate(em.Predict("question -> answer"), devset(5), em.metrics.exact_match, display_progress=False)


def test_several_metrics_and_reports(tmp_path):
    em.configure(lm=em.DummyLM({"item": {"answer": "0"}}))
    result = em.evaluate(
        em.Predict("question -> answer"),
        devset(6),
        em.metrics.exact_match,
        metrics={"f1": em.metrics.f1, "tokens": "tokens", "latency": "latency"},
        display_progress=False,
    )
    assert result.metric_names == ["exact_match", "f1", "tokens", "latency"]
    assert result.directions["tokens"] == "minimize"
    assert result.metric("tokens") > 0
    assert result.score == pytest.approx(100 / 6)
    result.to_csv(tmp_path / "r.csv")
    assert "score.exact_match" in (tmp_path / "r.csv").read_text().splitlines()[0]
    data = json.loads(result.to_json(tmp_path / "r.json"))
    assert data["summary"]["n"] == 6 and len(data["results"]) == 6
    assert "score=" in result.table()


def test_evaluate_class_accepts_dspy_names():
    em.configure(lm=em.DummyLM({"item": {"answer": "0"}}))
    evaluator = em.Evaluate(devset=devset(4), metric=em.metrics.exact_match, num_threads=2, display_progress=False)
    assert evaluator.concurrency == 2
    assert evaluator(em.Predict("question -> answer")).score == 25.0


def test_async_metric_and_lm_judge():
    em.configure(lm=em.DummyLM({"[[ ## question ## ]]": {"answer": "0"}, "[[ ## example ## ]]": {"score": 0.75}}))

    async def async_metric(example, prediction, trace=None):
        assert trace and trace[0].prediction == prediction
        return 1.0

    result = em.evaluate(
        em.Predict("question -> answer"),
        devset(2),
        async_metric,
        metrics={"judge": em.metrics.LMJudge("Is it a number?")},
        display_progress=False,
    )
    assert result.score == 100.0 and result.metric("judge") == 0.75


def test_compare_paired_bootstrap():
    em.configure(lm=em.DummyLM({"item": {"answer": "0"}}))
    program = em.Predict("question -> answer")
    a = em.evaluate(program, devset(20), lambda e, p: 0.0, display_progress=False)
    b = em.evaluate(
        program, devset(20), lambda e, p: 1.0 if int(e.question.split()[1]) < 15 else 0.0, display_progress=False
    )
    out = em.compare(a, b)
    assert out["difference"] == pytest.approx(75.0)
    assert 50 < out["ci_low"] <= 75 <= out["ci_high"] <= 100 and out["p_b_better"] == 1.0


def test_numeric_match_on_50_gsm8k_answers():
    data = em.data.gsm8k("train", limit=50)
    assert len(data) == 50
    for example in data:
        gold = example.answer.rsplit("####", 1)[1].strip()
        right = em.Prediction(answer=f"So the answer is {gold}.")
        wrong = em.Prediction(answer=f"So the answer is {float(gold.replace(',', '')) + 1}.")
        assert em.metrics.numeric_match(example, right) == 1.0
        assert em.metrics.numeric_match(example, wrong) == 0.0
    assert em.metrics.extract_number("costs $1,234.50 in total") == 1234.5


def test_text_metrics():
    ex = em.Example(question="q", answer="The Eiffel Tower").with_inputs("question")
    assert em.metrics.exact_match(ex, em.Prediction(answer="eiffel tower!")) == 1.0
    assert em.metrics.f1(ex, em.Prediction(answer="the tower")) == pytest.approx(2 / 3)
    assert em.metrics.contains(ex, em.Prediction(answer="It is the Eiffel Tower, in Paris")) == 1.0
    assert em.metrics.passage_match(ex, em.Prediction(passages=["x", "Eiffel tower facts"])) == 1.0
    with pytest.raises(em.errors.ConfigurationError, match="field"):
        em.metrics.exact_match(ex, em.Prediction(other="x"))
    assert em.metrics.ExactMatch(field="answer", pred_field="label")(ex, em.Prediction(label="eiffel tower")) == 1.0


CHILD = textwrap.dedent(
    """
    import sys
    import elixirml as em
    url, path = sys.argv[1], sys.argv[2]
    lm = em.LM("openai/fake", base_url=url, cache=False)
    program = em.Predict("question -> answer", lm=lm)
    data = [em.Example(question=f"item {i}", answer=str(i)).with_inputs("question") for i in range(40)]
    em.evaluate(program, data, em.metrics.exact_match, concurrency=2, checkpoint=path, display_progress=False)
    """
)


def test_sigkill_then_resume_only_runs_missing_examples(tmp_path):
    path = tmp_path / "checkpoint.jsonl"
    with FakeLMServer(number_answer, latency=0.1) as server:
        child = subprocess.Popen([sys.executable, "-c", CHILD, server.base_url, str(path)])
        deadline = time.time() + 60
        while time.time() < deadline:
            if path.exists() and len(path.read_text().splitlines()) >= 10:
                break
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        done = 0  # a line cut short by the kill is not finished: the resumed run redoes that example
        for line in path.read_text().splitlines():
            try:
                json.loads(line)
                done += 1
            except json.JSONDecodeError:
                pass
        assert 10 <= done < 40
        before = len(server.requests)
        program = em.Predict("question -> answer", lm=em.LM("openai/fake", base_url=server.base_url, cache=False))
        data = [em.Example(question=f"item {i}", answer=str(i)).with_inputs("question") for i in range(40)]
        result = em.evaluate(
            program, data, em.metrics.exact_match, concurrency=4, checkpoint=path, display_progress=False
        )
        assert len(server.requests) - before == 40 - done
        assert len(result.results) == 40 and result.score == 100.0
        assert sum(r.resumed for r in result.results) == done


def test_checkpoint_in_the_store(tmp_path):
    store = em.Store(f"sqlite:///{tmp_path / 'ckpt.db'}")
    lm = em.DummyLM({"item": {"answer": "0"}}, default={"answer": "0"})
    program = em.Predict("question -> answer", lm=lm)
    data = devset(8)
    first = em.evaluate(program, data[:5], em.metrics.exact_match, checkpoint=(store, "ckpt"), display_progress=False)
    assert len(lm.requests) == 5 and first.score == 20.0
    again = em.evaluate(program, data, em.metrics.exact_match, checkpoint=(store, "ckpt"), display_progress=False)
    assert len(lm.requests) == 8  # only the 3 missing examples ran
    assert sum(r.resumed for r in again.results) == 5 and len(again.results) == 8
    auto = em.evaluate(program, data, em.metrics.exact_match, checkpoint=store, display_progress=False)
    assert len(auto.results) == 8 and len(lm.requests) == 16  # a new name per program, metric and data
    em.evaluate(program, data, em.metrics.exact_match, checkpoint=store, display_progress=False)
    assert len(lm.requests) == 16
    with pytest.raises(em.errors.ConfigurationError, match="checkpoint"):
        em.evaluate(program, data, em.metrics.exact_match, checkpoint=42, display_progress=False)
    store.close()


# ---------------------------------------------------------------- issue 35: a metric value that is not a number
@pytest.mark.parametrize("bad", [float("nan"), None, float("inf")], ids=["nan", "none", "inf"])
def test_a_metric_value_that_is_not_a_finite_number_is_one_examples_metric_error(tmp_path, bad):
    import math
    import warnings

    from elixirml.optimizers import RandomSearch

    url = f"sqlite:///{tmp_path / 'store.db'}"
    em.configure(lm=em.FunctionLM(lambda m, s: {"answer": "a"}), store=url)
    data = [em.Example(question=f"q{i}", answer="a").with_inputs("question") for i in range(4)]

    def shaky(example, pred, trace=None):
        return bad if example.question == "q1" else 1.0

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = em.evaluate(em.Predict("question -> answer"), data, shaky, display_progress=False)
    assert (result.score, result.metric_errors, result.errors) == (75.0, 1, 1)
    assert result.results[1].prediction.answer == "a"  # the program's answer is kept
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and "'shaky'" in messages[0] and repr(bad) in messages[0]
    store = em.Store(url)
    assert [e["score"] for e in store.evaluations()] == [75.0]

    optimizer = RandomSearch(shaky, num_candidates=3, max_bootstrapped_demos=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optimizer.compile(em.Predict("question -> answer"), trainset=data, valset=data)
    scores = [t.score for t in optimizer.last_result.trials]
    assert len(scores) == 3 and all(math.isfinite(s) for s in scores) and max(scores) == 75.0
    (run,) = store.runs()
    assert [t["score"] for t in store.run(run["id"])["trial_list"]] == scores

    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from elixirml.console import create_console_app

    with TestClient(create_console_app(url), base_url="http://localhost") as client:
        assert client.get(f"/runs/{run['id']}").status_code == 200
    store.close()
