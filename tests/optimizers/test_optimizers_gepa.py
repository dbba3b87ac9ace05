"""GEPA and metric feedback, with scripted LMs where only reflection on feedback finds the answer."""

import re

import pytest

import elixirml as em
from elixirml.errors import ConfigurationError, ProviderError
from elixirml.lm import Completion, Usage
from elixirml.optimizers import GEPA, MIPRO
from elixirml.runtime import RetryPolicy

pytest.importorskip("gepa")
pytest.importorskip("optuna")

SECRET = "zebra"  # appears only in the metric's feedback text


def data(n, offset=0):
    return [em.Example(question=f"echo {i}", answer=f"w{i}").with_inputs("question") for i in range(offset, offset + n)]


def task_answer(messages):
    """The task model: right only when its instructions contain the secret word."""
    system, user = messages[0]["content"], messages[-1]["content"]
    number = re.search(r"echo (\d+)", user).group(1)
    return {"answer": f"w{number}" if SECRET in system else "unsure"}


def proposer_answer(messages):
    """A proposer that writes whatever its prompt gives it into the new instruction."""
    system, user = messages[0]["content"], messages[-1]["content"]
    if "Summarize what these examples" in system:
        return {"summary": "Questions that ask to echo an item."}
    if "Propose a better instruction" in system:
        tip = user.split("[[ ## tip ## ]]")[-1].strip()[:60]
        return {"proposed_instruction": f"Answer with the item word. {tip}"}
    return None


def reflection_text(prompt):
    """A reflection LM that folds the feedback it is shown into the instruction (what a good one does)."""
    current = prompt.split("```")[1].strip()
    feedback = re.findall(r"## Feedback\n(.*?)\n", prompt)
    return "```\n" + current + " " + " ".join(sorted(set(feedback))) + "\n```"


def scripted_lm(calls=None):
    def answer(messages, settings):
        if calls is not None:
            calls.append(messages)
        user = messages[-1]["content"]
        if len(messages) == 1 and "```" in user:  # gepa's reflection prompt, sent as one user message
            return reflection_text(user)
        proposed = proposer_answer(messages)
        return proposed if proposed is not None else task_answer(messages)

    return em.FunctionLM(answer)


def feedback_metric(example, prediction, trace=None):
    if prediction.answer == example.answer:
        return em.Feedback(1.0, feedback="Correct.")
    return em.Feedback(0.0, feedback=f"Wrong: answer {example.answer!r}; always follow the {SECRET} rule.")


def test_feedback_is_a_score_with_text_and_evaluation_keeps_it():
    assert float(em.Feedback(0.5, feedback="half")) == 0.5
    assert em.Feedback(True).score == 1.0
    with pytest.raises(ConfigurationError):
        em.Feedback(float("nan"))
    with pytest.raises(ConfigurationError):
        em.Feedback(1.0, feedback=3)
    em.configure(lm=scripted_lm())
    result = em.evaluate(em.Predict("question -> answer"), data(3), feedback_metric, display_progress=False)
    assert result.score == 0.0
    assert all(SECRET in r.feedback for r in result.results)
    assert all(SECRET in row["feedback"] for row in result.rows())


def test_dspy_prediction_with_score_and_feedback_counts_as_feedback():
    def metric(example, prediction, trace=None):
        return em.Prediction(score=0.25, feedback="because")

    em.configure(lm=scripted_lm())
    result = em.evaluate(em.Predict("question -> answer"), data(2), metric, display_progress=False)
    assert result.score == 25.0 and [r.feedback for r in result.results] == ["because", "because"]


def test_gepa_finds_a_word_present_only_in_feedback_where_mipro_does_not():
    budget = 40
    em.configure(lm=scripted_lm())
    gepa = GEPA(feedback_metric, max_metric_calls=budget, reflection_lm=scripted_lm(), seed=0)
    # 6 rows: a text better on all of them wins the final paired comparison (p = 1/64); 4 never could
    compiled = gepa.compile(em.Predict("question -> answer"), trainset=data(6), valset=data(6, offset=10))
    result = gepa.last_result
    assert SECRET in compiled.signature.instructions
    assert result.details["instruction_choice"]["kept"] == "proposed"
    assert result.best_score == 100.0, result.summary()
    assert result.details["metric_calls"] <= budget
    assert em.evaluate(compiled, data(5, offset=50), feedback_metric, display_progress=False).score == 100.0
    candidates = result.details["candidates"]
    assert candidates[0]["parents"] == [] and any(c["parents"] == [0] for c in candidates[1:])
    assert result.details["pareto_front"]["candidates"]
    assert result.pareto_front and all(t.full for t in result.pareto_front)

    mipro = MIPRO(feedback_metric, auto="light", storage="sqlite:///:memory:", seed=0, max_metric_calls=budget)
    baseline = mipro.compile(em.Predict("question -> answer"), trainset=data(6), valset=data(6, offset=10))
    assert SECRET not in baseline.signature.instructions
    assert mipro.last_result.best_score == 0.0


