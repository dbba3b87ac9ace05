"""Per-run state lives in one run context (issue 32 item 1): trackers, budgets, spans and the run's own fields."""

import asyncio

import pytest

import elixirml as em
from elixirml.lm import limit_calls, open_budgets, spending_limit
from elixirml.lm._usage import CallBudget
from elixirml.runtime import SpanRecorder, current_context
from elixirml.runtime._context import RunContext


def test_usage_trackers_and_budgets_are_fields_of_the_one_run_context():
    assert current_context().usage == () and current_context().budgets == ()
    with em.track_usage() as outer, spending_limit(5) as budget:
        with em.track_usage() as inner:
            assert current_context().usage == (outer, inner)  # outermost first
            assert current_context().budgets == (budget,) == open_budgets()
        assert current_context().usage == (outer,)
    assert current_context().usage == () and current_context().budgets == ()


def test_a_copy_of_the_run_context_leaves_the_original_as_it_was():
    context = RunContext()
    tracker, budget = em.lm.UsageTracker(), CallBudget(1)
    changed = context.with_usage(tracker).with_budget(budget).with_span("s1").with_run("run", [])
    assert (changed.usage, changed.budgets, changed.span, changed.run) == ((tracker,), (budget,), "s1", "run")
    assert context == RunContext()  # immutable: every change is a new context
    with pytest.raises(AttributeError):
        context.usage = (tracker,)  # type: ignore[misc]


def test_a_tracker_or_budget_opened_in_one_task_is_not_seen_by_a_concurrent_one():
    lm = em.DummyLM([{"answer": "x"}] * 10)
    predict = em.Predict("question -> answer", lm=lm)
    seen = {}

    async def counted():
        with em.track_usage() as usage, limit_calls(CallBudget(1)):
            await predict.acall(question="a")
            await asyncio.sleep(0.01)
            seen["counted"] = usage.calls

    async def other():
        await asyncio.sleep(0.005)  # while the first task's blocks are open
        seen["other"] = (current_context().usage, current_context().budgets)
        await predict.acall(question="b")  # not against the other task's budget of one call

    async def main():
        await asyncio.gather(counted(), other())

    asyncio.run(main())
    assert seen == {"counted": 1, "other": ((), ())}


def test_the_open_span_is_carried_by_the_run_context():
    recorder = SpanRecorder()
    during = []

    def answer(messages, settings):
        during.append(current_context().span)  # what the LM's transport sees while its span is open
        return {"answer": "x"}

    with em.context(callbacks=[recorder]):
        em.Predict("question -> answer", lm=em.FunctionLM(answer))(question="q")
    module, lm_span = recorder.spans[0], next(s for s in recorder.spans if s["kind"] == "lm")
    assert module["parent"] is None and lm_span["parent"] == module["id"]
    assert during == [lm_span["id"]]
    assert current_context().span is None  # every span closed
