"""DSPy code carries over: DSPy's names, keywords and return shapes (issue 23).

Expected values were checked against DSPy 3.4.1 (bench/dspy_compat.py runs both).
"""

import asyncio
import json
import warnings

import pydantic
import pytest

import elixirml as em
from elixirml.errors import BatchError, ConfigurationError, SignatureError, ValidationError


# ---------------------------------------------------------------------- Example
def test_example_keys_and_len_leave_out_internal_fields():
    ex = em.Example(question="q", answer="a", dspy_uuid="x", dspy_split="train").with_inputs("question")
    assert len(ex) == 2
    assert ex.keys() == ["question", "answer"]
    assert ex.keys(include_dspy=True) == ["question", "answer", "dspy_uuid", "dspy_split"]
    assert ex.values() == ["q", "a"]
    assert ex.items(include_dspy=True)[-1] == ("dspy_split", "train")
    assert dict(ex) == {"question": "q", "answer": "a"}
    assert ex.dspy_uuid == "x" and "dspy_uuid" in ex  # still there, only not counted


def test_example_without_drops_fields_and_keeps_inputs():
    ex = em.Example(question="q", answer="a", extra=1).with_inputs("question")
    trimmed = ex.without("answer", "extra", "not_there")
    assert trimmed.toDict() == {"question": "q"}
    assert trimmed.inputs().toDict() == {"question": "q"}
    assert ex.toDict() == {"question": "q", "answer": "a", "extra": 1}  # the original is untouched


# ---------------------------------------------------------------------- Module discovery
class Inner(em.Module):
    def __init__(self):
        self.step = em.Predict("q -> a")


class Outer(em.Module):
    def __init__(self):
        self.inner = Inner()
        self.extra = [em.Predict("a -> b"), {"k": em.Predict("b -> c")}]
        self.final = em.Predict("c -> d")


def test_named_sub_modules_uses_dspy_names_breadth_first():
    names = [n for n, _ in Outer().named_sub_modules()]
    assert names == ["self", "self.inner", "self.final", "self.inner.step", "self.extra[0]", "self.extra[1][k]"]
    only = [n for n, _ in Outer().named_sub_modules(type_=em.Predict)]
    assert only == ["self.final", "self.inner.step", "self.extra[0]", "self.extra[1][k]"]


def test_named_sub_modules_skip_compiled_does_not_look_inside():
    program = Outer()
    program.inner._compiled = True
    names = [n for n, _ in program.named_sub_modules(skip_compiled=True)]
    assert "self.inner" in names and "self.inner.step" not in names


def test_named_parameters_lists_predictors_with_dspy_names():
    program = Outer()
    named = program.named_parameters()
    assert [n for n, _ in named] == ["inner.step", "extra[0]", "extra[1]['k']", "final"]
    assert named[0][1] is program.inner.step
    assert program.parameters() == [p for _, p in named]
    assert [n for n, _ in em.Predict("q -> a").named_parameters()] == ["self"]
    program.inner._compiled = True  # a compiled sub-module stays frozen, as in DSPy
    assert [n for n, _ in program.named_parameters()] == ["extra[0]", "extra[1]['k']", "final"]


# ---------------------------------------------------------------------- Signature
def test_signature_insert_append_instructions_and_errors():
    sig = em.Signature("a, b -> c, d")
    assert list(sig.insert(-1, "z", em.OutputField()).fields) == ["a", "b", "c", "d", "z"]
    assert list(sig.insert(1, "y", em.InputField()).fields) == ["a", "y", "b", "c", "d"]
    assert list(sig.insert(0, "x", em.OutputField(), int).fields) == ["a", "b", "x", "c", "d"]
    assert sig.insert(0, "x", em.OutputField(), int).fields["x"].annotation is int
    with pytest.raises(SignatureError, match="index 5 is out of range"):
        sig.insert(5, "z", em.OutputField())
    with pytest.raises(ValueError):  # DSPy raises ValueError; SignatureError is one
        sig.insert(5, "z", em.OutputField())
    longer = sig.append_instructions("More.")
    assert longer.instructions == sig.instructions + "\n\nMore."
    assert list(longer.fields) == list(sig.fields)


def test_signature_error_is_a_value_error():
    with pytest.raises(ValueError):
        em.Signature("a -> ")


@pytest.mark.parametrize("spec", ["", "   ", "question", "a -> b -> c"])
def test_signature_without_one_arrow_raises_value_error_as_dspy(spec):
    with pytest.raises(ValueError, match="exactly one '->'"):
        em.Signature(spec)


