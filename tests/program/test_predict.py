import asyncio
import threading
import time

import pytest

import elixirml as em
from elixirml.errors import ConfigurationError, ValidationError


class QA(em.Signature):
    """Answer the question using the context."""

    context: str = em.InputField()
    question: str = em.InputField()
    answer: str = em.OutputField()
    confidence: float = em.OutputField(ge=0.0, le=1.0)


def test_predict_end_to_end_on_dummy_lm():
    lm = em.DummyLM([{"answer": "Paris", "confidence": 0.9}])
    em.configure(lm=lm)
    pred = em.Predict(QA)(context="c", question="Where?")
    assert pred.answer == "Paris" and pred.confidence == 0.9
    assert pred.usage["calls"] == 1 and pred.usage["total_tokens"] > 0
    sent = lm.requests[0]["messages"]
    assert "Answer the question using the context." in sent[0]["content"]
    assert "Where?" in sent[-1]["content"]


def test_chain_of_thought_adds_reasoning_first():
    lm = em.DummyLM([{"reasoning": "because", "answer": "Paris", "confidence": 1.0}])
    cot = em.ChainOfThought(QA, lm=lm)
    assert list(cot.signature.output_fields) == ["reasoning", "answer", "confidence"]
    pred = cot(context="c", question="q")
    assert pred.reasoning == "because" and pred.answer == "Paris"


def test_output_constraint_violation_raises():
    lm = em.DummyLM([{"answer": "Paris", "confidence": 3}] * 3)
    with pytest.raises(ValidationError) as info:
        em.Predict(QA, lm=lm)(context="c", question="q")
    assert info.value.field == "confidence"
    assert len(lm.requests) == 3  # re-asked output_retries (2) times with the error, then raised


def test_per_call_config_overrides_module_config():
    seen = []

    def fn(messages, settings):
        seen.append(settings)
        return {"answer": "x"}

    lm = em.FunctionLM(fn, temperature=0.7, max_tokens=50)
    predict = em.Predict("question -> answer", lm=lm, temperature=0.5)
    predict(question="q")
    predict(question="q", config={"temperature": 0.2, "max_tokens": 10})
    assert seen[0]["temperature"] == 0.5 and seen[0]["max_tokens"] == 50
    assert seen[1]["temperature"] == 0.2 and seen[1]["max_tokens"] == 10


def test_every_request_carries_max_tokens():
    lm = em.DummyLM([{"answer": "x"}])
    em.Predict("question -> answer", lm=lm)(question="q")
    assert lm.requests[0]["settings"]["max_tokens"] == 512


def test_n_completions():
    lm = em.DummyLM([[{"answer": "a"}, {"answer": "b"}, {"answer": "c"}]])
    pred = em.Predict("question -> answer", lm=lm)(question="q", config={"n": 3})
    assert pred.answer == "a"
    assert [c["answer"] for c in pred.completions] == ["a", "b", "c"]


def test_dummy_lm_n_completions_advance_through_the_script():
    lm = em.DummyLM([{"answer": "a"}, {"answer": "b"}, {"answer": "c"}], advance_per_completion=True)
    pred = em.Predict("question -> answer", lm=lm)(question="q", config={"n": 2})
    assert [c["answer"] for c in pred.completions] == ["a", "b"]
    repeated = em.DummyLM([{"answer": "a"}, {"answer": "b"}])
    pred = em.Predict("question -> answer", lm=repeated)(question="q", config={"n": 2})
    assert [c["answer"] for c in pred.completions] == ["a", "a"]


def test_dummy_lm_default_answers_once_the_list_is_used_up():
    lm = em.DummyLM([{"answer": "a"}], default={"answer": "done"})
    predict = em.Predict("question -> answer", lm=lm)
    assert [predict(question="q").answer for _ in range(3)] == ["a", "done", "done"]
    with pytest.raises(ConfigurationError, match="ran out of scripted answers"):
        em.Predict("question -> answer", lm=em.DummyLM([]))(question="q")


