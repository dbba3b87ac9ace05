"""MIPRO improves the program users actually write: structure first, on-task proposals, noise-aware selection."""

from __future__ import annotations

import random
import re
from typing import Literal

import pytest

import elixirml as em
from elixirml.optimizers import MIPRO, RandomSearch, VariableSearch

optuna = pytest.importorskip("optuna")

ORIGINAL = "Classify the sentiment of a movie review sentence."


class Sentiment(em.Signature):
    """Classify the sentiment of a movie review sentence."""

    sentence: str = em.InputField()
    sentiment: Literal["positive", "negative"] = em.OutputField()


class Classifier(em.Program):
    """The README-style program of the issue: nothing declared beyond the temperature."""

    temperature = em.Variable.float(default=0.7, low=0.0, high=1.0)

    def __init__(self):
        super().__init__()
        self.classify = em.Predict(Sentiment)

    def forward(self, sentence):
        return self.classify(sentence=sentence, config={"temperature": self.temperature})


def data(n, offset=0):
    return [
        em.Example(
            sentence=f"{'good' if i % 2 else 'bad'} film {i}", label="positive" if i % 2 else "negative"
        ).with_inputs("sentence")
        for i in range(offset, offset + n)
    ]


def structural_lm(proposals=None):
    """Right only with the plain prompt format and the original instruction; proposals are off-topic."""

    def answer(messages, settings):
        system, user = messages[0]["content"], messages[-1]["content"]
        if "Summarize what these examples" in system:
            return {"summary": "Movie review sentences with a sentiment label."}
        if "Propose a better instruction" in system:
            if proposals is not None:
                proposals.append(1)
            count = len(proposals or [])
            return {"proposed_instruction": f"The new marketing strategy {count} reduces the social platforms."}
        plain = user.startswith("sentence: ")
        on_task = system.startswith(ORIGINAL)
        sentence = user.split("sentence", 1)[1]
        truth = "positive" if "good" in sentence else "negative"
        if plain and on_task:
            return {"sentiment": truth}
        if plain:  # an off-topic instruction makes the model answer backwards
            return {"sentiment": "negative" if truth == "positive" else "positive"}
        return {"sentiment": "positive"}

    return em.FunctionLM(answer)


metric = em.metrics.ExactMatch(field="label", pred_field="sentiment")


def test_every_predictor_has_an_implicit_prompt_format_variable():
    space = Classifier().variable_space()
    assert space["classify.adapter"].options == ["auto", "chat", "json", "plain"]
    assert space.current()["classify.adapter"] == "auto"
    assert em.Predict(Sentiment, adapter="plain").variable_space().current()["adapter"] == "plain"
    program = Classifier().with_variables(**{"classify.adapter": "plain"})
    assert program.classify.adapter == "plain"


def test_mipro_finds_the_structure_that_helps_and_keeps_the_instruction_that_works():
    proposals = []
    em.configure(lm=structural_lm(proposals))
    optimizer = MIPRO(metric, auto="light", seed=0, storage="sqlite:///:memory:", num_trials=6)
    compiled = optimizer.compile(Classifier(), trainset=data(20), valset=data(30, offset=100))
    result = optimizer.last_result
    assert result.trials[0].score == 50.0  # the program as written
    assert result.details["structure"] == {"classify.adapter": "plain"}
    assert result.best_score == 100.0, result.summary()
    assert compiled.classify.adapter == "plain"
    assert compiled.classify.instructions == ORIGINAL
    # every proposal was off-topic: all three scored below the original on the probe set and were dropped
    # the off-topic proposals are dropped before they cost a trial (none reaches the probe rows)
    logged = result.details["proposals"]
    assert len(proposals) == len(logged) >= 3 and result.details["instructions_dropped"] == 0
    assert all(not p["kept"] and p["reason"].startswith("off the task") for p in logged)
    assert all(ORIGINAL in str(t.configuration.get("classify.instructions", ORIGINAL)) for t in result.trials)
    assert em.evaluate(compiled, data(20, offset=500), metric, display_progress=False).score == 100.0


