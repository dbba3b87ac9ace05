"""Resuming interrupted GEPA, SIMBA, COPRO, RandomSearch and VariableSearch runs from their JSON run state.

Each test runs an optimizer without interruption, then the same run interrupted (a metric that
raises KeyboardInterrupt at its Nth call, or a budget), resumes it with the same run id, and
checks that the resumed run ends where the uninterrupted one did, without repeating what the
earlier leg finished, and within the budgets of the whole run.
"""

from __future__ import annotations

import json
import re

import pytest

import elixirml as em
from elixirml.errors import ConfigurationError
from elixirml.optimizers import COPRO, SIMBA


def data(n, offset=0):
    return [
        em.Example(question=f"echo w{i}", answer=f"W{i}").with_inputs("question") for i in range(offset, offset + n)
    ]


class Seeing:
    """A metric that keeps the questions it scored and raises KeyboardInterrupt at call ``stop_at``."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.seen: list[str] = []
        self.stop_at = stop_at

    def __call__(self, example, prediction, trace=None):
        self.seen.append(example.question)
        if self.stop_at is not None and len(self.seen) == self.stop_at:
            raise KeyboardInterrupt
        return float(prediction.answer == example.answer)


class Counting:
    """``exact`` that counts its calls and raises KeyboardInterrupt at call ``stop_at`` (a kill mid-run)."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.calls = 0
        self.stop_at = stop_at

    def __call__(self, example, prediction, trace=None):
        self.calls += 1
        if self.stop_at is not None and self.calls == self.stop_at:
            raise KeyboardInterrupt
        return float(prediction.answer == example.answer)


@pytest.fixture
def store_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    em.configure(store=url)
    return url


def kept(url, run_id):
    store = em.Store(url)
    try:
        return store.run(run_id), store.run_state(run_id)
    finally:
        store.close()


# ---------------------------------------------------------------------------------------------- COPRO
def copro_lm(log):
    """Proposals differ by their position within a round (each round's proposals come from one leg)."""
    asked = {"basic": 0, "attempts": 0}

    def answer(messages, settings):
        system, user = messages[0]["content"], messages[-1]["content"]
        if "I will give you instructions I tried" in system:
            log.append("propose")
            asked["attempts"] += 1
            scores = [float(s) for s in re.findall(r"Score: ([\d.]+)", user)]
            best = re.findall(r"Instruction #\d+: (.*)\nScore", user)[scores.index(max(scores))]
            return {"proposed_instruction": best + (" Use capitals." if asked["attempts"] % 2 else " Use capitals!")}
        if "Write a better instruction" in system:
            log.append("propose")
            asked["basic"] += 1
            return {"proposed_instruction": f"Echo the word, variant {asked['basic']}."}
        log.append("task")
        word = re.search(r"echo (w\d+)", user).group(1)
        return {"answer": word.upper() if "capitals" in system else word}

    return em.FunctionLM(answer)


def copro(metric, **kwargs):
    return COPRO(metric, breadth=2, depth=1, concurrency=1, **kwargs)


def test_copro_resumes_an_interrupted_run_without_repeating_finished_evaluations(store_url):
    whole_log: list[str] = []
    em.configure(lm=copro_lm(whole_log))
    whole_metric = Counting()
    whole = copro(whole_metric)
    expected = whole.compile(em.Predict("question -> answer"), trainset=data(6), resume="copro-whole")
    assert whole_metric.calls == 30  # 5 evaluations of 6 examples: the original, then 2 proposals in each of 2 rounds

    log: list[str] = []
    em.configure(lm=copro_lm(log))
    first = Counting(stop_at=15)  # in the third evaluation: the original and round 0's first proposal are done
    with pytest.raises(KeyboardInterrupt):
        copro(first).compile(em.Predict("question -> answer"), trainset=data(6), resume="copro-legs")
    run, state = kept(store_url, "copro-legs")
    assert run["status"] == "interrupted" and len(run["trial_list"]) == 2
    assert state["state"]["search"]["round"] == 0 and len(state["state"]["search"]["proposals"]) == 2
    assert log.count("propose") == 2

    log.clear()
    second_metric = Counting()
    second = copro(second_metric)
    compiled = second.compile(em.Predict("question -> answer"), trainset=data(6), resume="copro-legs")
    assert second_metric.calls == 18  # the evaluation in progress and the 2 after it; nothing finished is redone
    assert log.count("propose") == 2  # round 0's proposals were kept; only round 1 proposes
    assert compiled.signature.instructions == expected.signature.instructions
    assert "capitals" in compiled.signature.instructions
    result = second.last_result
    assert result.best_score == whole.last_result.best_score == 100.0
    assert [t.number for t in result.trials] == [0, 1, 2, 3, 4]  # numbers continue after the first leg's
    assert [t.score for t in result.trials] == [t.score for t in whole.last_result.trials]
    # the whole run's, both legs: 30, and the 2 examples that the cut-short evaluation had scored
    assert result.details["metric_calls"] == 32
    run, _ = kept(store_url, "copro-legs")
    assert run["status"] == "finished" and [t["number"] for t in run["trial_list"]] == [0, 1, 2, 3, 4]


