"""assert_output and suggest_output: retried with feedback, recorded in the trace, soft ones warn."""

import logging

import elixirml as em


def test_soft_suggestion_returns_last_output_with_warning(caplog):
    lm = em.DummyLM([{"answer": "no"}] * 5)
    em.configure(lm=lm)

    class Soft(em.Module):
        def __init__(self):
            self.p = em.Predict("question -> answer")

        def forward(self, question):
            pred = self.p(question=question)
            em.suggest_output(pred.answer == "yes", "Say yes", retries=2)
            return pred

    with caplog.at_level(logging.WARNING, logger="elixirml"):
        assert Soft()(question="q").answer == "no"
    assert len(lm.requests) == 3
    assert "Say yes" in caplog.text


def test_assertion_results_are_in_the_trace():
    lm = em.DummyLM([{"answer": "a"}, {"answer": "b"}])
    em.configure(lm=lm)

    class Checked(em.Module):
        def __init__(self):
            self.p = em.Predict("question -> answer")

        def forward(self, question):
            pred = self.p(question=question)
            em.assert_output(pred.answer == "b", "want b")
            return pred

    pred = Checked()(question="q")
    assert [e.assertions for e in pred.trace] == [
        [{"message": "want b", "passed": False, "hard": True}],
        [{"message": "want b", "passed": True, "hard": True}],
    ]