def test_string_signature_resolves_types_from_the_callers_scope():
    import decimal
    from pathlib import Path

    class Ticket(pydantic.BaseModel):
        title: str

    sig = em.Signature("path: Path, amount: decimal.Decimal, ticket: Ticket -> ok: bool, tags: list[Ticket]")
    assert sig.input_fields["path"].annotation is Path
    assert sig.input_fields["ticket"].annotation is Ticket
    assert sig.output_fields["tags"].annotation == list[Ticket]
    assert sig.input_fields["amount"].annotation is decimal.Decimal
    predict = em.Predict("path: Path -> ok: bool", lm=em.DummyLM([{"ok": "true"}]))
    assert predict.signature.input_fields["path"].annotation is Path  # the caller of Predict, not elixirml
    assert predict(path=Path("/tmp")).ok is True


_MODULE_LEVEL_NOT_A_TYPE = print


def test_caller_scope_names_must_be_types_and_nothing_is_evaluated():
    calls = []

    def record() -> type:
        calls.append(1)
        return str

    with pytest.raises(SignatureError, match="'record' .*not a type"):
        em.Signature("x: record -> y")
    with pytest.raises(SignatureError, match="_MODULE_LEVEL_NOT_A_TYPE"):
        em.Signature("x: _MODULE_LEVEL_NOT_A_TYPE -> y")
    with pytest.raises(SignatureError, match="not a type|Unsupported syntax"):
        em.Signature("x: record() -> y")
    with pytest.raises(SignatureError, match="Unsupported syntax"):
        em.Signature("x: str.upper() -> y")
    with pytest.raises(SignatureError, match="Unknown type name 'Nowhere'"):
        em.Signature("x: Nowhere -> y")
    assert calls == []


# ---------------------------------------------------------------------- Evaluate
def _qa_devset():
    return [em.Example(question=f"q{i}", answer=str(i)).with_inputs("question") for i in range(4)]


def _echo_lm():
    return em.FunctionLM(lambda messages, settings: {"answer": "1"})


def test_evaluate_num_threads_attribute_and_dspy_result_shape():
    em.configure(lm=_echo_lm())
    evaluator = em.Evaluate(devset=_qa_devset(), metric=lambda ex, pred, trace=None: ex.answer == pred.answer)
    evaluator.num_threads = 2
    assert evaluator.num_threads == 2 and evaluator.concurrency == 2
    assert em.Evaluate(devset=[], num_threads=3).num_threads == 3
    result = evaluator(em.Predict("question -> answer"))
    assert result.score == 25.0
    triples = [(ex.question, pred.answer, score) for ex, pred, score in result.results]
    assert triples == [("q0", "1", 0.0), ("q1", "1", 1.0), ("q2", "1", 0.0), ("q3", "1", 0.0)]


def test_evaluate_num_threads_reads_none_when_not_given_and_result_takes_dspy_arguments():
    evaluator = em.Evaluate(devset=_qa_devset(), metric=lambda ex, pred, trace=None: 1.0)
    assert evaluator.num_threads is None and evaluator.concurrency == 16  # as DSPy: None, the default applies
    assert em.Evaluate(devset=[], concurrency=4).num_threads == 4
    example = em.Example(question="q", answer="2").with_inputs("question")
    result = em.EvaluationResult(score=50.0, results=[(example, {"answer": "2"}, 1.0), (example, {"answer": "3"}, 0.0)])
    assert result.score == 50.0 and len(result.results) == 2 and result.total == 2
    assert repr(result) == "EvaluationResult(score=50.0, results=<list of 2 results>)"
    assert [score for _, _, score in result.results] == [1.0, 0.0]
    assert em.EvaluationResult(results=[(example, {}, 1.0), (example, {}, 0.0)]).score == 50.0  # the mean
    assert str(result).startswith("EvaluationResult(score=50.0% ± ")


def test_evaluate_files_hold_history_and_model_values_as_json(tmp_path):
    history = em.History(messages=[{"question": "before", "answer": "then"}])
    devset = [em.Example(question="q1", answer="1", history=history).with_inputs("question")]
    em.configure(lm=_echo_lm())

    def exact(example, pred, trace=None):
        return example.answer == pred.answer

    em.Evaluate(
        devset=devset, metric=exact, save_as_json=str(tmp_path / "r.json"), save_as_csv=str(tmp_path / "r.csv")
    )(em.Predict("question -> answer"))
    rows = json.loads((tmp_path / "r.json").read_text())
    assert rows == [
        {
            "question": "q1",
            "example_answer": "1",
            "history": {"messages": [{"question": "before", "answer": "then"}]},
            "pred_answer": "1",
            "exact": 1.0,
        }
    ]
    import csv

    with (tmp_path / "r.csv").open() as handle:
        (row,) = list(csv.DictReader(handle))
    assert json.loads(row["history"]) == {"messages": [{"question": "before", "answer": "then"}]}
    assert row["exact"] == "1.0"


