import asyncio
import re
import threading
import time

import pytest

import elixirml as em
from elixirml.errors import AssertionFailed, ValidationError


def pipeline_for(retries=2):
    return em.Pipeline(
        em.stage.transform(lambda v: {**v, "question": v["question"].strip()}),
        em.stage.validate(lambda v: len(v["question"]) > 0 or "question is empty"),
        em.stage.predict(
            "question -> answer",
            strategy=em.Variable.module({"direct": em.Predict, "cot": em.ChainOfThought}, default="direct"),
            temperature=em.Variable.float(default=0.3, low=0, high=1),
        ),
        em.stage.assert_output(lambda v: v["answer"].isupper(), message="Answer in capitals", retries=retries),
    )


def test_pipeline_transform_validate_predict_assert_retry():
    lm = em.DummyLM([{"answer": "paris"}, {"answer": "PARIS"}])
    em.configure(lm=lm)
    out = pipeline_for()(question="  where?  ")
    assert out.answer == "PARIS" and out.question == "where?"
    assert "[[ ## question ## ]]\nwhere?" in lm.requests[0]["messages"][-1]["content"]
    assert lm.requests[0]["settings"]["temperature"] == 0.3
    retry = lm.requests[1]["messages"]
    assert retry[-2] == {"role": "assistant", "content": "[[ ## answer ## ]]\nparis\n\n[[ ## completed ## ]]"}
    assert "Answer in capitals" in retry[-1]["content"]


def test_pipeline_assertion_raises_after_retries():
    lm = em.DummyLM([{"answer": "no"}] * 5)
    em.configure(lm=lm)
    with pytest.raises(AssertionFailed) as info:
        pipeline_for(retries=2)(question="q")
    assert len(lm.requests) == 3 and len(info.value.attempts) == 3


def test_pipeline_validate_stage_stops():
    em.configure(lm=em.DummyLM([]))
    with pytest.raises(ValidationError, match="question is empty"):
        pipeline_for()(question="   ")


def test_pipeline_variables_are_discovered_and_configurable():
    pipeline = pipeline_for()
    names = pipeline.variable_space().names()
    assert "stages.2.strategy" in names and "stages.2.temperature" in names
    assert "stages.2.predictor.instructions" in names
    cot = pipeline.with_variables(**{"stages.2.strategy": "cot", "stages.2.temperature": 0.9})
    assert type(cot.stages[2].predictor) is em.ChainOfThought
    assert type(pipeline.stages[2].predictor) is em.Predict
    lm = em.DummyLM([{"reasoning": "r", "answer": "OK"}])
    em.configure(lm=lm)
    assert cot(question="q").answer == "OK"
    assert lm.requests[0]["settings"]["temperature"] == 0.9


def test_pipeline_inside_program_body():
    class Body(em.Program):
        def __init__(self):
            super().__init__()
            self.pipe = pipeline_for()

        def forward(self, question):
            return self.pipe(question=question)

    assert "pipe.stages.2.strategy" in Body().variable_space().names()


def latency_lm(peak=None):
    running = []
    lock = threading.Lock()

    def answer(messages, settings):
        with lock:
            running.append(1)
            if peak is not None:
                peak.append(len(running))
        n = int(re.search(r"item (\d+)", messages[-1]["content"]).group(1))
        time.sleep(0.05 * (5 - n))  # later inputs finish first
        with lock:
            running.pop()
        return {"answer": str(n)}

    return em.FunctionLM(answer)


def test_run_batch_parallel_keeps_input_order():
    peak = []
    em.configure(lm=latency_lm(peak))
    pipeline = em.Pipeline(em.stage.predict("question -> answer"))
    results = pipeline.run_batch([{"question": f"item {i}"} for i in range(5)], strategy="parallel", concurrency=5)
    assert [r.answer for r in results] == ["0", "1", "2", "3", "4"]
    assert max(peak) > 1  # the inputs ran at the same time
    sequential = pipeline.run_batch([{"question": f"item {i}"} for i in range(2)], strategy="sequential")
    assert [r.answer for r in sequential] == ["0", "1"]


def test_run_batch_streaming_yields_first_result_before_last_input_finishes():
    em.configure(lm=latency_lm())
    pipeline = em.Pipeline(em.stage.predict("question -> answer"))

    async def main():
        order = []
        async for index, result in pipeline.run_batch(
            [{"question": f"item {i}"} for i in range(5)], strategy="streaming", concurrency=5
        ):
            order.append((index, result.answer, time.perf_counter()))
        return order

    order = asyncio.run(main())
    assert [o[0] for o in order] == [4, 3, 2, 1, 0]
    assert all(str(i) == a for i, a, _ in order)
    assert order[-1][2] - order[0][2] > 0.15  # the first arrived well before the last finished


def test_run_batch_collects_errors_when_asked():
    em.configure(lm=em.DummyLM({"item 1": {"answer": "x"}}, field="question"))
    pipeline = em.Pipeline(em.stage.predict("question -> answer"))
    results = pipeline.run_batch([{"question": "item 1"}, {"question": "item 2"}], return_exceptions=True)
    assert results[0].answer == "x" and isinstance(results[1], em.errors.ConfigurationError)
    with pytest.raises(em.errors.ConfigurationError):
        pipeline.run_batch([{"question": "item 2"}])
