"""Modules built of modules: BestOfN, Refine, MultiChainComparison."""

import pytest

import elixirml as em


def test_refine_stops_at_first_good_attempt_and_retries_see_feedback():
    lm = em.DummyLM([{"answer": "short"}, {"answer": "a much longer answer"}, {"answer": "unused"}])
    em.configure(lm=lm)
    refine = em.Refine(em.Predict("question -> answer"), n=3, reward_fn=lambda i, p: len(p.answer) / 10, threshold=1.0)
    assert refine(question="q").answer == "a much longer answer"
    assert len(lm.requests) == 2
    second = lm.requests[1]["messages"]
    assert second[-2]["role"] == "assistant" and "short" in second[-2]["content"]
    assert "scored 0.50, below the required 1.00" in second[-1]["content"]
    assert [h["settings"]["rollout_id"] for h in lm.history] == [0, 1]


def test_best_of_n_keeps_best_and_tolerates_failures():
    lm = em.DummyLM([{"answer": "1"}, "unparseable", {"answer": "3"}, {"answer": "2"}])
    em.configure(lm=lm)
    best = em.BestOfN(
        em.Predict("question -> answer, score: int"),
        n=4,
        reward_fn=lambda i, p: p.score if "score" in p else 0,
        threshold=10,
    )
    lm._answers = [{"answer": "a", "score": 1}, "garbage", {"answer": "b", "score": 3}, {"answer": "c", "score": 2}]
    with em.context(output_retries=0):  # the failed attempt stays failed (no re-ask of its answer)
        assert best(question="q").answer == "b"
    assert len(lm.requests) == 4
    assert all(r["settings"]["temperature"] == 1.0 for r in lm.requests)


def test_multi_chain_comparison():
    attempts = [{"reasoning": f"r{i}", "answer": str(i)} for i in range(3)]
    lm = em.DummyLM([attempts, {"rationale": "attempt 2 is right", "answer": "2"}])
    em.configure(lm=lm)
    mcc = em.MultiChainComparison("question -> answer", M=3)
    pred = mcc(question="q")
    assert pred.answer == "2" and pred.rationale == "attempt 2 is right"
    assert lm.requests[0]["settings"]["n"] == 3
    assert lm.requests[0]["settings"]["temperature"] == 0.7
    compare_prompt = lm.requests[1]["messages"][-1]["content"]
    assert "my prediction is answer: 1" in compare_prompt and "[[ ## attempt_3 ## ]]" in compare_prompt


# ---------------------------------------------------------------- issue 35: setup errors and budgets propagate
@pytest.mark.parametrize("wrapper", [em.BestOfN, em.Refine])
def test_best_of_n_and_refine_do_not_retry_setup_errors_or_spent_budgets(wrapper):
    from elixirml.errors import BudgetExceededError, ConfigurationError
    from elixirml.lm import spending_limit

    em.configure(lm=None)
    unconfigured = wrapper(em.Predict("question -> answer"), n=3, reward_fn=lambda i, p: 1.0, fail_count=5)
    attempts = []
    original = unconfigured.module.aforward

    async def counted(**kwargs):
        attempts.append(1)
        return await original(**kwargs)

    unconfigured.module.aforward = counted
    with pytest.raises(ConfigurationError, match="No LM configured"):
        unconfigured(question="q")
    assert len(attempts) == 1

    lm = em.DummyLM([{"answer": "a"}] * 5)
    em.configure(lm=lm)
    best = wrapper(em.Predict("question -> answer"), n=3, reward_fn=lambda i, p: 0.0, fail_count=5)
    with spending_limit(1), pytest.raises(BudgetExceededError):
        best(question="q")
    assert len(lm.requests) == 1