def test_evaluate_dspy_options_table_csv_json_and_per_call_devset(tmp_path, capsys):
    em.configure(lm=_echo_lm())
    evaluator = em.Evaluate(
        devset=_qa_devset(),
        metric=lambda ex, pred, trace=None: ex.answer == pred.answer,
        display_table=2,
        display_progress=False,
        return_all_scores=True,
        save_as_json=str(tmp_path / "r.json"),
    )
    result = evaluator(em.Predict("question -> answer"), devset=_qa_devset()[:2], save_as_csv=str(tmp_path / "r.csv"))
    assert len(result.results) == 2 and result.score == 50.0
    printed = capsys.readouterr().out
    assert "#0" in printed and "#1" in printed
    rows = json.loads((tmp_path / "r.json").read_text())  # DSPy's layout: one object per example
    assert [sorted(row) for row in rows] == [["<lambda>", "example_answer", "pred_answer", "question"]] * 2
    assert [row["<lambda>"] for row in rows] == [r.score for r in result.results]
    assert (tmp_path / "r.csv").read_text().splitlines()[0] == "question,example_answer,pred_answer,<lambda>"
    assert (tmp_path / "r.csv").read_text().count("\n") == 3


def test_evaluate_return_outputs_is_refused_as_in_dspy3():
    with pytest.raises(ConfigurationError, match="return_outputs"):
        em.Evaluate(devset=_qa_devset(), return_outputs=True)


# ---------------------------------------------------------------------- batch
def _failing_lm():
    def answer(messages, settings):
        text = json.dumps(messages)
        if "boom" in text:
            raise ValueError("boom input")
        return {"answer": "ok"}

    return em.FunctionLM(answer)


def _batch_examples():
    return [em.Example(question=q).with_inputs("question") for q in ("a", "boom", "c")]


def test_batch_return_failed_examples_gives_dspy_triple():
    em.configure(lm=_failing_lm())
    program = em.Predict("question -> answer")
    results, failed, errors = program.batch(_batch_examples(), num_threads=2, return_failed_examples=True)
    assert [r.answer if r is not None else None for r in results] == ["ok", None, "ok"]
    assert [ex.question for ex in failed] == ["boom"]
    assert len(errors) == 1 and "boom input" in str(errors[0])


def test_batch_max_errors_tolerates_then_raises():
    em.configure(lm=_failing_lm())
    program = em.Predict("question -> answer")
    results = program.batch(_batch_examples(), max_errors=1)
    assert results[1] is None and results[0].answer == "ok"
    with pytest.raises(BatchError, match="1 of 3 inputs failed, more than max_errors=0") as info:
        program.batch(_batch_examples(), max_errors=0)
    assert "boom input" in str(info.value.__cause__)
    with pytest.raises(Exception, match="boom input"):  # without DSPy's options the first failure raises
        program.batch(_batch_examples())


def test_batch_timeout_fails_a_slow_input():
    import asyncio

    async def slow(messages, settings):
        if "slow" in json.dumps(messages):
            await asyncio.sleep(60)  # cancelled by the timeout long before
        return {"answer": "ok"}

    em.configure(lm=em.FunctionLM(slow), cache=False)
    program = em.Predict("question -> answer")
    examples = [
        em.Example(question="fast").with_inputs("question"),
        em.Example(question="slow").with_inputs("question"),
    ]
    results, failed, errors = program.batch(examples, timeout=0.2, return_failed_examples=True)
    assert results[0].answer == "ok" and results[1] is None
    assert [ex.question for ex in failed] == ["slow"] and isinstance(errors[0], TimeoutError)


# ---------------------------------------------------------------------- usage tracking
def test_track_usage_setting_attaches_usage_by_model():
    em.configure(lm=em.DummyLM([{"answer": "a"}] * 3, model="openai/gpt-4o-mini"), cache=False)
    program = em.Predict("question -> answer")
    assert program(question="q").get_lm_usage() is None  # off by default, as in DSPy
    with em.context(track_usage=True):
        pred = program(question="q")
    usage = pred.get_lm_usage()
    assert list(usage) == ["openai/gpt-4o-mini"]
    assert usage["openai/gpt-4o-mini"]["total_tokens"] > 0
    assert usage["openai/gpt-4o-mini"]["total_tokens"] == pred.usage["total_tokens"]


def test_track_usage_context_splits_by_model():
    first = em.DummyLM([{"answer": "a"}], model="openai/one")
    second = em.DummyLM([{"answer": "b"}], model="openai/two")
    with em.track_usage() as tracker:
        em.Predict("question -> answer", lm=first)(question="q")
        em.Predict("question -> answer", lm=second)(question="q")
    totals = tracker.get_total_tokens()
    assert sorted(totals) == ["openai/one", "openai/two"]
    assert tracker.total_tokens == totals["openai/one"]["total_tokens"] + totals["openai/two"]["total_tokens"]