def test_random_search_and_variable_search_score_the_structure_first():
    em.configure(lm=structural_lm())
    search = RandomSearch(metric, num_candidates=3, max_bootstrapped_demos=1, max_labeled_demos=2)
    compiled = search.compile(Classifier(), trainset=data(10), valset=data(20, offset=100))
    assert search.last_result.details["structure"] == {"classify.adapter": "plain"}
    assert compiled.classify.adapter == "plain" and search.last_result.best_score == 100.0
    multi = VariableSearch(metrics={"accuracy": metric, "tokens": "tokens"}, n_trials=4, seed=0)
    multi.compile(Classifier(), trainset=data(10), valset=data(20, offset=100))
    assert multi.last_result.details["structure"] == {"classify.adapter": "plain"}
    assert all(t.configuration["classify.adapter"] == "plain" for t in multi.last_result.trials)


def test_the_result_is_never_worse_than_the_program_as_given():
    # the program as written is already right; every other structure and proposal is worse
    lm = structural_lm()
    em.configure(lm=lm)
    given = Classifier().with_variables(**{"classify.adapter": "plain"})
    optimizer = MIPRO(metric, auto="light", seed=1, storage="sqlite:///:memory:", num_trials=4)
    compiled = optimizer.compile(given, trainset=data(12), valset=data(20, offset=100))
    assert optimizer.last_result.best_score == 100.0
    assert optimizer.last_result.details["structure"] == {}
    assert compiled.classify.adapter == "plain"


def test_promotion_follows_the_score_differences():
    from elixirml.optimizers._base import OptimizationState
    from elixirml.optimizers._search import MIPROState

    def study_with(values):
        study = optuna.create_study(direction="maximize")
        dist = {"x": optuna.distributions.CategoricalDistribution(["a", "b", "c", "d"])}
        for x, value in values:
            study.add_trial(optuna.trial.create_trial(params={"x": x}, distributions=dist, value=value))
        return study

    def run(values, best_full):
        em.configure(lm=em.DummyLM([{"answer": "x"}] * 200))
        optimizer = MIPRO(metric, num_trials=4, minibatch_size=25, storage="sqlite:///:memory:")
        promoted = []
        optimizer._config_from_params = lambda state, params: promoted.append(params["x"]) or {}
        state = OptimizationState(em.Predict("question -> answer"), [], data(50), random.Random(0))
        state.best_score = best_full
        state.search = MIPROState(
            study=study_with(values),
            instructions={},
            demo_sets={},
            space=em.Predict("q -> a").variable_space(),
            others=[],
        )
        optimizer._promote_close_calls(state)
        return promoted

    # close scores on 25-example minibatches: the intervals overlap, so all are checked on the full set
    assert run([("a", 72.0), ("b", 68.0), ("c", 64.0), ("d", 60.0)], best_full=70.0) == ["a", "b", "c", "d"]
    # far apart, with many minibatches behind them: only the best is promoted
    far = [("a", 90.0)] * 4 + [("b", 20.0)] * 4 + [("c", 10.0)] * 4
    assert run(far, best_full=85.0) == ["a"]


def test_random_search_projection_counts_its_structure_phase(capsys):
    """The projection printed first counts the structure trials and the teacher's batches (was 36 for 64 made)."""
    em.configure(lm=structural_lm())
    for rows in (8, 40):
        search = RandomSearch(metric, num_candidates=4, max_bootstrapped_demos=1, max_labeled_demos=2)
        search.compile(Classifier(), trainset=data(10), valset=data(rows, offset=100))
        projected = int(re.search(r"projected (\d+) LM calls", capsys.readouterr().err).group(1))
        actual = search.last_result.lm_calls
        assert 0.8 * actual <= projected <= 1.3 * actual, (rows, projected, actual)


def test_mipro_cut_short_after_its_structure_phase_returns_the_structure_that_won():
    """The structure is scored on a sample; scored on the whole set at once, it is the result of a run cut short."""
    em.configure(lm=structural_lm())
    optimizer = MIPRO(metric, auto="light", seed=0, storage="sqlite:///:memory:", num_trials=6)
    # 60 validation rows, structures scored on 50; the metric budget stops the run before its first search trial
    compiled = optimizer.compile(Classifier(), trainset=data(20), valset=data(60, offset=100), max_metric_calls=260)
    result = optimizer.last_result
    assert result.stopped == "max_metric_calls"
    assert any(t.full and t.configuration.get("classify.adapter") == "plain" for t in result.trials)
    assert result.details["structure"] == {"classify.adapter": "plain"}
    assert compiled.classify.adapter == "plain" and result.best_score == 100.0, result.summary()
