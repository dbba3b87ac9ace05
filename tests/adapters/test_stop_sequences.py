"""The prompt format's own ends stop the answer; an answer that never ends says so and what helps."""

import pytest

import elixirml as em
from elixirml.errors import TruncatedResponseError
from elixirml.lm import Completion, LMResponse, Usage
from elixirml.runtime import RetryPolicy


def stopping_lm(text, supports_stop=True):
    """A FunctionLM that writes ``text`` and, like a real server, ends it at the first stop sequence."""

    def answer(messages, settings):
        cut = len(text)
        for stop in settings.get("stop") or ():
            found = text.find(stop)
            if found >= 0:
                cut = min(cut, found)
        return text[:cut]

    lm = em.FunctionLM(answer)
    if not supports_stop:
        lm.supported_settings = frozenset(lm.supported_settings - {"stop"})
    return lm


RAMBLING_PLAIN = "answer: Paris\n\nquestion: What else is in Paris?\nanswer: The Louvre, and more and more"
RAMBLING_CHAT = (
    "[[ ## answer ## ]]\nParis\n\n[[ ## completed ## ]]\n\n[[ ## question ## ]]\nWhat else?\n\n"
    "[[ ## answer ## ]]\nThe Louvre"
)


def test_plain_format_ends_a_one_field_answer_at_its_end_of_field():
    lm = stopping_lm(RAMBLING_PLAIN)
    pred = em.Predict("context, question -> answer", lm=lm, adapter="plain")(context="c", question="Where?")
    assert pred.answer == "Paris"
    assert lm.history[-1]["settings"]["stop"] == ["\n\n", "\ncontext:", "\nquestion:"]


def test_chat_format_ends_the_answer_at_the_next_marker():
    lm = stopping_lm(RAMBLING_CHAT.replace("[[ ## completed ## ]]\n\n", ""))  # a model that skips `completed`
    pred = em.Predict("context, question -> answer", lm=lm, adapter="chat")(context="c", question="Where?")
    assert pred.answer == "Paris"
    markers = ["[[ ## completed ## ]]", "[[ ## context ## ]]", "[[ ## question ## ]]"]
    assert lm.history[-1]["settings"]["stop"] == markers


def test_stop_sequences_are_at_most_four_and_the_callers_stop_wins():
    lm = stopping_lm("answer: a")
    predict = em.Predict("a, b, c, d, e -> answer", lm=lm, adapter="plain")
    predict(a="1", b="2", c="3", d="4", e="5")
    assert lm.history[-1]["settings"]["stop"] == ["\n\n", "\na:", "\nb:", "\nc:"]
    predict(a="1", b="2", c="3", d="4", e="5", config={"stop": ["END"]})
    assert lm.history[-1]["settings"]["stop"] == ["END"]


def test_no_stop_for_formats_without_ends_or_lms_that_take_none():
    lm = em.DummyLM([{"answer": "x"}])
    em.Predict("question -> answer", lm=lm, adapter="json")(question="q")
    assert "stop" not in lm.requests[0]["settings"]
    lm = stopping_lm("answer: Paris", supports_stop=False)
    assert em.Predict("question -> answer", lm=lm, adapter="plain")(question="q").answer == "Paris"
    assert "stop" not in lm.history[-1]["settings"]


def test_an_answer_that_never_ends_says_so_and_what_helps():
    def rambling(messages, settings):
        text = "answer: the Normans " + "and the Normans " * 40
        return LMResponse([Completion(text, finish_reason="length")], Usage(10, 512, calls=1), "function")

    lm = em.FunctionLM(rambling, retry=RetryPolicy(truncation_retries=0))
    with pytest.raises(TruncatedResponseError) as info:
        em.Predict("context, question -> answer", lm=lm, adapter="plain")(context="c", question="q")
    message = str(info.value)
    assert "never ended its answer" in message
    assert "and the Normans" in message  # how it ended
    assert "short answer" in message and "stop sequences" in message and "stronger LM" in message