# ---------------------------------------------------------------------- settings
def test_max_trace_size_keeps_the_newest_entries():
    em.configure(lm=em.DummyLM([{"answer": str(i)} for i in range(5)]), cache=False, max_trace_size=2)
    program = em.Predict("question -> answer")
    with em.trace() as entries:
        for i in range(5):
            program(question=f"q{i}")
    assert [e.prediction.answer for e in entries] == ["3", "4"]


@pytest.mark.parametrize("name", ["track_usage", "warn_on_type_mismatch", "strict_inputs"])
def test_new_bool_settings_are_checked(name):
    with pytest.raises(ConfigurationError, match=f"'{name}' expects True or False"):
        em.configure(**{name: "yes"})


# ---------------------------------------------------------------------- load_state
def test_load_state_accepts_dspy_keyword_and_refuses_unsafe_lm_state():
    program = Outer()
    state = program.dump_state()
    assert Outer().load_state(state, allow_unsafe_lm_state=False).dump_state() == state
    with pytest.raises(ConfigurationError, match="never builds an LM"):
        Outer().load_state(state, allow_unsafe_lm_state=True)
    with pytest.raises(ConfigurationError, match="never builds an LM"):
        em.Predict("q -> a").load_state(em.Predict("q -> a").dump_state(), allow_unsafe_lm_state=True)


# ---------------------------------------------------------------------- inputs of the wrong type
TypedInputs = em.Signature("name: str, k: int, passages: str -> answer")


def test_inputs_converted_without_loss():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to warn about: nothing is lost
        values = TypedInputs.validate_inputs({"name": 123, "k": "3", "passages": ["a", "b"]})
    assert values == {"name": "123", "k": 3, "passages": "[1] «a»\n[2] «b»"}


def test_wrong_type_input_is_sent_with_a_warning_naming_the_field():
    seen = []

    def answer(messages, settings):
        seen.append(json.dumps(messages))
        return {"answer": "ok"}

    program = em.Predict(TypedInputs, lm=em.FunctionLM(answer))
    with pytest.warns(UserWarning, match="input 'k' should be int, got 'three'"):
        pred = program(name="x", k="three", passages="p")
    assert pred.answer == "ok" and "three" in seen[0]
    with em.context(warn_on_type_mismatch=False), warnings.catch_warnings():
        warnings.simplefilter("error")
        assert TypedInputs.validate_inputs({"name": "x", "k": "three", "passages": "p"})["k"] == "three"


def test_strict_inputs_raises_and_rules_still_raise():
    with em.context(strict_inputs=True), pytest.raises(ValidationError, match="'k'"):
        TypedInputs.validate_inputs({"name": "x", "k": "three", "passages": "p"})
    with pytest.raises(ValidationError, match="missing"):
        TypedInputs.validate_inputs({"name": "x", "passages": "p"})
    with pytest.raises(ValidationError, match="'k'"):  # None is not a value to send as text
        TypedInputs.validate_inputs({"name": "x", "k": None, "passages": "p"})
    bounded = em.Signature("n: int -> answer").with_updated_fields("n", ge=0)
    with pytest.raises(ValidationError, match="greater than or equal"):
        bounded.validate_inputs({"n": -1})


def test_value_has_type_checks_without_converting():
    from typing import Literal

    from elixirml.schema import value_has_type

    assert value_has_type([1, 2], list[int]) and not value_has_type(["1", "2"], list[int])
    assert value_has_type({"a": 1}, dict[str, int]) and not value_has_type({1: 1}, dict[str, int])
    assert value_has_type(("a", 1, True), tuple[str, int, bool]) and not value_has_type(("a", 1), tuple[str, int, bool])
    assert value_has_type((1, 2, 3), tuple[int, ...]) and not value_has_type(("a",), tuple[int, ...])
    assert value_has_type("a", Literal["a", "b"]) and not value_has_type("c", Literal["a", "b"] | None)
    assert value_has_type(None, Literal["a"] | None) and value_has_type(["p1", "p2"], str)
    assert value_has_type(1, float) and not value_has_type("1", int) and value_has_type(object(), typing_any())


def typing_any():
    from typing import Any

    return Any


def test_predictor_logs_inputs_of_the_wrong_type_and_unknown_inputs(caplog):
    sig = em.Signature("count: int, names: list[str], mode: Literal['auto', 'manual'], free -> result")
    lm = em.DummyLM([{"result": "ok"}] * 4)
    program = em.Predict(sig, lm=lm)
    with caplog.at_level("WARNING", logger="elixirml.program"):
        program(count=1, names=["a"], mode="auto", free=3)
    assert caplog.text == ""  # typed values as given; an untyped field takes anything
    with caplog.at_level("WARNING", logger="elixirml.program"), pytest.warns(UserWarning, match="input 'mode'"):
        program(count="2", names=[1], mode="other", free="x", unknown=1)
    assert "Type mismatch for field 'count': expected int" in caplog.text  # converted, and still reported
    assert "Type mismatch for field 'names': expected list[str]" in caplog.text
    assert "Type mismatch for field 'mode': expected Literal['auto', 'manual']" in caplog.text  # sent as given
    assert "fields not in signature. These fields will be ignored: ['unknown']" in caplog.text
    assert "field 'free'" not in caplog.text
    caplog.clear()
    with em.context(warn_on_type_mismatch=False), caplog.at_level("WARNING", logger="elixirml.program"):
        program(count="2", names=["a"], mode="auto", free="x")
    assert caplog.text == ""