def test_gepa_holds_the_metric_call_budget_and_the_lm_call_budget():
    em.configure(lm=scripted_lm())
    gepa = GEPA(feedback_metric, max_metric_calls=9, reflection_lm=scripted_lm(), seed=0)
    gepa.compile(em.Predict("question -> answer"), trainset=data(6), valset=data(4, offset=10))
    assert gepa.last_result.details["metric_calls"] <= 9
    calls = []
    em.configure(lm=scripted_lm(calls))
    gepa = GEPA(feedback_metric, auto="light", reflection_lm=em.settings.current().lm, seed=0)
    gepa.compile(em.Predict("question -> answer"), trainset=data(6), valset=data(4, offset=10), max_lm_calls=7)
    assert len(calls) <= 7 and gepa.last_result.stopped == "max_lm_calls"


def test_gepa_evolves_a_text_variable_and_tunes_the_other_variables():
    class Styled(em.Program):
        style = em.Variable.text("Answer the question.")
        temperature = em.Variable.float(default=1.0, low=0.0, high=2.0)

        def __init__(self):
            super().__init__()
            self.solve = em.Predict("question, style -> answer")

        def forward(self, question):
            return self.solve(question=question, style=self.style, config={"temperature": self.temperature})

    def answer(messages, settings):
        user = messages[-1]["content"]
        if len(messages) == 1 and "```" in user:
            return reflection_text(user)
        number = re.search(r"echo (\d+)", user).group(1)
        if SECRET not in user.split("[[ ## style ## ]]")[-1]:
            return {"answer": "unsure"}
        return {"answer": f"w{number}" if settings.get("temperature", 1.0) < 0.5 else f"w{number}?"}

    def metric(example, prediction, trace=None):
        if prediction.answer == example.answer:
            return em.Feedback(1.0, "Correct.")
        if prediction.answer == example.answer + "?":
            return em.Feedback(0.5, "Right word, but unsure.")
        return em.Feedback(0.0, f"Use the {SECRET} style.")

    lm = em.FunctionLM(answer)
    em.configure(lm=lm)
    gepa = GEPA(metric, max_metric_calls=200, reflection_lm=lm, seed=0, variable_trials=10)
    compiled = gepa.compile(Styled(), trainset=data(4), valset=data(6, offset=10))
    assert SECRET in compiled.style and compiled.temperature < 0.5
    assert gepa.last_result.best_score == 100.0, gepa.last_result.summary()


def test_gepa_runs_and_trials_are_stored():
    em.configure(lm=scripted_lm())
    gepa = GEPA(feedback_metric, max_metric_calls=30, reflection_lm=scripted_lm(), seed=0)
    gepa.compile(em.Predict("question -> answer"), trainset=data(4), valset=data(3, offset=10), save_as="echo")
    store = em.Store()
    try:
        run = store.run(gepa.last_result.run_id)
    finally:
        store.close()
    assert run["optimizer"] == "GEPA" and run["status"] == "finished"
    assert len(run["trial_list"]) == len(gepa.last_result.trials) > 1


def test_gepa_refuses_what_it_cannot_honour():
    with pytest.raises(ConfigurationError, match="exactly one budget"):
        GEPA(feedback_metric)
    with pytest.raises(ConfigurationError, match="exactly one budget"):
        GEPA(feedback_metric, auto="light", max_metric_calls=10)
    with pytest.raises(ConfigurationError, match="auto"):
        GEPA(feedback_metric, auto="huge")
    with pytest.raises(ConfigurationError, match="candidate_selection"):
        GEPA(feedback_metric, auto="light", candidate_selection="random")


def test_gepa_drops_degenerate_reflections_instead_of_scoring_them():
    def answer(messages, settings):
        user = messages[-1]["content"]
        if len(messages) == 1 and "```" in user:
            return "The task is to provide a detailed feedback.\n\n" * 30  # what a 135M model writes
        return task_answer(messages)

    lm = em.FunctionLM(answer)
    em.configure(lm=lm)
    program = em.Predict("question -> answer")
    gepa = GEPA(feedback_metric, max_metric_calls=20, reflection_lm=lm, seed=0)
    with pytest.warns(RuntimeWarning, match="none of its .* reflections gave a usable text"):
        compiled = gepa.compile(program, trainset=data(4), valset=data(3, offset=10))
    assert compiled.signature.instructions == program.signature.instructions
    assert gepa.last_result.details["reflections_dropped"] > 0
    assert len(gepa.last_result.details["candidates"]) == 1


