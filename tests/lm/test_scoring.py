"""Decoding by log-probability: reading scores off token logprobs, OpenAI-compatible scoring, adapters."""

from typing import Literal

import pytest

import elixirml as em
from elixirml.errors import AdapterParseError, ConfigurationError, LoadError, ProviderResponseError, VariableError
from elixirml.lm._logprobs import score_continuations
from elixirml.schema import ensure_signature
from elixirml.testing import FakeLMServer


def tok(text, logprob, *alternatives):
    return {"token": text, "logprob": logprob, "top_logprobs": [{"token": t, "logprob": lp} for t, lp in alternatives]}


def test_scores_follow_the_greedy_answer_and_branch_off_into_alternatives():
    tokens = [
        tok("sentiment", -0.1),
        tok(":", -0.01),
        tok(" pos", -0.4, (" pos", -0.4), (" neg", -1.5), (" ne", -2.0)),
        tok("itive", -0.2, ("itive", -0.2)),
    ]
    scores = score_continuations(tokens, "sentiment: ", ["positive", "negative", "neutral"])
    assert scores[0] == pytest.approx(-0.6)  # both tokens of the greedy answer
    assert scores[1] == pytest.approx(-1.5)  # the longest listed alternative that starts "negative"
    assert scores[2] == pytest.approx(-2.0)  # "ne" is the only listed start of "neutral"


def test_absent_values_get_the_smallest_listed_logprob_and_whitespace_after_the_prefix_is_skipped():
    tokens = [
        tok("[[", -0.1),
        tok(" ## answer ## ]]", -0.1),
        tok("\n", -0.05),
        tok("yes", -0.3, ("yes", -0.3), ("maybe", -4.0)),
    ]
    assert score_continuations(tokens, "[[ ## answer ## ]]\n", ["yes", "no"]) == pytest.approx([-0.3, -4.0])


def test_an_answer_without_the_prefix_is_read_where_it_gives_a_value():
    tokens = [
        tok("The", -0.2),
        tok(" review", -0.3, (" sentence", -1.0)),
        tok(" is", -0.1),
        tok(" Negative", -0.7, (" Negative", -0.7), (" positive", -1.2), (" Positive", -0.9)),
        tok(".", -0.1),
    ]
    # case is ignored; of two listed spellings the likelier one counts
    assert score_continuations(tokens, "sentiment: ", ["positive", "negative"]) == pytest.approx([-0.9, -0.7])
    only_listed = [tok("I", -0.1, ("positive", -2.5)), tok(" think", -0.1)]
    assert score_continuations(only_listed, "sentiment: ", ["positive", "negative"]) == pytest.approx([-2.5, -2.5])
    with pytest.raises(ProviderResponseError, match="neither wrote the prefix"):
        score_continuations([tok("hello", -0.1)], "label: ", ["yes", "no"])


class Sentiment(em.Signature):
    """Classify the sentiment of the sentence."""

    sentence: str = em.InputField()
    sentiment: Literal["positive", "negative"] = em.OutputField()


def scoring_server_answer(body):
    """A model that prefers "negative" a priori; only an enthusiastic sentence tips it (a little)."""
    user = body["messages"][-1]["content"]
    if not body.get("logprobs"):
        return "sentiment: positive"
    if "N/A" in user:  # content-free input: the model's prior
        first = ("negative", -0.2, "positive", -2.0)
    elif "wonderful" in user:
        first = ("negative", -0.9, "positive", -1.0)
    else:
        first = ("negative", -0.1, "positive", -3.0)
    alternatives = [(first[0], first[1]), (first[2], first[3])]
    return {
        "content": f"sentiment: {first[0]}",
        "logprobs": [tok("sentiment", -0.01), tok(":", -0.01), tok(" " + first[0], first[1], *alternatives)],
    }


@pytest.fixture
def server():
    with FakeLMServer(scoring_server_answer) as srv:
        yield srv


def scoring_lm(server, **kwargs):
    kwargs.setdefault("cache", False)
    return em.LM("openai/fake", base_url=server.base_url, api_key="sk-x", supports_scoring=True, **kwargs)


def test_score_and_calibrated_decoding_on_an_openai_compatible_server(server):
    lm = scoring_lm(server)
    scored = em.Predict(Sentiment, lm=lm, adapter="plain", decoding="score")
    assert scored(sentence="a wonderful film").sentiment == "negative"  # the raw prior wins
    body = server.requests[-1]
    assert body["logprobs"] is True and body["top_logprobs"] == 20 and body["temperature"] == 0.0
    assert body["messages"][0]["content"] == Sentiment.instructions  # the plain scoring prompt
    calibrated = em.Predict(Sentiment, lm=lm, adapter="plain", decoding="calibrated")
    with em.track_usage() as usage:
        assert calibrated(sentence="a wonderful film").sentiment == "positive"  # the prior divided out
        assert calibrated(sentence="a dull film").sentiment == "negative"
    assert usage.calls == 4  # each answer and its content-free input