def test_an_optional_input_may_be_left_out():
    sig = em.Signature("question: str, context: str | None -> answer")
    assert sig.validate_inputs({"question": "q"}) == {"question": "q"}
    assert sig.validate_inputs({"question": "q", "context": None}) == {"question": "q", "context": None}
    for adapter in ("chat", "json", "plain"):
        lm = em.DummyLM([{"answer": "a"}])
        assert em.Predict(sig, lm=lm, adapter=adapter)(question="q").answer == "a"
        assert "context" not in lm.requests[0]["messages"][-1]["content"]
    with pytest.raises(ValidationError, match="question"):
        sig.validate_inputs({"context": "c"})


def test_string_signatures_take_variadic_tuples_and_nested_classes():
    class Outer:
        class Query(pydantic.BaseModel):
            text: str

    sig = em.Signature("query: Outer.Query, ids: tuple[int, ...] -> answer")
    assert sig.input_fields["query"].annotation is Outer.Query
    assert sig.input_fields["ids"].annotation == tuple[int, ...]
    assert em.schema.type_to_str(tuple[int, ...]) == "tuple[int, ...]"
    reloaded = em.Signature.from_state(sig.dump_state(), {"Query": Outer.Query})
    assert reloaded.input_fields["ids"].annotation == tuple[int, ...]
    with pytest.raises(SignatureError, match="not a type"):
        em.Signature("ids: list[...] -> answer")


# ---------------------------------------------------------------------- metrics called as DSPy calls them
def test_metrics_get_trace_the_way_they_ask_for_it():
    from elixirml.evaluation import FunctionMetric

    ex, pred = em.Example(answer="a"), em.Prediction(answer="a")
    calls = []

    def two(example, pred):
        calls.append("two")
        return True

    def kwargs_only(example, pred, **kwargs):
        calls.append(sorted(kwargs))
        return True

    def keyword(example, pred, *, trace=None):
        calls.append(("kw", trace))
        return True

    def third(gold, pred, t=None):
        calls.append(("pos", t))
        return True

    for fn in (two, kwargs_only, keyword, third):
        assert FunctionMetric(fn).calculate(ex, pred, ["entry"]) is True
    assert calls == ["two", ["trace"], ("kw", ["entry"]), ("pos", ["entry"])]


def test_metric_errors_are_loud_and_counted_apart_from_wrong_answers():
    em.configure(lm=_echo_lm())

    def metric(example, pred, **kwargs):
        if example.question == "q2":
            raise KeyError("no such label")
        return example.answer == pred.answer

    evaluator = em.Evaluate(devset=_qa_devset(), metric=metric, display_progress=False)
    with pytest.warns(RuntimeWarning, match=r"raised on 1 of 4 examples .*KeyError"):
        result = evaluator(em.Predict("question -> answer"))
    assert result.score == 25.0  # q1 right; q0 and q3 wrong; q2 not scored
    assert result.metric_errors == 1 and result.errors == 1
    summary = result.summary()
    assert summary["metric_errors"] == 1 and summary["program_errors"] == 0
    failed = result.results[2]
    assert failed.metric_failed and failed.prediction.answer == "1"
    assert "metric failed on 1" in str(result)  # print(result) shows it; repr is DSPy's


# ---------------------------------------------------------------------- DSPy's answer metrics
class _Plain:
    def __init__(self, **fields):
        self.__dict__.update(fields)


def test_answer_exact_match_on_examples_plain_objects_and_dicts():
    from elixirml.evaluation import answer_exact_match

    assert em.evaluate.answer_exact_match is answer_exact_match  # DSPy's dspy.evaluate.answer_exact_match
    assert em.metrics.answer_exact_match is answer_exact_match
    assert answer_exact_match(em.Example(answer="The Eiffel Tower"), em.Prediction(answer="eiffel tower!")) is True
    assert answer_exact_match(_Plain(answer="Paris"), _Plain(answer="paris.")) is True
    assert answer_exact_match(_Plain(answer=["Lyon", "Paris"]), _Plain(answer="Paris")) is True
    assert answer_exact_match({"answer": "Paris"}, {"answer": "Rome"}) is False
    assert answer_exact_match(_Plain(answer="a b c"), _Plain(answer="a b"), frac=0.5) is True  # F1 0.8
    assert answer_exact_match(_Plain(answer="a b c"), _Plain(answer="a b"), frac=0.9) is False
    with pytest.raises(ValueError, match="answer"):
        answer_exact_match(_Plain(answer=3), _Plain(answer="3"))
    with pytest.raises(AttributeError, match="answer"):
        answer_exact_match(_Plain(label="x"), _Plain(answer="x"))