def test_copro_budget_holds_across_legs(store_url):
    log: list[str] = []
    em.configure(lm=copro_lm(log))
    first = copro(Counting(), max_metric_calls=18)
    first.compile(em.Predict("question -> answer"), trainset=data(6), resume="copro-budget")
    assert first.last_result.stopped == "max_metric_calls" and first.last_result.details["metric_calls"] == 18

    again_metric = Counting()
    again = copro(again_metric, max_metric_calls=18)  # the same budget: spent already, nothing more runs
    again.compile(em.Predict("question -> answer"), trainset=data(6), resume="copro-budget")
    assert again_metric.calls == 0 and again.last_result.stopped == "max_metric_calls"
    assert again.last_result.best_score == first.last_result.best_score

    more_metric = Counting()
    more = copro(more_metric)
    compiled = more.compile(
        em.Predict("question -> answer"), trainset=data(6), resume="copro-budget", max_metric_calls=30
    )
    assert more_metric.calls == 12 and more.last_result.stopped is None
    assert "capitals" in compiled.signature.instructions and more.last_result.best_score == 100.0


def test_copro_lm_call_budget_counts_earlier_legs(store_url):
    log: list[str] = []
    em.configure(lm=copro_lm(log))
    with pytest.raises(KeyboardInterrupt):
        copro(Counting(stop_at=11)).compile(em.Predict("question -> answer"), trainset=data(4), resume="copro-calls")
    spent = len(log)
    log.clear()
    limited = copro(Counting(), max_lm_calls=spent + 3)
    limited.compile(em.Predict("question -> answer"), trainset=data(4), resume="copro-calls")
    assert len(log) <= 3 and limited.last_result.stopped == "max_lm_calls"
    assert limited.last_result.lm_calls <= spent + 3


def test_resume_refuses_another_program_or_data(store_url):
    em.configure(lm=copro_lm([]))
    with pytest.raises(KeyboardInterrupt):
        copro(Counting(stop_at=11)).compile(em.Predict("question -> answer"), trainset=data(4), resume="copro-other")
    with pytest.raises(ConfigurationError, match="another program or other data"):
        copro(Counting()).compile(em.Predict("question -> answer"), trainset=data(5), resume="copro-other")
    with pytest.raises(ConfigurationError, match="COPRO run; resume it with COPRO"):
        SIMBA(Counting(), bsize=4).compile(em.Predict("question -> answer"), trainset=data(4), resume="copro-other")
    # the refused attempts left the run as it was: it still resumes
    copro(Counting()).compile(em.Predict("question -> answer"), trainset=data(4), resume="copro-other")
    run, _ = kept(store_url, "copro-other")
    assert run["status"] == "finished"


def test_resume_without_a_store_is_refused(monkeypatch):
    monkeypatch.delenv("ELIXIRML_STORE", raising=False)
    em.configure(lm=copro_lm([]))
    with pytest.raises(ConfigurationError, match="no store is configured"):
        copro(Counting()).compile(em.Predict("question -> answer"), trainset=data(4), resume="anything")


# ---------------------------------------------------------------------------------------------- SIMBA
def simba_lm(log):
    def answer(messages, settings):
        system, user = messages[0]["content"], messages[-1]["content"]
        if "Write one short rule" in system:
            log.append("rule")
            better = json.loads(re.search(r"\[\[ ## better_run ## \]\]\n(.*?)\n\n", user, re.S).group(1))
            worse = json.loads(re.search(r"\[\[ ## worse_run ## \]\]\n(.*?)\n\n", user, re.S).group(1))
            if better["outputs"]["answer"].isupper() and not worse["outputs"]["answer"].isupper():
                return {"rule": "Write the answer in uppercase letters."}
            return {"rule": f"Be careful, variant {len(log)}."}
        log.append("task")
        word = re.search(r"echo (w\d+)", user).group(1)
        cold = settings.get("temperature", 1.0) < 0.5
        return {"answer": word.upper() if "uppercase" in system or cold else word}

    return em.FunctionLM(answer)


def simba(metric, **kwargs):
    options = {"bsize": 4, "num_candidates": 3, "max_steps": 3, "max_demos": 1, "seed": 0, "concurrency": 1}
    return SIMBA(metric, **{**options, **kwargs})


