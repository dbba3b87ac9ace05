"""em.Program: what on_error sees."""

import asyncio

import pytest

import elixirml as em


def test_on_error_never_sees_setup_errors():
    from elixirml.errors import ConfigurationError

    seen = []

    class Guarded(em.Program):
        def __init__(self):
            super().__init__()
            self.answer = em.Predict("question -> answer, score: int")

        def forward(self, question):
            return self.answer(question=question)

        def on_error(self, error):
            seen.append(error)
            return em.Prediction(answer="fallback")

    em.configure(lm=None)
    with pytest.raises(ConfigurationError, match="No LM configured"):
        Guarded()(question="q")
    with pytest.raises(ConfigurationError):
        asyncio.run(Guarded().acall(question="q"))
    assert seen == []
    em.configure(lm=em.DummyLM(["garbage that is not an answer"] * 5))
    with em.context(output_retries=0):  # an answer that does not parse still reaches on_error
        assert Guarded()(question="q").answer == "fallback"
    assert [type(e).__name__ for e in seen] == ["AdapterParseError"]
