"""An answer that fails its schema is re-asked with the error as feedback, a bounded number of times."""

import pytest

import elixirml as em
from elixirml.errors import AdapterParseError, BudgetExceededError, ValidationError
from elixirml.lm._usage import spending_limit  # the budget optimizers set with max_lm_calls


class QA(em.Signature):
    """Answer the question using the context."""

    context: str = em.InputField()
    question: str = em.InputField()
    answer: str = em.OutputField()
    confidence: float = em.OutputField(ge=0.0, le=1.0)


def test_out_of_range_value_is_re_asked_with_the_error_as_feedback():
    lm = em.DummyLM([{"answer": "Paris", "confidence": 100.0}, {"answer": "Paris", "confidence": 0.9}])
    pred = em.Predict(QA, lm=lm)(context="The Eiffel Tower is in Paris.", question="Where is it?")
    assert pred.answer == "Paris" and pred.confidence == 0.9
    assert len(lm.requests) == 2
    retry = lm.requests[1]["messages"]
    assert retry[-2]["role"] == "assistant" and "100" in retry[-2]["content"]
    assert retry[-1]["role"] == "user"
    assert "confidence" in retry[-1]["content"] and "100" in retry[-1]["content"]
    assert "less than or equal to 1" in retry[-1]["content"]
    assert pred.usage["calls"] == 2  # both answers are paid for


def test_values_are_never_clamped_and_the_error_names_field_value_rule_and_what_to_do():
    lm = em.DummyLM([{"answer": "Paris", "confidence": 100.0}] * 3)
    with pytest.raises(ValidationError) as info:
        em.Predict(QA, lm=lm)(context="c", question="q")
    error = info.value
    assert len(lm.requests) == 3  # the first answer and the default 2 re-asks
    assert error.field == "confidence" and str(error.value) == "100.0" and "less than or equal to 1" in error.rule
    assert error.attempts == 3 and error.completion is not None and "100" in error.completion
    message = str(error)
    assert "'confidence'" in message and "100.0" in message
    assert "output_retries" in message and "What to do" in message


def test_output_retries_is_a_setting():
    lm = em.DummyLM([{"answer": "Paris", "confidence": 7.0}] * 5)
    with em.context(output_retries=0), pytest.raises(ValidationError) as info:
        em.Predict(QA, lm=lm)(context="c", question="q")
    assert len(lm.requests) == 1 and info.value.attempts == 1
    lm = em.DummyLM([{"answer": "Paris", "confidence": 7.0}] * 5)
    with em.context(output_retries=4), pytest.raises(ValidationError):
        em.Predict(QA, lm=lm)(context="c", question="q")
    assert len(lm.requests) == 5
    with pytest.raises(em.errors.ConfigurationError, match="output_retries"):
        em.configure(output_retries=-1)


def test_re_asks_count_against_the_call_budget():
    lm = em.DummyLM([{"answer": "Paris", "confidence": 100.0}] * 3)
    with spending_limit(2) as budget, pytest.raises(BudgetExceededError):
        em.Predict(QA, lm=lm)(context="c", question="q")
    assert budget.used == 2


def test_unparseable_answer_is_re_asked_too():
    lm = em.DummyLM(["no fields at all", {"answer": "Paris", "confidence": 0.5}])
    pred = em.Predict(QA, lm=lm, adapter="chat")(context="c", question="q")
    assert pred.answer == "Paris" and len(lm.requests) == 2
    assert "could not be read" in lm.requests[1]["messages"][-1]["content"]
    lm = em.DummyLM(["no fields at all"] * 3)
    with pytest.raises(AdapterParseError, match="output_retries") as info:
        em.Predict(QA, lm=lm, adapter="chat")(context="c", question="q")
    assert info.value.attempts == 3