class MarkedSIMBA(SIMBA):
    """SIMBA noting its metric's call count each time it keeps its state (step, final evaluations done)."""

    def _keep(self, state):
        self.marks[(state.search.step, len(state.search.final))] = self.metric.fn.calls
        super()._keep(state)


def test_simba_resumes_an_interrupted_run_at_its_step(store_url):
    em.configure(lm=simba_lm([]))
    whole_metric = Counting()
    whole = MarkedSIMBA(whole_metric, bsize=4, num_candidates=3, max_steps=3, max_demos=1, seed=0, concurrency=1)
    whole.marks = {}
    expected = whole.compile(em.Predict("question -> answer"), trainset=data(8), valset=data(4, offset=20))
    total = whole_metric.calls

    em.configure(lm=simba_lm([]))
    first = Counting(stop_at=40)
    with pytest.raises(KeyboardInterrupt):
        simba(first).compile(
            em.Predict("question -> answer"), trainset=data(8), valset=data(4, offset=20), resume="simba-legs"
        )
    _, state = kept(store_url, "simba-legs")
    search = state["state"]["search"]
    assert search["step"] >= 1 and len(search["pool"]) > 1  # stopped after at least one whole step
    kept_calls = whole.marks[(search["step"], len(search["final"]))]  # what the uninterrupted run had done there
    assert 0 < kept_calls < 40

    em.configure(lm=simba_lm([]))
    second_metric = Counting()
    second = simba(second_metric)
    compiled = second.compile(
        em.Predict("question -> answer"), trainset=data(8), valset=data(4, offset=20), resume="simba-legs"
    )
    assert second_metric.calls == total - kept_calls  # only the step in progress is run again
    assert compiled.signature.instructions == expected.signature.instructions
    assert compiled.demos == expected.demos
    result = second.last_result
    assert result.best_score == whole.last_result.best_score
    assert result.details["rules"] == whole.last_result.details["rules"]
    assert result.details["pool_size"] == whole.last_result.details["pool_size"]
    numbers = [t.number for t in result.trials]
    assert numbers == sorted(set(numbers)) and len(numbers) > len(whole.last_result.trials) - 1


def test_simba_max_trials_holds_across_legs(store_url):
    em.configure(lm=simba_lm([]))
    first = simba(Counting(), max_trials=5)
    first.compile(em.Predict("question -> answer"), trainset=data(8), valset=data(4, offset=20), resume="simba-t")
    assert first.last_result.stopped == "max_trials"
    done = len(first.last_result.trials)
    again_metric = Counting()
    again = simba(again_metric, max_trials=5)
    again.compile(em.Predict("question -> answer"), trainset=data(8), valset=data(4, offset=20), resume="simba-t")
    assert again.last_result.stopped == "max_trials" and again_metric.calls == 0
    assert len(again.last_result.trials) == done


# ---------------------------------------------------------------------------------------------- GEPA
class Feedbacks(Counting):
    """The GEPA tests' feedback metric, counting its calls and raising KeyboardInterrupt at call ``stop_at``."""

    def __call__(self, example, prediction, trace=None):
        from test_optimizers_gepa import feedback_metric

        self.calls += 1
        if self.stop_at is not None and self.calls == self.stop_at:
            raise KeyboardInterrupt
        return feedback_metric(example, prediction, trace)


def gepa_run(metric, run_id, calls=None, **options):
    from test_optimizers_gepa import data as echo_data
    from test_optimizers_gepa import scripted_lm

    lm = scripted_lm(calls)
    em.configure(lm=lm, output_retries=0)  # these tests count calls per trial; re-asks: test_output_retries.py
    options.setdefault("max_metric_calls", 40)
    gepa = em.optimizers.GEPA(metric, reflection_lm=lm, seed=0, concurrency=1, **options)
    compiled = gepa.compile(
        em.Predict("question -> answer"), trainset=echo_data(6), valset=echo_data(4, offset=10), resume=run_id
    )
    return gepa, compiled


def lineage(result):
    return [(c["index"], c["parents"], c["texts"], c["score"]) for c in result.details["candidates"]]


def engine_field(state, name):
    return dict(state["state"]["search"]["engine"]["__items__"])[name]