def test_answer_passage_match_reads_context_and_matches_whole_tokens():
    from elixirml.evaluation import answer_passage_match

    assert em.evaluate.answer_passage_match is answer_passage_match
    passages = ["Nothing here.", "The Eiffel Tower is in Paris."]
    assert answer_passage_match(em.Example(answer="eiffel tower"), em.Prediction(context=passages)) is True
    assert answer_passage_match(_Plain(answer=["Louvre", "Paris"]), _Plain(context=passages)) is True
    assert answer_passage_match(_Plain(answer="cat"), _Plain(context=["concatenate"])) is False  # tokens, as DSPy
    devset = [em.Example(question="q", answer="Paris").with_inputs("question")]

    class Retrieve(em.Module):
        def forward(self, question):
            return em.Prediction(context=passages)

    result = em.Evaluate(devset=devset, metric=answer_passage_match)(Retrieve())
    assert result.score == 100.0


# ---------------------------------------------------------------------- n > 1, positional inputs, enums, copies
def test_completions_read_as_in_dspy():
    lm = em.FunctionLM(lambda messages, settings: [{"answer": "a"}, {"answer": "b"}][: settings.get("n", 1)])
    pred = em.Predict("question -> answer", lm=lm)(question="q", config={"n": 2})
    completions = pred.completions
    assert len(completions) == 2 and pred.answer == "a"
    assert completions.answer == ["a", "b"] and completions["answer"] == ["a", "b"]
    assert isinstance(completions[1], em.Prediction) and completions[1].answer == "b"
    assert [c.answer for c in completions] == ["a", "b"] and [c["answer"] for c in completions] == ["a", "b"]
    assert completions == [{"answer": "a"}, {"answer": "b"}]
    with pytest.raises(AttributeError, match="reasoning"):
        completions.reasoning  # noqa: B018


def test_enum_inputs_are_written_as_their_value_like_dspy():
    import enum

    class Color(enum.Enum):
        RED = "red"
        GREEN = "green"

    class Pick(em.Signature):
        """Describe the color."""

        color: Color = em.InputField()
        shade: Color = em.OutputField()

    lm = em.DummyLM([{"shade": "RED"}, {"shade": "green"}])
    predict = em.Predict(Pick, lm=lm)
    assert predict(color=Color.GREEN).shade is Color.RED  # a member's name is read too, as in DSPy
    assert predict(color=Color.RED).shade is Color.GREEN
    user = lm.requests[0]["messages"][-1]["content"]
    assert "[[ ## color ## ]]\ngreen\n" in user  # not '"green"'


def test_deepcopy_of_a_module_copies_state_and_shares_the_lm():
    import copy

    lm = em.DummyLM([{"answer": "a"}])

    class QA(em.Module):
        def __init__(self):
            super().__init__()
            self.qa = em.Predict("question -> answer")

        def forward(self, question):
            return self.qa(question=question)

    program = QA()
    program.qa.demos = [em.Example(question="x", answer="y")]
    program.qa.set_lm(lm)
    clone = copy.deepcopy(program)
    clone.qa.demos.append(em.Example(question="z", answer="w"))
    assert len(program.qa.demos) == 1 and len(clone.qa.demos) == 2 and clone.qa is not program.qa
    assert clone.qa.lm is lm  # DSPy copies the LM; a client with open connections is shared here
    assert clone(question="hi").answer == "a"


def test_parallel_runs_examples_with_their_inputs_and_refuses_positional_inputs():
    lm = em.FunctionLM(lambda messages, settings: {"answer": "ok"})
    em.configure(lm=lm)
    predict = em.Predict("question -> answer")
    example = em.Example(question="hi", answer="gold").with_inputs("question")
    results = em.Parallel(num_threads=2)([(predict, example), (predict, {"question": "yo"})])
    assert [r.answer for r in results] == ["ok", "ok"]
    with pytest.raises(TypeError, match=r"keyword arguments .*`predict\(question=input_value, \.\.\.\)`"):
        predict("hi")
    with pytest.raises(ValueError, match="Positional arguments are not allowed"):  # DSPy's error and message
        predict("hi")