def test_demos_reach_the_prompt():
    lm = em.DummyLM([{"answer": "4"}])
    predict = em.Predict("question -> answer", lm=lm, demos=[em.Example(question="1+1?", answer="2")])
    predict(question="2+2?")
    roles = [m["role"] for m in lm.requests[0]["messages"]]
    assert roles == ["system", "user", "assistant", "user"]


def test_mapping_dummy_lm_by_field():
    lm = em.DummyLM({"a?": {"answer": "A"}, "b?": {"answer": "B"}}, field="question")
    predict = em.Predict("question -> answer", lm=lm)
    assert predict(question="b?").answer == "B"
    assert predict(question="a?").answer == "A"


def test_no_lm_configured_is_clear():
    with pytest.raises(ConfigurationError, match="em.configure"):
        em.Predict("q -> a")(q="x")


def test_missing_input_is_a_validation_error():
    with pytest.raises(ValidationError, match="question"):
        em.Predict("question -> answer", lm=em.DummyLM([]))()


def test_positional_inputs_are_refused():
    with pytest.raises(TypeError, match="question="):
        em.Predict("question -> answer", lm=em.DummyLM([]))("q")
    with pytest.raises(ValueError, match="keyword arguments") as info:  # DSPy raises a ValueError
        em.Predict("question, context -> answer", lm=em.DummyLM([]))("q", "c")
    assert isinstance(info.value, em.errors.PositionalInputsError)
    assert "'question, context'" in str(info.value) and "`predict(question=input_value, ...)`" in str(info.value)


def test_async_function_lm_is_awaited_and_sync_runs_off_loop():
    async def afn(messages, settings):
        await asyncio.sleep(0)
        return {"answer": "async"}

    assert em.Predict("q -> answer", lm=em.FunctionLM(afn))(q="x").answer == "async"

    running = []
    peak = []
    lock = threading.Lock()

    def slow(messages, settings):
        with lock:
            running.append(1)
            peak.append(len(running))
        time.sleep(0.2)
        with lock:
            running.pop()
        return {"answer": "ok"}

    predict = em.Predict("q -> answer", lm=em.FunctionLM(slow))

    async def main():
        return await asyncio.gather(*(predict.acall(q=str(i)) for i in range(5)))

    results = asyncio.run(main())
    assert [r.answer for r in results] == ["ok"] * 5
    assert max(peak) > 1  # the calls overlapped: the sync function ran off the event loop


def test_sync_call_inside_running_loop_works():
    lm = em.DummyLM([{"answer": "x"}])
    predict = em.Predict("q -> answer", lm=lm)

    async def main():
        return predict(q="y")  # sync call from async code: runs on a helper thread

    assert asyncio.run(main()).answer == "x"


def test_trace_records_calls():
    lm = em.DummyLM([{"answer": "x"}])
    predict = em.Predict("q -> answer", lm=lm)
    with em.trace() as entries:
        predict(q="y")
    assert len(entries) == 1
    assert entries[0].predictor is predict and entries[0].prediction.answer == "x"
    assert entries[0].completion.startswith("[[ ## answer ## ]]")
    assert entries[0].inputs == {"q": "y"}


def test_trace_entry_builds_its_own_prediction_once_on_first_read():
    lm = em.DummyLM([{"answer": "x"}])
    pred = em.Predict("q -> answer", lm=lm)(q="y")
    entry = pred.trace[0]
    assert entry.prediction == pred and entry.prediction.usage == pred.usage
    assert entry.prediction is not pred  # a copy: the entry does not point back at the traced result
    assert entry.prediction is entry.prediction
    entry.prediction = None  # a failed call's entry holds no prediction
    assert entry.prediction is None


