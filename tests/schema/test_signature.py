import enum
import json
from typing import Literal

import pydantic
import pytest

import elixirml as em
from elixirml.errors import SignatureError, SignatureFieldError, ValidationError


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Address(pydantic.BaseModel):
    city: str
    zip: str


class Rich(em.Signature):
    """Fill in every kind of field."""

    text: str = em.InputField(desc="some text")
    count: int = em.InputField(ge=0, le=10)
    label: Literal["positive", "negative"] = em.OutputField()
    color: Color = em.OutputField()
    tags: list[str] = em.OutputField()
    address: Address = em.OutputField()
    code: str = em.OutputField(pattern=r"^[A-Z]{3}$")
    note: str | None = em.OutputField(default=None)


def test_class_form_fields_and_instructions():
    assert list(Rich.input_fields) == ["text", "count"]
    assert list(Rich.output_fields) == ["label", "color", "tags", "address", "code", "note"]
    assert Rich.instructions == "Fill in every kind of field."
    assert Rich.input_fields["text"].desc == "some text"
    assert Rich.output_fields["note"].required is False


def test_valid_outputs_are_coerced():
    out = Rich.validate_outputs(
        {"label": "positive", "color": "red", "tags": ["a"], "address": {"city": "P", "zip": "1"}, "code": "ABC"}
    )
    assert out["color"] is Color.RED
    assert isinstance(out["address"], Address)
    assert out["note"] is None


@pytest.mark.parametrize(
    ("field", "value", "rule_part"),
    [
        ("label", "neutral", "positive"),
        ("code", "abcd", "pattern"),
        ("color", "green", "red"),
    ],
)
def test_constraint_violation_names_field_value_and_rule(field, value, rule_part):
    good = {"label": "positive", "color": "red", "tags": [], "address": {"city": "P", "zip": "1"}, "code": "ABC"}
    good[field] = value
    with pytest.raises(ValidationError) as info:
        Rich.validate_outputs(good)
    err = info.value
    assert err.field == field
    assert err.value == value
    assert err.schema == "Rich"
    assert rule_part in err.rule or rule_part in str(err)
    assert field in str(err) and repr(value) in str(err)


def test_input_range_constraint():
    with pytest.raises(ValidationError) as info:
        Rich.validate_inputs({"text": "x", "count": 11})
    assert info.value.field == "count"
    assert "less than or equal" in info.value.rule


def test_missing_field_is_named():
    with pytest.raises(ValidationError, match="count"):
        Rich.validate_inputs({"text": "x"})


def test_long_values_are_truncated_in_message():
    with em.context(strict_inputs=True), pytest.raises(ValidationError) as info:
        Rich.validate_inputs({"text": "x", "count": "y" * 5000})
    assert len(str(info.value)) < 600


def test_string_form_untyped():
    sig = em.Signature("question -> answer")
    assert list(sig.input_fields) == ["question"]
    assert list(sig.output_fields) == ["answer"]
    assert sig.output_fields["answer"].annotation is str
    assert "question" in sig.instructions


def test_string_form_typed_with_instructions():
    sig = em.Signature("question: str, k: int -> answers: list[str]", "Give k answers.")
    assert sig.instructions == "Give k answers."
    assert sig.input_fields["k"].annotation is int
    assert sig.output_fields["answers"].annotation == list[str]


def test_string_signature_round_trips_to_json_schema():
    sig = em.Signature("question: str, k: int -> answers: list[str], score: float | None, mood: Literal['a', 'b']")
    ins = sig.input_schema()
    outs = sig.output_schema()
    assert ins["properties"]["k"]["type"] == "integer"
    assert ins["required"] == ["question", "k"]
    assert outs["properties"]["answers"] == {"items": {"type": "string"}, "title": "Answers", "type": "array"}
    assert outs["properties"]["mood"]["enum"] == ["a", "b"]
    json.dumps(outs)
    # the saved form of the signature rebuilds an identical schema
    again = em.Signature.from_state(json.loads(json.dumps(sig.dump_state())))
    assert again.output_schema() == outs
    assert again.input_schema() == ins


@pytest.mark.parametrize(
    "bad",
    [
        "question",
        "a -> b -> c",
        "a: __import__('os').system('x') -> b",
        "a: Unknown -> b",
        "1a -> b",
        "a, a -> b",
        "a -> a",
        "a ->",
    ],
)
def test_bad_signature_strings_raise(bad):
    with pytest.raises(SignatureError):
        em.Signature(bad)