# ---------------------------------------------------------------- files written by dspy.Module.save
def _dspy_saved_file():
    """What DSPy 3.4.1's ``QA().save(path)`` wrote for the program below (abridged to its keys)."""

    def field(prefix, name):
        return {"prefix": prefix, "description": "${" + name + "}"}

    return {
        "answer.predict": {
            "traces": [],
            "train": [],
            "demos": [{"augmented": True, "question": "q1", "reasoning": "r1", "answer": "a1"}],
            "signature": {
                "instructions": "Answer briefly.",
                "fields": [
                    field("Question:", "question"),
                    field("Reasoning:", "reasoning"),
                    {"prefix": "Final Answer:", "description": "one word"},
                ],
            },
            "lm": None,
        },
        "check": {
            "traces": [],
            "train": [],
            "demos": [],
            "signature": {
                "instructions": "Given the fields `question`, `answer`, produce the fields `verdict`.",
                "fields": [field("Question:", "question"), field("Answer:", "answer"), field("Verdict:", "verdict")],
            },
            "lm": {
                "_dspy_lm_class": "dspy.clients.lm.LM",
                "model": "openai/gpt-4o-mini",
                "model_type": "chat",
                "cache": True,
                "num_retries": 3,
                "temperature": 0.3,
                "max_tokens": 100,
                "launch_kwargs": {},
            },
        },
        "metadata": {"dependency_versions": {"python": "3.11", "dspy": "3.4.1", "cloudpickle": "3.1"}},
    }


class SavedByDSPy(em.Module):
    def __init__(self):
        self.answer = em.ChainOfThought("question -> answer")
        self.check = em.Predict("question, answer -> verdict: bool")

    def forward(self, question):
        return self.answer(question=question)


def test_a_file_written_by_dspy_save_loads_into_the_equivalent_program(tmp_path):
    import json

    path = tmp_path / "dspy.json"
    path.write_text(json.dumps(_dspy_saved_file()))
    program = SavedByDSPy()
    with pytest.warns(UserWarning, match="gpt-4o-mini"):  # the model is reported, never built from the file
        assert program.load(path) is program
    assert program.answer.instructions == "Answer briefly."
    [demo] = program.answer.demos
    assert demo.toDict() == {"question": "q1", "reasoning": "r1", "answer": "a1"} and list(demo.inputs()) == [
        "question"
    ]
    assert program.answer.signature.fields["answer"].desc == "one word"
    assert program.answer.signature.fields["answer"].prefix == "Final Answer:"
    assert program.answer.signature.fields["question"].prefix is None  # DSPy's default prefix is not copied
    assert program.check.config == {"temperature": 0.3, "max_tokens": 100}
    assert program.check.lm is None
    with pytest.raises(em.errors.LoadError, match="written by DSPy"):
        em.load(path)


def test_a_dspy_file_of_another_structure_or_with_bad_values_is_refused_whole(tmp_path):
    import json

    document = _dspy_saved_file()
    document["extra_step"] = document.pop("check")
    path = tmp_path / "other.json"
    path.write_text(json.dumps(document))
    program = SavedByDSPy()
    with pytest.raises(em.errors.LoadError, match="extra_step"):
        program.load(path)
    assert program.answer.demos == [] and program.answer.instructions != "Answer briefly."  # nothing changed
    document = _dspy_saved_file()
    document["check"]["lm"]["temperature"] = "hot"
    path.write_text(json.dumps(document))
    with pytest.raises(em.errors.LoadError, match="temperature"):
        program.load(path)
    assert program.check.config == {}


def test_a_single_predictor_saved_by_dspy_loads(tmp_path):
    import json

    saved = _dspy_saved_file()["check"]
    saved["lm"] = None
    saved["demos"] = [{"question": "q", "answer": "a", "verdict": True}]
    path = tmp_path / "predict.json"
    path.write_text(json.dumps({**saved, "metadata": {"dependency_versions": {"dspy": "3.4.1"}}}))
    predict = em.Predict("question, answer -> verdict: bool").load(path)
    assert [d.toDict() for d in predict.demos] == [{"question": "q", "answer": "a", "verdict": True}]


# ---------------------------------------------------------------------- DSPy-style LMs (elixirml.dspy)
def test_a_dummy_lm_subclass_overriding_call_answers_through_it_in_a_worker_thread():
    import threading

    import elixirml.dspy as dspy

    threads = []

    class SpyLM(dspy.DummyLM):
        def __call__(self, *args, **kwargs):
            threads.append(threading.current_thread())
            return super().__call__(*args, **kwargs)  # DSPy's test LMs do: the LM's own path answers

    lm = SpyLM([{"answer": "a1"}, {"answer": "a2"}])
    with dspy.context(lm=lm):
        assert dspy.Predict("question -> answer")(question="q").answer == "a1"
        assert asyncio.run(dspy.Predict("question -> answer").acall(question="q")).answer == "a2"
    assert len(threads) == 2 and threading.main_thread() not in threads  # once per request, never recursing