def test_assertion_retries_still_follow_a_corrected_answer():
    lm = em.DummyLM(
        [
            {"answer": "Paris", "confidence": 100.0},
            {"answer": "Paris", "confidence": 0.2},
            {"answer": "Paris", "confidence": 0.8},
        ]
    )

    class Checked(em.Module):
        def __init__(self):
            super().__init__()
            self.qa = em.Predict(QA)

        def forward(self, context, question):
            pred = self.qa(context=context, question=question)
            em.assert_output(pred.confidence >= 0.5, "Low confidence answer")
            return pred

    with em.context(lm=lm):
        pred = Checked()(context="c", question="q")
    assert pred.confidence == 0.8 and len(lm.requests) == 3


def test_local_model_grammar_keeps_bounded_numbers_in_range():
    pytest.importorskip("llama_cpp")
    from elixirml.lm._local import _range_rule, bounded_grammar

    assert _range_rule({"type": "number", "minimum": 0.0, "maximum": 1.0}) == (
        '((("0") ("." [0-9] [0-9]? [0-9]? [0-9]?)?) | ("1" (".0" "0"? "0"?)?)) space'
    )
    assert _range_rule({"type": "integer", "minimum": 1, "maximum": 3}) == '("1" | "2" | "3") space'
    for unbounded in (
        {"type": "number"},
        {"type": "number", "minimum": -1, "maximum": 1},
        {"type": "number", "minimum": 0, "maximum": 0.5},
        {"type": "number", "exclusiveMinimum": 0, "minimum": 0, "maximum": 1},
        {"type": "string", "minimum": 0, "maximum": 1},
    ):
        assert _range_rule(unbounded) is None
    assert bounded_grammar({"type": "object", "properties": {"a": {"type": "string"}}}) is None

    lm = em.LM("local")
    request = em.JSONAdapter().request_settings(em.ChainOfThought(QA).signature, lm)
    kwargs = lm._kwargs(request)
    assert "response_format" not in kwargs  # llama.cpp's own converter would drop the bounds
    assert "confidence ::= (((" in kwargs["grammar"]._grammar


def _totals(usage):
    return {k: usage[k] for k in ("prompt_tokens", "completion_tokens", "calls")}


def test_usage_after_a_re_ask_is_the_sum_of_every_answer():
    lm = em.DummyLM([{"answer": "Paris", "confidence": 100.0}, {"answer": "Paris", "confidence": 0.9}])
    with em.track_usage() as tracked:
        pred = em.Predict(QA, lm=lm)(context="The Eiffel Tower is in Paris.", question="Where is it?")
    entries = list(lm.history)
    assert len(entries) == 2
    assert pred.usage["prompt_tokens"] == sum(e["usage"]["prompt_tokens"] for e in entries)
    assert pred.usage["completion_tokens"] == sum(e["usage"]["completion_tokens"] for e in entries)
    assert _totals(pred.usage) == _totals(tracked.as_dict())  # what a tracker around the call counted


def test_an_answer_used_at_once_has_its_own_usage():
    lm = em.DummyLM([{"answer": "Paris", "confidence": 0.9}])
    pred = em.Predict(QA, lm=lm)(context="c", question="q")
    assert _totals(pred.usage) == _totals(lm.history[0]["usage"]) and pred.usage["calls"] == 1


def test_the_error_after_the_last_re_ask_carries_the_usage_of_every_answer():
    lm = em.DummyLM([{"answer": "Paris", "confidence": 100.0}] * 3)
    with pytest.raises(ValidationError) as info:
        em.Predict(QA, lm=lm)(context="c", question="q")
    assert info.value.usage.calls == 3
    assert info.value.usage.total_tokens == sum(e["usage"]["total_tokens"] for e in lm.history)


def test_an_adapter_fallback_counts_the_answer_it_replaced():
    lm = em.DummyLM(["no fields at all", {"answer": "Paris", "confidence": 0.5}])
    adapter = em.adapters.ChatAdapter(fallback=em.adapters.JSONAdapter())
    pred = em.Predict(QA, lm=lm, adapter=adapter)(context="c", question="q")
    assert pred.answer == "Paris" and len(lm.requests) == 2
    assert pred.usage["calls"] == 2
    assert pred.usage["total_tokens"] == sum(e["usage"]["total_tokens"] for e in lm.history)