def test_gepa_resumes_its_text_search_from_the_kept_engine_state(store_url):
    pytest.importorskip("gepa")
    pytest.importorskip("optuna")
    whole_metric = Feedbacks()
    whole, expected = gepa_run(whole_metric, "gepa-whole")
    assert whole_metric.calls == 40

    with pytest.raises(KeyboardInterrupt):
        gepa_run(Feedbacks(stop_at=15), "gepa-legs")  # in the second iteration: the seed and one child are scored
    run, state = kept(store_url, "gepa-legs")
    assert run["status"] == "interrupted" and state["state"]["search"]["phase"] == "text"
    assert engine_field(state, "i") == 1 and engine_field(state, "total_num_evals") == 14
    assert len(engine_field(state, "program_candidates")) == 2  # the Pareto candidates, kept as JSON

    second_metric = Feedbacks()
    second, compiled = gepa_run(second_metric, "gepa-legs")
    assert second_metric.calls == 40 - 14  # the seed is not scored again, nor the accepted child
    assert compiled.signature.instructions == expected.signature.instructions
    result = second.last_result
    assert lineage(result) == lineage(whole.last_result)
    assert result.details["pareto_front"] == whole.last_result.details["pareto_front"]
    from test_optimizers_gepa import SECRET

    # the secret was found; on 4 rows no text can win the final paired comparison (p >= 1/16), in both runs alike
    assert any(SECRET in text and score == 100.0 for _, _, texts, score in lineage(result) for text in texts.values())
    assert result.details["instruction_choice"] == whole.last_result.details["instruction_choice"]
    assert result.best_score == whole.last_result.best_score
    assert result.details["metric_calls"] == 40  # the budget held across both legs
    counts = ("reflections", "reflections_truncated", "reflections_dropped", "reflections_failed")
    assert [result.details[k] for k in counts] == [whole.last_result.details[k] for k in counts]
    assert result.details["reflections"] > 0
    assert [t.score for t in result.trials] == [t.score for t in whole.last_result.trials]
    assert [t.number for t in result.trials] == list(range(len(result.trials)))
    assert result.pareto_front and all(t.full for t in result.pareto_front)
    run, _ = kept(store_url, "gepa-legs")
    assert run["status"] == "finished"


def test_gepa_resumes_its_variable_tuning_without_searching_texts_again(store_url):
    pytest.importorskip("gepa")
    pytest.importorskip("optuna")
    whole, expected = gepa_run(Feedbacks(), "gepa-tune-whole")
    with pytest.raises(KeyboardInterrupt):
        gepa_run(Feedbacks(stop_at=29), "gepa-tune")  # the text search took 20 calls; 2 tuning trials of 4 are done
    _, state = kept(store_url, "gepa-tune")
    search = state["state"]["search"]
    assert search["phase"] == "variables" and len(search["variable_trials"]) == 2
    assert state["state"]["spent"]["metric_calls"] == 28

    calls: list = []
    second, compiled = gepa_run(Feedbacks(), "gepa-tune", calls)
    assert not any(len(m) == 1 and "```" in m[-1]["content"] for m in calls)  # no reflection: the texts are done
    assert len(calls) == 3 * 4  # the 3 tuning trials left, each on the 4 validation examples
    _, state = kept(store_url, "gepa-tune")
    assert len(state["state"]["search"]["variable_trials"]) == 5
    assert compiled.signature.instructions == expected.signature.instructions
    assert lineage(second.last_result) == lineage(whole.last_result)
    assert second.last_result.best_score == whole.last_result.best_score
    assert second.last_result.details["metric_calls"] == 40


def test_gepa_lm_call_budget_holds_across_legs(store_url):
    pytest.importorskip("gepa")
    pytest.importorskip("optuna")
    whole, expected = gepa_run(Feedbacks(), "gepa-calls-whole", search_variables=False)
    calls: list = []
    first, _ = gepa_run(Feedbacks(), "gepa-calls", calls, max_lm_calls=12, search_variables=False)
    assert first.last_result.stopped == "max_lm_calls" and len(calls) <= 12
    calls.clear()
    again, _ = gepa_run(Feedbacks(), "gepa-calls", calls, max_lm_calls=12, search_variables=False)
    assert again.last_result.stopped == "max_lm_calls" and calls == []  # spent already: not one more call
    calls.clear()
    last, compiled = gepa_run(Feedbacks(), "gepa-calls", calls, search_variables=False)
    assert last.last_result.stopped is None
    assert compiled.signature.instructions == expected.signature.instructions
    assert lineage(last.last_result) == lineage(whole.last_result)
    assert again.last_result.lm_calls == first.last_result.lm_calls <= 12  # the run's totals: leg 2 added none
    assert last.last_result.lm_calls == first.last_result.lm_calls + len(calls)


# ---------------------------------------------------------------------------------------------- the others
NOT_RESUMABLE = [
    lambda: em.optimizers.LabeledFewShot(k=2),
    lambda: em.optimizers.BootstrapFewShot(Counting(), max_bootstrapped_demos=1),
    lambda: em.optimizers.KNNFewShot(k=1),
]