def test_scoring_needs_logprobs_from_the_server_and_an_lm_that_says_it_can():
    with FakeLMServer(lambda body: "sentiment: positive") as srv:
        lm = scoring_lm(srv)
        with pytest.raises(ProviderResponseError, match="returned no logprobs"):
            em.Predict(Sentiment, lm=lm, decoding="score")(sentence="x")
        plain_lm = em.LM("openai/fake", base_url=srv.base_url, api_key="sk-x", cache=False)
        with pytest.raises(ConfigurationError, match="cannot score"):
            em.Predict(Sentiment, lm=plain_lm, decoding="score")(sentence="x")
        # the space does not depend on the LM; optimizers leave out what the LM cannot run
        assert "decoding" in em.Predict(Sentiment, lm=plain_lm).variable_space().names()
        assert "decoding" in em.Predict(Sentiment, lm=lm).variable_space().names()


def test_scores_are_cached_like_answers(server, tmp_path):
    lm = scoring_lm(server, cache=tmp_path / "c.sqlite")
    predict = em.Predict(Sentiment, lm=lm, adapter="plain", decoding="score")
    predict(sentence="a dull film")
    served = server.served
    with em.track_usage() as usage:
        assert predict(sentence="a dull film").sentiment == "negative"
    assert server.served == served and usage.cached_calls == 1


def test_plain_adapter_formats_fields_as_lines_and_parses_tolerantly():
    plain = em.PlainAdapter()
    demo = em.Example(sentence="great", sentiment="positive").with_inputs("sentence")
    messages = plain.format(Sentiment, [demo], {"sentence": "dull"})
    assert messages[0]["content"].startswith(Sentiment.instructions)
    assert "sentiment: positive or negative" in messages[0]["content"]
    assert [m["content"] for m in messages[1:]] == ["sentence: great", "sentiment: positive", "sentence: dull"]
    for completion in ("sentiment: Negative", "**Sentiment**: negative\n", "negative", "```\nsentiment: negative\n```"):
        assert plain.parse(Sentiment, completion) == {"sentiment": "negative"}
    assert plain.scoring_parts(Sentiment, "sentiment", ["positive", "negative"]) == (
        "sentiment: ",
        ["positive", "negative"],
    )


def test_plain_adapter_multi_field_answers_and_missing_fields():
    plain = em.PlainAdapter()
    sig = ensure_signature("question -> reasoning, answer: int")
    assert plain.parse(sig, "reasoning: two plus\ntwo is four\nanswer: 4") == {
        "reasoning": "two plus\ntwo is four",
        "answer": 4,
    }
    with pytest.raises(AdapterParseError, match="answer"):
        plain.parse(sig, "reasoning: hmm")


def test_the_adapter_can_be_a_variable_that_optimizers_set_and_programs_save(tmp_path):
    seen = []

    def answer(messages, settings):
        seen.append(messages[-1]["content"])
        return (
            "sentiment: positive"
            if messages[-1]["content"].startswith("sentence:")
            else "[[ ## sentiment ## ]]\nnegative"
        )

    lm = em.FunctionLM(answer)
    predict = em.Predict(Sentiment, lm=lm, adapter=em.Variable.choice(["chat", "plain"]))
    space = predict.variable_space()
    assert "adapter" in space.names()
    assert predict(sentence="x").sentiment == "negative"  # the default: chat
    plain = predict.with_variables(adapter="plain")
    assert plain(sentence="x").sentiment == "positive" and seen[-1] == "sentence: x"
    assert predict.adapter == "chat"  # the input program is untouched
    path = plain.save(tmp_path / "p.json")
    assert em.load(path).adapter == "plain"
    fresh = em.Predict(Sentiment, lm=lm).load(path)
    assert fresh.adapter == "plain" and fresh(sentence="y").sentiment == "positive"


def test_bad_adapter_names_fail_early():
    with pytest.raises(ConfigurationError, match="Unknown adapter name 'yaml'"):
        em.Predict(Sentiment, adapter="yaml")
    with pytest.raises(ConfigurationError, match="Unknown adapter name"):
        em.Predict(Sentiment, adapter=em.Variable.choice(["chat", "yaml"]))
    with pytest.raises(ConfigurationError, match="adapter names"):
        em.Predict(Sentiment, adapter=em.Variable.float(default=0.5, low=0, high=1))
    with pytest.raises(VariableError, match="'yaml' is not one of"):
        em.Predict(Sentiment, adapter=em.Variable.choice(["chat", "plain"])).with_variables(adapter="yaml")
    state = em.Predict(Sentiment, adapter="plain").dump_state()
    state["adapter"] = "yaml"
    with pytest.raises(LoadError, match="unknown adapter"):
        em.Predict(Sentiment).load_state(state)


def test_test_doubles_answer_the_plain_adapter_in_its_own_format():
    lm = em.DummyLM([{"reasoning": "short and upbeat", "sentiment": "positive"}])
    cot = em.ChainOfThought(Sentiment, lm=lm, adapter="plain")
    pred = cot(sentence="a joy")
    assert (pred.reasoning, pred.sentiment) == ("short and upbeat", "positive")
    assert lm.requests[0]["messages"][-1]["content"] == "sentence: a joy"
    by_input = em.DummyLM({"a joy": {"sentiment": "positive"}, "a bore": {"sentiment": "negative"}}, field="sentence")
    assert em.Predict(Sentiment, lm=by_input, adapter="plain")(sentence="a bore").sentiment == "negative"


def test_an_adapter_name_works_as_the_configured_default():
    lm = em.DummyLM([{"sentiment": "negative"}])
    with em.context(lm=lm, adapter="plain"):
        assert em.Predict(Sentiment)(sentence="a bore").sentiment == "negative"
    assert lm.requests[0]["messages"][-1]["content"] == "sentence: a bore"