def test_a_reflection_cut_off_at_the_token_limit_is_used_not_retried():
    """A small reflection LM writes on until its limit; what it wrote first is still the new text."""
    asked = []

    def rambling(messages, settings):
        asked.append(messages)
        text = reflection_text(messages[-1]["content"])
        cut = text[: text.rindex("```")] + "Also note that the answer " + " ".join(f"w{i}" for i in range(50))
        return em.LMResponse([Completion(cut, finish_reason="length")], Usage(100, settings["max_tokens"], calls=1))

    em.configure(lm=scripted_lm())
    reflection = em.FunctionLM(rambling, retry=RetryPolicy(truncation_retries=3, base_delay=0.001))
    gepa = GEPA(feedback_metric, max_metric_calls=40, reflection_lm=reflection, seed=0)
    compiled = gepa.compile(em.Predict("question -> answer"), trainset=data(4), valset=data(6, offset=10))
    details = gepa.last_result.details
    assert SECRET in compiled.signature.instructions
    assert details["reflections"] == details["reflections_truncated"] == len(asked) >= 1  # each asked once
    assert details["reflections_failed"] == 0


def test_a_failing_reflection_lm_is_counted_and_reported_not_asked_twice():
    asked = []

    def down(messages, settings):
        asked.append(messages)
        raise ProviderError("reflection endpoint down", retryable=False)

    em.configure(lm=scripted_lm())
    gepa = GEPA(feedback_metric, max_metric_calls=20, reflection_lm=em.FunctionLM(down), seed=0)
    with pytest.warns(RuntimeWarning, match=r"0 degenerate, \d+ failed"):
        compiled = gepa.compile(em.Predict("question -> answer"), trainset=data(4), valset=data(3, offset=10))
    details = gepa.last_result.details
    assert SECRET not in compiled.signature.instructions
    assert details["reflections_failed"] == details["reflections"] == len(asked) >= 1  # gepa did not ask again
    assert gepa.last_result.lm_calls >= len(asked)


def test_feedback_survives_a_checkpoint(tmp_path):
    em.configure(lm=scripted_lm())
    path = tmp_path / "run.jsonl"
    program = em.Predict("question -> answer")
    em.evaluate(program, data(2), feedback_metric, checkpoint=path, display_progress=False)
    again = em.evaluate(program, data(2), feedback_metric, checkpoint=path, display_progress=False)
    assert all(r.resumed for r in again.results)
    assert all(SECRET in r.feedback for r in again.results)


def test_gepa_projects_its_full_evals_budget_before_its_first_call(monkeypatch):
    import io

    err = io.StringIO()  # not a terminal: plain lines
    monkeypatch.setattr("sys.stderr", err)
    seen = []
    task = scripted_lm()

    def watching(messages, settings):
        if not seen:
            seen.append(err.getvalue())
        return task.fn(messages, settings)

    em.configure(lm=em.FunctionLM(watching))
    gepa = GEPA(feedback_metric, max_full_evals=1, reflection_lm=scripted_lm(), seed=0, variable_trials=0)
    gepa.compile(em.Predict("question -> answer"), trainset=data(6), valset=data(4, offset=10))
    projected = re.search(r"GEPA: projected (\d+) LM calls", seen[0])
    assert projected is not None, seen[0]
    assert int(projected.group(1)) >= 10  # one pass over the 6 + 4 rows, the budget max_full_evals=1 sets


def test_a_metric_budget_below_one_validation_pass_is_why_gepa_stopped():
    # 5 metric calls cannot score the program as given on 8 validation rows: nothing runs, and the run says why
    em.configure(lm=scripted_lm())
    gepa = GEPA(feedback_metric, max_metric_calls=5, reflection_lm=scripted_lm(), seed=0, display_progress=False)
    compiled = gepa.compile(em.Predict("question -> answer"), trainset=data(8), valset=data(8, offset=10))
    result = gepa.last_result
    assert result.trials == [] and result.details["metric_calls"] == 0
    assert result.stopped == "max_metric_calls"
    assert compiled.signature.instructions == em.Predict("question -> answer").signature.instructions