@pytest.mark.parametrize("make", NOT_RESUMABLE)
def test_optimizers_that_cannot_resume_refuse_an_unfinished_run(store_url, make):
    optimizer = make()
    assert not optimizer.resumable
    store = em.Store(store_url)
    store.create_run("half-done", optimizer.name, {})
    store.finish_run(
        "half-done", status="interrupted", best_score=None, best_version_id=None, lm_calls=0, tokens=0, cost=0.0
    )
    store.close()
    em.configure(lm=copro_lm([]))
    with pytest.raises(ConfigurationError, match=f"{optimizer.name} cannot resume run 'half-done'"):
        optimizer.compile(em.Predict("question -> answer"), trainset=data(4), resume="half-done")
    run, _ = kept(store_url, "half-done")
    assert run["status"] == "interrupted"  # left as it was


def test_ensemble_refuses_resume():
    with pytest.raises(ConfigurationError, match="Ensemble cannot resume run 'x'"):
        em.optimizers.Ensemble().compile([em.Predict("question -> answer")], resume="x")


def test_an_optimizer_that_cannot_resume_still_names_a_new_run_and_returns_a_finished_one(store_url):
    em.configure(lm=copro_lm([]))
    first = em.optimizers.LabeledFewShot(k=2)
    compiled = first.compile(em.Predict("question -> answer"), trainset=data(4), resume="labeled-run")
    assert first.last_result.run_id == "labeled-run"
    again = em.optimizers.LabeledFewShot(k=2)
    returned = again.compile(em.Predict("question -> answer"), trainset=data(4), resume="labeled-run")
    assert returned.demos == compiled.demos


def test_bootstrap_interrupted_then_resumed_is_refused(store_url):
    em.configure(lm=copro_lm([]))
    with pytest.raises(KeyboardInterrupt):
        em.optimizers.BootstrapFewShot(Counting(stop_at=2), max_bootstrapped_demos=2).compile(
            em.Predict("question -> answer"), trainset=data(4), resume="boot"
        )
    with pytest.raises(ConfigurationError, match="BootstrapFewShot cannot resume"):
        em.optimizers.BootstrapFewShot(Counting(), max_bootstrapped_demos=2).compile(
            em.Predict("question -> answer"), trainset=data(4), resume="boot"
        )


def test_mipro_metric_budget_counts_earlier_legs(store_url):
    pytest.importorskip("optuna")
    from store.test_store_reliability import Task, number_lm  # tests/ is on the path; tests/store is not always
    from store.test_store_reliability import data as numbers

    em.configure(lm=number_lm())

    def mipro(metric):
        return em.optimizers.MIPRO(metric, num_trials=6, num_candidates=3, max_metric_calls=30)

    first = mipro(Counting())
    first.compile(Task(), trainset=numbers(), resume="mipro-budget")
    assert first.last_result.stopped == "max_metric_calls"
    spent = first.last_result.details["metric_calls"]
    assert spent <= 30
    _, state = kept(store_url, "mipro-budget")
    assert state["optimizer"] == "MIPRO" and state["state"]["spent"]["metric_calls"] == spent
    again_metric = Counting()
    again = mipro(again_metric)
    again.compile(Task(), trainset=numbers(), resume="mipro-budget")
    assert again_metric.calls <= 30 - spent  # only what the whole run's budget has left
    assert again.last_result.details["metric_calls"] <= 30


GEPA_CHILD = """
import os, signal, sys
sys.path.insert(0, sys.argv[2])
import elixirml as em
from test_optimizers_resume import Feedbacks, gepa_run

class Killing(Feedbacks):
    def __call__(self, example, prediction, trace=None):
        if self.calls + 1 == 15:
            os.kill(os.getpid(), signal.SIGKILL)  # killed mid-iteration: nothing runs after this
        return super().__call__(example, prediction, trace)

em.configure(store=sys.argv[1])
gepa_run(Killing(), "gepa-killed")
"""


def test_gepa_resumes_after_sigkill_from_the_state_it_kept_while_running(store_url):
    import os
    import signal
    import subprocess
    import sys

    pytest.importorskip("gepa")
    pytest.importorskip("optuna")
    whole, expected = gepa_run(Feedbacks(), "gepa-unkilled")
    child = subprocess.run(
        [sys.executable, "-c", GEPA_CHILD, store_url, os.path.dirname(__file__)], timeout=120, capture_output=True
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-2000:]
    run, state = kept(store_url, "gepa-killed")
    assert run["status"] == "interrupted"  # its process is gone
    assert engine_field(state, "i") == 1 and state["state"]["spent"]["metric_calls"] == 14
    second_metric = Feedbacks()
    second, compiled = gepa_run(second_metric, "gepa-killed")
    assert second_metric.calls == 40 - 14
    assert compiled.signature.instructions == expected.signature.instructions
    assert lineage(second.last_result) == lineage(whole.last_result)
    assert second.last_result.details["metric_calls"] == 40


