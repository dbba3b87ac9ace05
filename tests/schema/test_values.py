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


def test_prediction_completions_and_usage():
    p = em.Prediction.from_completions([{"answer": "1"}, {"answer": "2"}], {"total_tokens": 5})
    assert p.answer == "1"
    assert [c["answer"] for c in p.completions] == ["1", "2"]
    assert p.usage["total_tokens"] == 5
    single = em.Prediction(answer="x")
    assert single.completions == [{"answer": "x"}]
