"""Optimizers never present junk as a result: off-topic proposals are dropped before trials, and said why."""

from typing import Literal

import pytest

import elixirml as em
from elixirml.optimizers._propose import instruction_verdict


class Sentiment(em.Signature):
    """Classify the sentiment of the sentence."""

    sentence: str = em.InputField()
    sentiment: Literal["positive", "negative"] = em.OutputField()


QA = em.Signature("context, question -> answer")


@pytest.mark.parametrize(
    "text",
    [
        "Awesome, no less than 15 other challenges will be announced, including a 2-day concert on the beach.",
        "1. Rewrite the code to remove the 'data_type=",
        "sentence: a gorgeous, witty film\nsentiment: positive",
        "def classify(sentence): return 'positive'",
        "The new marketing strategy reduces the social platforms.",
    ],
)
def test_junk_the_demo_and_the_quick_tour_chose_is_dropped(text):
    assert instruction_verdict(text, Sentiment) is not None


@pytest.mark.parametrize(
    "text",
    [
        "Decide whether the sentence is positive or negative.",
        "Read the review and label it.",
        "You are an expert annotator of movie reviews.",
        "Double the number meticulously.",
    ],
)
def test_instructions_about_the_task_are_kept(text):
    assert instruction_verdict(text, Sentiment) is None


def test_qa_instructions():
    assert instruction_verdict("Answer the question from the context in a few words.", QA) is None
    assert instruction_verdict("Awesome, no less than 15 other challenges will be announced.", QA) is not None


def rows(n):
    return [em.Example(question=f"item {i}", answer=str(2 * i)).with_inputs("question") for i in range(n)]


def proposing_lm(proposal):
    def answer(messages, settings):
        system, user = messages[0]["content"], messages[-1]["content"]
        if "Summarize what these examples" in system:
            return {"summary": "Numbers and their doubles."}
        if "Propose a better instruction" in system:
            return {"proposed_instruction": proposal}
        import re

        return {"answer": str(2 * int(re.search(r"item (\d+)", user).group(1)))}

    return em.FunctionLM(answer)


def test_mipro_drops_an_off_topic_proposal_before_it_costs_a_trial_and_says_why():
    em.configure(lm=proposing_lm("Awesome, no less than 15 other challenges will be announced, with a concert."))
    mipro = em.optimizers.MIPRO(em.metrics.exact_match, num_candidates=3, num_trials=4, seed=0)
    compiled = mipro.compile(em.Predict("question -> answer"), trainset=rows(8), valset=rows(4))
    logged = mipro.last_result.details["proposals"]
    assert logged and all(not p["kept"] and p["reason"].startswith("off the task") for p in logged)
    assert all("Awesome" not in str(t.configuration.get("instructions", "")) for t in mipro.last_result.trials)
    assert "Awesome" not in compiled.instructions


def test_placeholder_trainset_warns_that_the_result_means_nothing():
    em.configure(lm=em.DummyLM([{"answer": "..."}] * 50))
    placeholder = [em.Example(context="...", question="...", answer="...").with_inputs("context", "question")]
    with pytest.warns(UserWarning, match="placeholders.*means nothing"):
        em.optimizers.LabeledFewShot().compile(em.Predict("context, question -> answer"), trainset=placeholder)