def test_type_parsing_never_evaluates(tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(SignatureError):
        em.Signature(f"a: open({str(marker)!r}, 'w') -> b")
    assert not marker.exists()


def test_editing_returns_new_signatures():
    sig = em.Signature("question -> answer")
    s2 = sig.with_instructions("Be brief.")
    assert s2.instructions == "Be brief." and sig.instructions != "Be brief."
    s3 = sig.append("context", em.InputField(desc="facts"), str)
    assert list(s3.input_fields) == ["question", "context"]
    s4 = sig.prepend("reasoning", em.OutputField(), str)
    assert list(s4.output_fields) == ["reasoning", "answer"]
    s5 = s4.delete("reasoning")
    assert list(s5.output_fields) == ["answer"]
    s6 = sig.with_updated_fields("answer", int, desc="a number", ge=0)
    assert s6.output_fields["answer"].annotation is int
    assert s6.output_fields["answer"].constraints == {"ge": 0}
    assert sig.output_fields["answer"].annotation is str
    with pytest.raises(SignatureError):
        sig.delete("nope")
    with pytest.raises(SignatureError):
        sig.append("answer", em.OutputField())


def test_annotation_without_field_is_an_error():
    with pytest.raises(SignatureError, match="x"):

        class Bad(em.Signature):
            x: str


def test_unknown_field_option():
    with pytest.raises(SignatureError, match="bogus"):
        em.InputField(bogus=1)


def test_signature_classes_are_not_instantiated():
    with pytest.raises(SignatureError, match="Predict"):
        Rich()


def test_equals_and_repr():
    a = em.Signature("q -> a", "x")
    b = em.Signature("q -> a", "x")
    assert a.equals(b)
    assert not a.equals(em.Signature("q -> a", "y"))
    assert "q: str -> a: str" in repr(a)


def test_runtime_schema_validations_and_transforms():
    schema = em.Schema.create(
        {"name": str, "age": (int, {"ge": 0}), "tags": "list[str]"},
        transforms=[lambda d: {**d, "name": d["name"].strip()}],
        validations=[lambda d: d["age"] < 150 or "age must be under 150"],
        name="Person",
    )
    assert schema.validate({"name": "  Ann ", "age": "30", "tags": []}) == {"name": "Ann", "age": 30, "tags": []}
    with pytest.raises(ValidationError) as info:
        schema.validate({"name": "A", "age": -1, "tags": []})
    assert info.value.field == "age"
    with pytest.raises(ValidationError, match="under 150"):
        schema.validate({"name": "A", "age": 200, "tags": []})
    assert schema.json_schema()["properties"]["tags"]["type"] == "array"


def test_output_schema_transform_runs_after_validation():
    schema = em.Schema.create({"n": int}, transforms=[lambda d: {**d, "double": d["n"] * 2}], role="output")
    assert schema.validate({"n": "4"}) == {"n": 4, "double": 8}


def test_a_class_signature_without_a_docstring_gets_the_default_instructions():
    """It took the base class's own docstring ("Base class of all signatures; ...") as its instructions."""

    class Bare(em.Signature):
        question: str = em.InputField()
        answer: str = em.OutputField()

    class Documented(em.Signature):
        """Answer briefly."""

        question: str = em.InputField()
        answer: str = em.OutputField()

    class Child(Documented):
        detail: str = em.OutputField()

    assert "Base class" not in Bare.instructions
    assert "question" in Bare.instructions and "answer" in Bare.instructions
    assert Child.instructions == "Answer briefly."  # a documented parent's instructions are still inherited


def test_signatures_with_the_same_name_instructions_and_fields_are_equal():
    first = em.Signature("question -> answer")
    rebuilt = em.Signature.from_state(first.dump_state())
    assert rebuilt is not first and rebuilt == first and hash(rebuilt) == hash(first)
    assert first != first.with_instructions("Other.")
    assert first != em.Signature("question -> answer: int")
    assert first != em.Signature("question -> reply")
    renamed = em.Signature.from_state({**first.dump_state(), "name": "Other"})
    assert renamed != first and first.equals(renamed)  # equals() compares instructions and fields only
    assert first != "question -> answer"


def test_json_schema_extra_describes_a_field_as_dspy_does():
    class Sig(em.Signature):
        question: str = em.InputField(prefix="Q:")
        long_answer: str = em.OutputField(desc="the answer", min_length=5, max_length=10)
        score: int = em.OutputField(ge=1, le=5, pattern=None)

    assert Sig.fields["question"].json_schema_extra == {
        "__dspy_field_type": "input",
        "desc": "${question}",
        "prefix": "Q:",
    }
    assert Sig.fields["long_answer"].json_schema_extra == {
        "__dspy_field_type": "output",
        "desc": "the answer",
        "prefix": "Long Answer:",
        "constraints": "minimum length: 5, maximum length: 10",
    }
    assert (
        Sig.fields["score"].json_schema_extra["constraints"] == "greater than or equal to: 1, less than or equal to: 5"
    )
    updated = Sig.with_updated_fields("question", prefix="Asked:")
    assert updated.fields["question"].json_schema_extra["prefix"] == "Asked:"
    assert em.schema.infer_prefix("isHTTPSSecure123") == "Is HTTPS Secure 123"


def test_a_signature_class_called_with_values_gives_a_validated_value():
    class Sig(em.Signature):
        question: str = em.InputField()
        count: int = em.OutputField()

    value = Sig(question="q", count="3")
    assert isinstance(value, Sig) and value.question == "q" and value.count == 3
    assert value == Sig(question="q", count=3) and value != Sig(question="q", count=4)
    assert repr(value) == "Sig(question='q', count=3)"
    with pytest.raises(ValidationError, match="count"):
        Sig(question="q")
    with pytest.raises(SignatureError, match="no field"):
        Sig(question="q", count=1, other=2)
    with pytest.raises(SignatureError, match="by keyword"):
        Sig(3)


def test_a_typed_attribute_without_a_field_is_a_type_error_too():
    with pytest.raises(SignatureFieldError, match="InputField") as caught:

        class Bad(em.Signature):
            question: str
            answer: str = em.OutputField()

    assert isinstance(caught.value, TypeError) and isinstance(caught.value, SignatureError)
    with pytest.raises(SignatureError, match="distinct names"):
        em.Signature("value -> value")