def test_dspy_dummy_lm_follow_examples_answers_with_the_demo_whose_input_the_request_repeats():
    import elixirml.dspy as dspy

    lm = dspy.DummyLM([{"output": "scripted"}, {"output": "scripted"}], follow_examples=True)
    predict = dspy.Predict("input -> output")
    predict.demos = [dspy.Example(input="sky?", output="blue").with_inputs("input")]
    with dspy.context(lm=lm):
        assert predict(input="sky?").output == "blue"  # the demo's answer (DSPy's match: the input's paragraph)
        assert predict(input="grass?").output == "scripted"


def test_a_used_up_dummy_lm_answers_no_more_responses_as_dspy_or_its_default():
    import elixirml.dspy as dspy

    with dspy.context(lm=dspy.DummyLM([{"answer": "one"}])):
        predict = dspy.Predict("question -> answer")
        assert [predict(question="q").answer, predict(question="q").answer] == ["one", "No more responses"]
    lm = em.DummyLM(["[[ ## answer ## ]]\nfirst"], default={"answer": "fallback"})
    with em.context(lm=lm):
        assert [em.Predict("question -> answer")(question="q").answer for _ in range(2)] == ["first", "fallback"]
    with em.context(lm=em.DummyLM([{"answer": "one"}])), pytest.raises(ConfigurationError, match="ran out"):
        for _ in range(2):
            em.Predict("question -> answer")(question="q")


def test_dspy_pretty_print_history_shows_tool_calls_and_a_response_only_with_text():
    import io

    from elixirml.dspy.utils.inspect_history import pretty_print_history

    out = io.StringIO()
    entry = {
        "messages": [{"role": "user", "content": [{"type": "text", "text": " Find cats "}]}],
        "outputs": [{"tool_calls": [{"function": {"name": "lookup", "arguments": '{"q": "cats"}'}}]}, "other"],
        "timestamp": "t1",
    }
    pretty_print_history([entry], file=out)
    text = out.getvalue()
    assert "\x1b[" not in text  # no colours when writing to a file
    assert "[t1]" in text and "User message:\nFind cats" in text
    assert "Response:" not in text and 'Tool calls:\nlookup: {"q": "cats"}' in text
    assert "(and 1 other completions)" in text
    out = io.StringIO()
    pretty_print_history([{**entry, "outputs": [{"text": " Paris "}]}], file=out)
    assert "Response:\nParis" in out.getvalue() and "Tool calls" not in out.getvalue()


# ---------------------------------------------------------------------- elixirml.dspy's LM state
def test_dspy_lm_state_has_dspys_layout_without_secrets(tmp_path):
    import elixirml.dspy as dspy
    from elixirml.dspy.clients.base_lm import LM_CLASS_STATE_KEY

    lm = dspy.LM("openai/gpt-4o-mini", temperature=1, max_tokens=100, num_retries=10, api_key="sk-secret-key")
    state = lm.dump_state()
    assert state == {
        LM_CLASS_STATE_KEY: "elixirml.dspy.clients.lm.LM",
        "model": "openai/gpt-4o-mini",
        "model_type": "chat",
        "cache": True,
        "num_retries": 10,
        "temperature": 1,
        "max_tokens": 100,
        "finetuning_model": None,
        "launch_kwargs": {},
        "train_kwargs": {},
    }
    assert "sk-secret" not in json.dumps(state)

    class Custom(dspy.BaseLM):
        pass

    forged = Custom("m", **{LM_CLASS_STATE_KEY: "somewhere.Else"})  # a state's marker is not taken as given
    assert forged.dump_state()[LM_CLASS_STATE_KEY].endswith("Custom")
    with dspy.context(lm=lm):
        dspy.settings.save(tmp_path / "settings.json")
    loaded = dspy.load_settings(tmp_path / "settings.json")["lm"]
    assert loaded.dump_state() == state and loaded.model == "openai/gpt-4o-mini"


def test_dspy_parallel_gives_each_worker_its_own_copy_of_the_usage_tracker():
    import elixirml.dspy as dspy

    parent = dspy.utils.UsageTracker()
    parent.add_usage("m", {"prompt_tokens": 1})

    def work(tokens):
        dspy.settings.usage_tracker.add_usage("m", {"prompt_tokens": tokens})
        return dspy.settings.usage_tracker.get_total_tokens()["m"]["prompt_tokens"]

    with dspy.context(usage_tracker=parent):
        assert dspy.Parallel(num_threads=2)([(work, (10,)), (work, (20,))]) == [11, 21]
    assert parent.get_total_tokens()["m"]["prompt_tokens"] == 1  # the caller's tracker is unchanged
    assert dspy.settings.usage_tracker is None and dspy.Parallel()([(lambda: 4, {})]) == [4]  # no tracker: no copy