def test_transport_gets_its_own_settings_without_cache_only_keys():
    lm = em.DummyLM([{"answer": "x"}] * 2)
    predict = em.Predict("q -> answer", lm=lm, temperature=0.3)
    predict(q="1")
    predict(q="2", config={"rollout_id": 7})
    sent = [r["settings"] for r in lm.requests]
    stop = ["[[ ## completed ## ]]", "[[ ## q ## ]]"]  # the chat format's ends (see test_stop_sequences.py)
    assert sent[0] == {"max_tokens": 512, "temperature": 0.3, "stop": stop} and sent[1] == sent[0]
    assert lm.history[1]["settings"]["rollout_id"] == 7  # history keeps what the cache key saw
    assert all(r["settings"] is not h["settings"] for r, h in zip(lm.requests, lm.history))


def test_usage_tracking_and_history():
    lm = em.DummyLM([{"answer": "x"}] * 3)
    em.configure(lm=lm)
    predict = em.Predict("q -> answer")
    with em.track_usage() as usage:
        predict(q="1")
        predict(q="2")
    assert usage.calls == 2 and usage.total_tokens > 0
    assert len(lm.history) == 2
    text = em.inspect_history(1)
    assert "[[ ## q ## ]]\n2" in text


def test_estimated_prompt_tokens_count_every_text_part():
    from elixirml.lm._types import estimate_message_tokens, estimate_tokens, messages_text

    cases = [
        [],
        [{"role": "user", "content": ""}],
        [{"role": "system", "content": "abc"}, {"role": "user", "content": "hello world"}],
        [{"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url"}]}, {"role": "assistant"}],
    ]
    for messages in cases:
        assert estimate_message_tokens(messages) == estimate_tokens(messages_text(messages))
    lm = em.DummyLM([{"answer": "x"}])
    pred = em.Predict("q -> answer", lm=lm)(q="a" * 400)
    assert pred.usage["prompt_tokens"] == estimate_tokens(messages_text(lm.requests[0]["messages"])) > 100


def test_input_fields_that_clash_with_call_keywords_are_refused():
    from elixirml.errors import SignatureError

    with pytest.raises(SignatureError, match="demos"):
        em.Predict("question, demos -> answer")


def test_reset_forgets_demos_and_the_predictors_lm_and_reset_copy_keeps_the_lm():
    lm = em.DummyLM([])
    predict = em.Predict("question -> answer", lm=lm, demos=[em.Example(question="q", answer="a")])
    predict.train = ["x"]
    copy = predict.reset_copy()
    assert copy.demos == [] and copy.lm is lm
    predict.reset()
    assert predict.demos == [] and predict.lm is None and predict.train == []


def test_update_config_checks_settings_like_the_constructor():
    predict = em.Predict("question -> answer", temperature=0.5)
    predict.update_config(max_tokens=20)
    assert predict.get_config() == {"temperature": 0.5, "max_tokens": 20}
    with pytest.raises(ConfigurationError, match="unknown request setting 'new_key'"):
        predict.update_config(new_key="value")
    assert predict.get_config() == {"temperature": 0.5, "max_tokens": 20}


def test_load_state_takes_the_saved_signatures_name_and_texts():
    class Saved(em.Signature):
        """Saved instructions."""

        sentence: str = em.InputField(desc="saved input")
        sentiment: str = em.OutputField()

    class Other(em.Signature):
        """Other instructions."""

        sentence: str = em.InputField(desc="other input")
        sentiment: str = em.OutputField(prefix="Other:")

    original = em.Predict(Saved)
    loaded = em.Predict(Other).load_state(original.dump_state())
    assert loaded.signature.dump_state() == original.signature.dump_state()
    assert Other.__name__ == "Other"  # the class given is not changed


def test_a_predictor_keeps_its_recent_calls_in_its_history():
    lm = em.DummyLM([{"answer": str(i)} for i in range(6)])
    predict = em.Predict("question -> answer", lm=lm)
    with em.context(history_size=3):
        for i in range(4):
            predict(question=f"q{i}")
    assert len(predict.history) == 3
    assert predict.history[-1]["outputs"] and "q3" in predict.history[-1]["messages"][-1]["content"]
    assert predict.history[-1]["model"] == "dummy"
    assert len(predict.deepcopy().history) == 0  # a copy starts with none
    with em.context(history_size=0):
        predict(question="q4")
    assert len(predict.history) == 0
