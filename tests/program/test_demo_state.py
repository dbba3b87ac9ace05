"""Predict.dump_state writes demos in DSPy 3.4.1's layout; states ElixirML wrote before still load."""

import datetime
import json

import pydantic
import pytest
import sqlalchemy as sa

import elixirml as em
from elixirml.errors import LoadError


class Site(pydantic.BaseModel):
    url: pydantic.HttpUrl
    created: datetime.datetime


def _predict():
    predict = em.Predict("question, context -> answer")
    predict.demos = [
        em.Example(question="q1", context="c1", answer="a1").with_inputs("question", "context"),
        em.Example(question="q2", context="c2", answer="a2").with_inputs("question"),
        {"question": "q3", "context": "c3", "answer": "a3"},
    ]
    return predict


def test_dump_state_writes_flat_demos_with_their_input_marks_beside_them():
    state = _predict().dump_state()
    assert state["demos"][0] == {"question": "q1", "context": "c1", "answer": "a1"}
    assert state["demo_inputs"] == [["context", "question"], ["question"], None]


def test_demos_round_trip_with_their_input_marks():
    original = _predict()
    loaded = em.Predict("question, context -> answer").load_state(json.loads(json.dumps(original.dump_state())))
    assert [d.toDict() for d in loaded.demos] == [
        {"question": "q1", "context": "c1", "answer": "a1"},
        {"question": "q2", "context": "c2", "answer": "a2"},
        {"question": "q3", "context": "c3", "answer": "a3"},
    ]
    assert [d.input_keys for d in loaded.demos] == [{"question", "context"}, {"question"}, None]


def test_pydantic_values_in_demos_are_written_as_json_data():
    class Summarize(em.Signature):
        site: Site = em.InputField()
        summary: str = em.OutputField()

    predict = em.Predict(Summarize)
    predict.demos = [{"site": Site(url="https://example.com", created=datetime.datetime(2021, 1, 1)), "summary": "s"}]
    demo = json.loads(json.dumps(predict.dump_state()))["demos"][0]
    assert demo["site"] == {"url": "https://example.com/", "created": "2021-01-01T00:00:00"}


def test_a_state_in_elixirmls_earlier_demo_layout_still_loads(tmp_path):
    state = _predict().dump_state()
    del state["demo_inputs"]
    state["demos"] = [
        {"data": {"question": "q1", "context": "c1", "answer": "a1"}, "inputs": ["context", "question"]},
        {"data": {"question": "q3", "context": "c3", "answer": "a3"}},
    ]
    loaded = em.Predict("question, context -> answer").load_state(state)
    assert [d.toDict() for d in loaded.demos] == [
        {"question": "q1", "context": "c1", "answer": "a1"},
        {"question": "q3", "context": "c3", "answer": "a3"},
    ]
    assert [d.input_keys for d in loaded.demos] == [{"question", "context"}, None]
    state["demos"] = [{"question": "q1", "answer": "a1"}]  # an earlier state always had data/inputs
    with pytest.raises(LoadError, match="Malformed demo"):
        em.Predict("question, context -> answer").load_state(state)


def test_a_stored_version_in_the_earlier_layout_still_loads(tmp_path):
    store = em.Store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        store.save(_predict(), "p")
        with store.engine.begin() as conn:  # rewrite the kept state as an earlier release wrote it
            row = conn.execute(sa.text("SELECT hash, state FROM em_state_blobs")).all()
            for r in row:
                state = json.loads(r.state) if isinstance(r.state, str) else r.state
                for predictor in (state.get("predictors") or {}).values():
                    inputs = predictor.pop("demo_inputs")
                    predictor["demos"] = [
                        {"data": d, **({"inputs": i} if i is not None else {})}
                        for d, i in zip(predictor["demos"], inputs)
                    ]
                conn.execute(
                    sa.text("UPDATE em_state_blobs SET state = :s WHERE hash = :h"),
                    {"s": json.dumps(state), "h": r.hash},
                )
        loaded = store.load("p")
        assert [d.toDict() for d in loaded.demos] == [
            *(d.toDict() for d in _predict().demos[:2]),
            {"question": "q3", "context": "c3", "answer": "a3"},
        ]
        assert [d.input_keys for d in loaded.demos] == [{"question", "context"}, {"question"}, None]
        store.save(_predict(), "p")  # the same demos, in the new layout: the diff sees no change
        assert "demos" not in store.diff("p", 1, 2)["predictors"].get("self", {})
        changed = _predict()
        changed.demos[1] = changed.demos[1].with_inputs("question", "context")
        store.save(changed, "p")
        assert store.diff("p", 1, 3)["predictors"]["self"]["demos"] == {"from": 3, "to": 3}
    finally:
        store.close()


def test_a_dspy_predictor_state_marks_the_signatures_inputs():
    state = _predict().dump_state()
    del state["demo_inputs"], state["type"]
    state["demos"] = [{"question": "q", "context": "c", "answer": "a", "augmented": True}]
    loaded = em.Predict("question, context -> answer").load_state(state)
    assert loaded.demos[0].toDict() == {"question": "q", "context": "c", "answer": "a"}
    assert loaded.demos[0].input_keys == {"question", "context"}


@pytest.mark.parametrize("marks", [[["question"]], "question", [["question"], 3, None]])
def test_malformed_input_marks_are_refused(marks):
    state = _predict().dump_state()
    state["demo_inputs"] = marks
    with pytest.raises(LoadError, match="demo_inputs"):
        em.Predict("question, context -> answer").load_state(state)


def test_a_saved_file_round_trips_through_em_load(tmp_path):
    predict = _predict()
    path = predict.save(tmp_path / "p.json")
    loaded = em.load(path)
    assert [d.input_keys for d in loaded.demos] == [{"question", "context"}, {"question"}, None]
    assert loaded.demos == [*predict.demos[:2], em.Example(question="q3", context="c3", answer="a3")]
