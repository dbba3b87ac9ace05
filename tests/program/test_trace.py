"""Every run records a trace of its predictor calls; inspect_trace prints it."""

import pytest

import elixirml as em


def test_every_run_records_a_trace_and_inspect_trace_prints_it(capsys):
    lm = em.DummyLM([{"reasoning": "r", "answer": "x"}])
    pred = em.ChainOfThought("question -> answer", lm=lm)(question="q")
    assert len(pred.trace) == 1 and pred.trace[0].completion.startswith("[[ ## reasoning")
    text = em.inspect_trace(pred)
    assert "ChainOfThought(question: str -> reasoning: str, answer: str)" in text
    assert "inputs:  {'question': 'q'}" in text and "'answer': 'x'" in capsys.readouterr().out
    with pytest.raises(TypeError):
        em.inspect_trace("nope")