# ---------------------------------------------------------------------------------------------- searches
class Tempered(em.Program):
    temperature = em.Variable.float(default=1.0, low=0.0, high=2.0)

    def __init__(self):
        super().__init__()
        self.answer = em.Predict("question -> answer")

    def forward(self, question):
        return self.answer(question=question, config={"temperature": self.temperature})


def tempered_lm(log):
    """Right (the word in capitals) only below temperature 0.5; ``log`` counts the calls."""

    def answer(messages, settings):
        log.append(1)
        word = re.search(r"echo (w\d+)", messages[-1]["content"]).group(1)
        return {"answer": word.upper() if float(settings.get("temperature", 1.0)) < 0.5 else "no"}

    return em.FunctionLM(answer)


def test_random_search_resumes_at_the_candidate_after_the_last_one_scored(store_url):
    val = data(5, offset=10)

    def search(metric):
        return em.optimizers.RandomSearch(metric, num_candidates=6, max_bootstrapped_demos=0, seed=4)

    def val_calls(metric):
        return sum(1 for question in metric.seen if question in {e.question for e in val})

    em.configure(lm=tempered_lm([]))
    seen_whole = Seeing()
    whole = search(seen_whole)
    whole.compile(Tempered(), trainset=data(4), valset=val, resume="whole-random")
    assert len(whole.last_result.trials) == 6  # the structure trials count as candidates
    interrupted = search(Seeing(stop_at=len(seen_whole.seen) // 2))
    with pytest.raises(KeyboardInterrupt):
        interrupted.compile(Tempered(), trainset=data(4), valset=val, resume="random")
    run, state = kept(store_url, "random")
    finished = len(state["state"]["search"]["candidates"])
    assert run["status"] == "interrupted" and 0 < finished < 6
    seen_again = Seeing()
    again = search(seen_again)
    compiled = again.compile(Tempered(), trainset=data(4), valset=val, resume="random")
    assert [t.score for t in again.last_result.trials] == [t.score for t in whole.last_result.trials]
    assert [t.number for t in again.last_result.trials] == list(range(len(whole.last_result.trials)))
    # the structure is not chosen again and no finished candidate is scored again
    assert val_calls(seen_again) == len(val) * (6 - len(run["trial_list"]))
    assert compiled.temperature == whole.last_result.best_configuration["temperature"]


def test_variable_search_resumes_with_its_trials_in_the_study(store_url):
    optuna = pytest.importorskip("optuna")

    def search(metric):
        return em.optimizers.VariableSearch([metric, "latency"], n_trials=5, seed=2)

    em.configure(lm=tempered_lm([]))
    first = search(Counting())
    first.compile(Tempered(), trainset=data(4), valset=data(4, offset=10), resume="variables", max_trials=2)
    assert first.last_result.stopped == "max_trials"
    _, state = kept(store_url, "variables")
    done = state["state"]["search"]["trials"]
    assert len(done) == 2
    calls = []
    em.configure(lm=tempered_lm(calls))
    told = []
    original = optuna.study.Study.tell

    def spy(study, *args, **kwargs):
        told.append(len(study.trials))
        return original(study, *args, **kwargs)

    optuna.study.Study.tell = spy
    try:
        scored = Counting()
        again = search(scored)
        again.compile(Tempered(), trainset=data(4), valset=data(4, offset=10), resume="variables")
    finally:
        optuna.study.Study.tell = original
    assert len(again.last_result.trials) == 5
    assert [t.configuration["temperature"] for t in again.last_result.trials[:2]] == [
        t["params"]["temperature"] for t in done
    ]
    assert len(calls) <= 3 * 4  # the three trials left, nothing repeated
    assert scored.calls == 3 * 4
    assert told and told[0] == 3  # the study already held the two earlier trials when the third was told
    assert again.last_result.pareto_front


# ---------------------------------------------------------------------------------------------- calls before a kill
KILLED_CHILD = """
import sys
sys.path.insert(0, sys.argv[1])
from test_optimizers_resume import killable_run
killable_run(*sys.argv[2:])
"""


def exact(example, prediction, trace=None):
    return float(prediction.answer == example.answer)


def killable(name, lm, concurrency):
    """``name``'s optimizer, program, trainset and valset for the kill tests, asking ``lm``."""
    if name == "RandomSearch":
        search = em.optimizers.RandomSearch(
            exact, num_candidates=30, max_bootstrapped_demos=0, seed=4, concurrency=concurrency
        )
        return search, Tempered(), data(4), data(5, offset=10)
    if name == "MIPRO":
        from test_optimizers import Task, metric, trainset

        return em.optimizers.MIPRO(metric, auto="light", concurrency=concurrency), Task(), trainset(), trainset(12, 30)
    from test_optimizers_gepa import data as echo_data

    gepa = em.optimizers.GEPA(Feedbacks(), reflection_lm=lm, seed=0, concurrency=concurrency, max_metric_calls=1000)
    return gepa, em.Predict("question -> answer"), echo_data(6), echo_data(4, offset=10)


def killable_answers(name):
    if name == "RandomSearch":
        return tempered_lm([]).fn
    if name == "MIPRO":
        from test_optimizers import task_lm

        return task_lm().fn
    from test_optimizers_gepa import scripted_lm

    return scripted_lm().fn


def killable_run(store_url, name, calls_file, budget, concurrency, kill_at="0", delay="0"):
    """One leg of run ``killed`` of optimizer ``name`` with ``max_lm_calls=budget``; returns the optimizer.

    Every LM call the leg makes adds a byte to ``calls_file``; with ``kill_at`` the process kills
    itself with SIGKILL while it answers the call that makes the file ``kill_at`` bytes long.
    """
    import os
    import signal
    import time

    inner, kill_at, delay = killable_answers(name), int(kill_at), float(delay)

    def answer(messages, settings):
        with open(calls_file, "a") as f:
            f.write("1")
        if kill_at and os.path.getsize(calls_file) >= kill_at:
            os.kill(os.getpid(), signal.SIGKILL)  # killed while this call is being answered: it was made
        time.sleep(delay)
        return inner(messages, settings)

    lm = em.FunctionLM(answer)
    em.configure(store=store_url, lm=lm)
    optimizer, program, train, val = killable(name, lm, int(concurrency))
    optimizer.compile(program, trainset=train, valset=val, resume="killed", max_lm_calls=int(budget))
    return optimizer


def killed_then_resumed(store_url, tmp_path, name, *, kill_at, budget, concurrency, delay=0.0):
    """Run ``name`` in a child killed with SIGKILL at its ``kill_at``-th LM call, then resume the run here.

    Returns (LM calls the killed leg made, LM calls the resumed leg made, the resumed optimizer's result).
    """
    import os
    import signal
    import subprocess
    import sys

    first, second = tmp_path / "first", tmp_path / "second"
    first.write_text("")
    second.write_text("")
    arguments = [os.path.dirname(__file__), store_url, name, first, budget, concurrency, kill_at, delay]
    child = subprocess.run([sys.executable, "-c", KILLED_CHILD, *map(str, arguments)], timeout=300, capture_output=True)
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-2000:]
    resumed = killable_run(store_url, name, second, budget, concurrency)
    return len(first.read_text()), len(second.read_text()), resumed.last_result


def test_calls_made_before_a_sigkill_count_in_the_resumed_run_exactly_when_calls_are_slow(store_url, tmp_path):
    from elixirml.optimizers._run import CallLedger

    # one call at a time, further apart than CallLedger.INTERVAL: the count is written ahead of every call
    delay = CallLedger.INTERVAL + 0.02
    first, second, result = killed_then_resumed(
        store_url, tmp_path, "RandomSearch", kill_at=9, budget=24, concurrency=1, delay=delay
    )
    assert first == 9
    assert result.stopped == "max_lm_calls"
    assert first + second == 24  # the whole run kept to its budget, and was not cut short
    assert result.lm_calls == 24  # every call of the killed leg counted, none twice
    run, _ = kept(store_url, "killed")
    assert run["lm_calls"] == 24


@pytest.mark.parametrize("name", ["RandomSearch", "MIPRO", "GEPA"])
def test_a_run_killed_with_sigkill_and_resumed_counts_every_call_and_stops_at_its_budget(store_url, tmp_path, name):
    from elixirml.optimizers._run import CallLedger

    pytest.importorskip("optuna")
    if name == "GEPA":
        pytest.importorskip("gepa")
    budget, concurrency = 100, 4
    first, second, result = killed_then_resumed(
        store_url, tmp_path, name, kill_at=40, budget=budget, concurrency=concurrency
    )
    assert first >= 40  # calls answered at once on other threads may land past the kill
    assert result.stopped == "max_lm_calls"
    assert first + second <= budget  # the whole run, both legs, kept to its budget
    # fast calls share a lease, so the count kept may exceed the calls made by calls reserved and not sent
    # (a lease at most a sixteenth of the budget, and the calls taken on other threads as the kill came)
    unsent = min(CallLedger.MAX_LEASE, budget // 16) - 1 + concurrency
    assert first + second <= result.lm_calls <= first + second + unsent
    assert result.lm_calls <= budget
    run, _ = kept(store_url, "killed")
    assert run["lm_calls"] == result.lm_calls


def test_bootstrap_stopped_by_its_call_budget_reports_the_calls_it_made():
    calls: list[int] = []

    def answer(messages, settings):
        calls.append(1)
        return {"answer": "wrong"}

    em.configure(lm=em.FunctionLM(answer))
    boot = em.optimizers.BootstrapFewShot(Counting(), max_bootstrapped_demos=4)
    boot.compile(em.Predict("question -> answer"), trainset=data(20), max_lm_calls=5)
    assert len(calls) == 5
    assert boot.last_result.stopped == "max_lm_calls"
    assert boot.last_result.lm_calls == 5


def test_a_resumed_mipro_run_keeps_its_trials_proposals_and_final_comparison(store_url):
    pytest.importorskip("optuna")

    def answer(messages, settings):
        system, user = messages[0]["content"], messages[-1]["content"]
        if "Summarize what these examples" in system:
            return {"summary": "Questions that ask to echo a word."}
        if "Propose a better instruction" in system:
            return {"proposed_instruction": f"Echo the word of the question in capitals {settings.get('rollout_id')}."}
        word = re.search(r"echo (w\d+)", user).group(1)
        return {"answer": word.upper() if "capitals" in system else word}

    em.configure(lm=em.FunctionLM(answer))

    def run(metric, run_id):
        mipro = em.optimizers.MIPRO(metric, num_trials=6, num_candidates=3, display_progress=False)
        mipro.compile(em.Predict("question -> answer"), trainset=data(8), valset=data(8, offset=20), resume=run_id)
        return mipro.last_result

    whole = run(Counting(), "mipro-whole")
    with pytest.raises(KeyboardInterrupt):  # stopped in its search, after the proposals and a few trials
        run(Counting(stop_at=60), "mipro-resumed")
    resumed = run(Counting(), "mipro-resumed")

    def listed(result):
        return [(t.number, t.configuration, t.score, t.full) for t in result.trials]

    # the earlier leg's trials (its baseline first), numbered as the store numbered them
    assert listed(resumed) == listed(whole)
    assert resumed.trials[0].configuration == {} and len({t.number for t in resumed.trials}) == len(resumed.trials)
    assert [e["instruction"] for e in resumed.details["proposals"]] == [
        e["instruction"] for e in whole.details["proposals"]
    ]
    assert resumed.details["instruction_choice"] == whole.details["instruction_choice"]


def test_a_leg_stopped_by_a_budget_keeps_the_searchs_best_not_the_final_choice(store_url):
    # round 0 proposes "lucky" (right on 2 rows of 6: the best by mean, but noise) and "plain" (no row);
    # round 1 proposes "faint" (a tenth of a point on every row: 10%, worse than lucky by mean)
    def lm():
        basic = {"n": 0}

        def answer(messages, settings):
            system, user = messages[0]["content"], messages[-1]["content"]
            if "I will give you instructions I tried" in system:
                return {"proposed_instruction": "Echo the word, faint."}
            if "Write a better instruction" in system:
                basic["n"] += 1
                return {"proposed_instruction": "Echo the word, lucky." if basic["n"] == 1 else "Echo the word, plain."}
            word = re.search(r"echo (w\d+)", user).group(1)
            if "lucky" in system and word in ("w0", "w1"):
                return {"answer": word.upper()}
            return {"answer": word + "." if "faint" in system else "nope"}

        return em.FunctionLM(answer)

    def partial(example, prediction, trace=None):
        return (
            1.0
            if prediction.answer == example.answer
            else 0.1
            if prediction.answer == example.answer.lower() + "."
            else 0.0
        )

    def run(run_id, **budget):
        optimizer = copro(partial, display_progress=False)
        compiled = optimizer.compile(em.Predict("question -> answer"), trainset=data(6), resume=run_id, **budget)
        return compiled, optimizer.last_result

    em.configure(lm=lm())
    expected, whole = run("copro-whole-choice")
    assert whole.details["instruction_choice"]["kept"] == "original"  # lucky is the best, and noise

    em.configure(lm=lm())
    _, first = run("copro-choice-legs", max_trials=3)  # the original, lucky and plain: round 0 only
    assert first.stopped == "max_trials" and first.details["instruction_choice"]["kept"] == "original"
    _, state = kept(store_url, "copro-choice-legs")
    assert "lucky" in state["state"]["best"]["configuration"]["instructions"]  # the search's best, not the choice
    compiled, second = run("copro-choice-legs")
    # faint does not beat lucky, so the search's best stays lucky and the original is kept, as in the whole run
    assert compiled.signature.instructions == expected.signature.instructions
    assert second.details["instruction_choice"]["kept"] == "original"
    assert [t.score for t in second.trials] == [t.score for t in whole.trials]
