import json

import pytest

import elixirml as em


def test_example_access_and_inputs():
    ex = em.Example(question="q", answer="a").with_inputs("question")
    assert ex.question == "q" and ex["answer"] == "a"
    assert ex.inputs().to_dict() == {"question": "q"}
    assert ex.labels().to_dict() == {"answer": "a"}
    assert set(ex) == {"question", "answer"} and len(ex) == 2 and "question" in ex
    with pytest.raises(AttributeError, match="nope"):
        _ = ex.nope
    with pytest.raises(KeyError):
        ex.with_inputs("missing")
    with pytest.raises(ValueError, match="with_inputs"):
        em.Example(a=1).inputs()


def test_example_equality_and_hash():
    a = em.Example(q="x", tags=["a", "b"], meta={"k": 1}).with_inputs("q")
    b = em.Example({"q": "x", "tags": ["a", "b"], "meta": {"k": 1}}).with_inputs("q")
    assert a == b and hash(a) == hash(b)
    assert len({a, b}) == 1
    assert a != em.Example(q="x", tags=["a", "b"], meta={"k": 1})
    c = a.copy(q="y")
    assert c.q == "y" and a.q == "x"
    # a plain dict of the same values is equal (input marks are not in a dict); other mappings are not
    assert a == {"q": "x", "tags": ["a", "b"], "meta": {"k": 1}} and a != {"q": "x"}
    assert a != [("q", "x")]


def test_to_dict_keeps_values_and_dspy_to_dict_makes_nested_values_plain():
    history = em.History(messages=[{"q": "first", "a": "1"}])
    inner = em.Example(q="nested")
    ex = em.Example(history=history, items=[inner, {"deep": inner}], q="x")
    assert ex.to_dict()["history"] is history and ex.to_dict()["items"][0] is inner
    plain = ex.toDict()
    assert plain == {
        "history": {"messages": [{"q": "first", "a": "1"}]},
        "items": [{"q": "nested"}, {"deep": {"q": "nested"}}],
        "q": "x",
    }
    assert json.loads(json.dumps(plain)) == plain


def test_nested_examples_in_demos_are_saved_as_json(tmp_path):
    predict = em.Predict("q -> a")
    predict.demos = [em.Example(q=[em.Example(q="inner one"), em.Example(q="inner two")], a="x").with_inputs("q")]
    predict.save(tmp_path / "p.json")
    loaded = em.Predict("q -> a").load(tmp_path / "p.json")
    assert loaded.demos[0] == predict.demos[0].toDict()
    assert loaded.demos[0].q == [{"q": "inner one"}, {"q": "inner two"}]


def test_prediction_completions_and_usage():
    p = em.Prediction.from_completions([{"answer": "1"}, {"answer": "2"}], {"total_tokens": 5})
    assert p.answer == "1"
    assert [c["answer"] for c in p.completions] == ["1", "2"]
    assert p.usage["total_tokens"] == 5
    single = em.Prediction(answer="x")
    assert single.completions == [{"answer": "x"}]


def test_example_repr_is_dspys_and_a_prediction_shows_its_values():
    assert repr(em.Example(a=1)) == "Example({'a': 1}) (input_keys=None)"
    ex = em.Example(q="x", a="y", dspy_uuid="u").with_inputs("q", "a")
    assert repr(ex) == str(ex) == "Example({'q': 'x', 'a': 'y'}) (input_keys={'a', 'q'})"
    assert repr(em.Example(a=1).with_inputs()) == "Example({'a': 1}) (input_keys=set())"
    assert repr(em.Prediction(answer="Paris")) == "Prediction({'answer': 'Paris'})"
