"""OpenTelemetry spans, checked with the SDK's in-memory exporter."""

from __future__ import annotations

import asyncio
import json

import pytest

import elixirml as em
from elixirml.callbacks import OpenTelemetryCallback, extract_trace_context
from elixirml.errors import ProviderError
from elixirml.optimizers import RandomSearch

pytest.importorskip("opentelemetry.sdk")
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode


@pytest.fixture
def exporter():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    em.configure(callbacks=[OpenTelemetryCallback(provider)])
    return exporter, provider


def by_name(spans):
    return {span.name: span for span in spans}


def parent_of(span, spans):
    return next((s for s in spans if span.parent is not None and s.context.span_id == span.parent.span_id), None)


def test_a_predict_call_makes_a_module_span_with_adapter_and_genai_lm_spans(exporter):
    memory, _ = exporter
    em.configure(lm=em.DummyLM([{"answer": "Paris"}], model="openai/gpt-4o-mini"))
    em.Predict("question -> answer", temperature=0.3)(question="Capital of France?")
    spans = memory.get_finished_spans()
    named = by_name(spans)
    assert set(named) == {"module Predict", "format ChatAdapter", "chat gpt-4o-mini", "parse ChatAdapter"}
    root = named["module Predict"]
    assert root.parent is None and root.attributes["elixirml.program.name"] == "Predict"
    chat = named["chat gpt-4o-mini"]
    assert parent_of(chat, spans) is root and parent_of(named["format ChatAdapter"], spans) is root
    assert parent_of(named["parse ChatAdapter"], spans) is chat  # parsed while the answer is checked
    attributes = chat.attributes
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "openai"
    assert attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert attributes["gen_ai.request.temperature"] == 0.3
    assert attributes["gen_ai.request.max_tokens"] == 512
    assert attributes["gen_ai.usage.input_tokens"] > 0 and attributes["gen_ai.usage.output_tokens"] > 0
    assert tuple(attributes["gen_ai.response.finish_reasons"]) == ("stop",)
    assert len({span.context.trace_id for span in spans}) == 1


def test_prompt_and_answer_text_only_when_trace_content_is_on(exporter):
    memory, _ = exporter
    em.configure(lm=em.DummyLM([{"answer": "Paris"}] * 2))
    predict = em.Predict("question -> answer")
    predict(question="secret question")
    texts = [str(value) for span in memory.get_finished_spans() for value in span.attributes.values()]
    assert not any("secret question" in text or "Paris" in text for text in texts)
    memory.clear()
    with em.context(trace_content=True):
        predict(question="secret question")
    chat = by_name(memory.get_finished_spans())["chat dummy"]
    assert "secret question" in chat.attributes["gen_ai.input.messages"]
    assert "Paris" in chat.attributes["gen_ai.output.messages"]


def test_a_failed_call_sets_error_type_and_status(exporter):
    memory, _ = exporter

    def fail(messages, settings):
        raise ProviderError("endpoint down", retryable=False)

    em.configure(lm=em.FunctionLM(fail))
    with pytest.raises(ProviderError):
        em.Predict("question -> answer")(question="q")
    named = by_name(memory.get_finished_spans())
    for name in ("chat function", "module Predict"):
        assert named[name].attributes["error.type"] == "ProviderError"
        assert named[name].status.status_code is StatusCode.ERROR


def test_context_follows_asyncio_tasks_and_worker_threads(exporter):
    memory, provider = exporter
    em.configure(lm=em.DummyLM([{"answer": "a"}] * 10))

    class Threaded(em.Module):  # a sync forward: acall runs it in a worker thread
        def __init__(self):
            self.first = em.Predict("question -> answer")
            self.second = em.Predict("question -> answer")

        def forward(self, question):
            return self.second(answer=self.first(question=question).answer, question=question)

    program = Threaded()
    tracer = provider.get_tracer("test")

    async def main():
        with tracer.start_as_current_span("request"):
            await asyncio.gather(program.acall(question="x"), program.acall(question="y"))

    asyncio.run(main())
    spans = memory.get_finished_spans()
    request = by_name(spans)["request"]
    outer = [s for s in spans if s.name == "module Threaded"]
    assert len(outer) == 2 and all(parent_of(s, spans) is request for s in outer)
    assert all(s.attributes["elixirml.program.name"] == "Threaded" for s in outer)
    inner = [s for s in spans if s.name == "module Predict"]
    assert len(inner) == 4 and all(parent_of(s, spans) in outer for s in inner)
    assert "elixirml.program.name" not in inner[0].attributes  # named once, at the program's span
    for span in inner:  # each task's LM call stays under its own predictor
        chats = [s for s in spans if s.name == "chat dummy" and parent_of(s, spans) is span]
        assert len(chats) == 1
    assert {s.context.trace_id for s in spans} == {request.context.trace_id}


def test_tool_span(exporter):
    memory, _ = exporter

    @em.tool
    def lookup(key: str) -> str:
        """Look a key up."""
        return key.upper()

    lookup(key="k")
    (span,) = memory.get_finished_spans()
    assert span.name == "execute_tool lookup"
    assert (
        span.attributes["gen_ai.operation.name"] == "execute_tool" and span.attributes["gen_ai.tool.name"] == "lookup"
    )


def test_evaluation_compile_and_trial_spans_carry_scores_and_variable_values(exporter):
    memory, _ = exporter
    examples = [em.Example(question=f"q{i}", answer="yes").with_inputs("question") for i in range(4)]
    em.configure(lm=em.DummyLM([{"answer": "yes"}] * 200))

    def metric(example, prediction, trace=None):
        return example.answer == prediction.answer

    class Task(em.Program):
        temperature = em.Variable.float(default=0.7, low=0.0, high=1.0, setting="temperature")

        def __init__(self):
            super().__init__()
            self.answer = em.Predict("question -> answer")

        def forward(self, question):
            return self.answer(question=question)

    optimizer = RandomSearch(metric, num_candidates=3, max_bootstrapped_demos=1, search_variables=True, seed=1)
    optimizer.compile(Task(), trainset=examples, valset=examples)
    spans = memory.get_finished_spans()
    compile_span = by_name(spans)["compile RandomSearch"]
    assert compile_span.attributes["elixirml.program.name"] == "Task"
    trials = [s for s in spans if s.name.startswith("trial ")]
    assert len(trials) == len(optimizer.last_result.trials)
    assert all(parent_of(s, spans) is compile_span for s in trials)
    first = trials[0]
    assert first.attributes["elixirml.trial.score"] == optimizer.last_result.trials[0].score
    for span in trials:  # each trial span names the variable values it tried
        trial = next(t for t in optimizer.last_result.trials if t.number == span.attributes["elixirml.trial.number"])
        for name, value in trial.configuration.items():
            recorded = span.attributes[f"elixirml.trial.variables.{name}"]
            assert recorded == (value if isinstance(value, (str, float, int)) else json.dumps(value))
    assert any("elixirml.trial.variables.temperature" in span.attributes for span in trials)
    assert first.start_time <= first.end_time
    evaluations = [s for s in spans if s.name == "evaluate Task"]
    assert evaluations and all(parent_of(s, spans) is compile_span for s in evaluations)
    assert evaluations[0].attributes["elixirml.evaluate.examples"] == 4


def test_a_stored_program_carries_its_name_and_version(exporter, tmp_path):
    memory, _ = exporter
    em.configure(lm=em.DummyLM([{"answer": "a"}] * 2))
    store = em.Store(f"sqlite:///{tmp_path / 'store.db'}")
    store.save(em.Predict("question -> answer"), "qa")
    loaded = store.load("qa")
    store.close()
    loaded(question="q")
    root = by_name(memory.get_finished_spans())["module Predict"]
    assert root.attributes["elixirml.program.name"] == "qa" and root.attributes["elixirml.program.version"] == 1


def test_an_incoming_traceparent_is_continued(exporter):
    memory, _ = exporter
    em.configure(lm=em.DummyLM([{"answer": "a"}]))
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    incoming = extract_trace_context({"TraceParent": f"00-{trace_id}-{parent_id}-01"})
    token = otel_context.attach(incoming)
    try:
        em.Predict("question -> answer")(question="q")
    finally:
        otel_context.detach(token)
    root = by_name(memory.get_finished_spans())["module Predict"]
    assert format(root.context.trace_id, "032x") == trace_id
    assert format(root.parent.span_id, "016x") == parent_id and root.parent.is_remote
    assert "elixirml.program.name" in root.attributes  # a remote parent is not one of our modules


def test_no_traceparent_starts_a_new_trace(exporter):
    memory, _ = exporter
    em.configure(lm=em.DummyLM([{"answer": "a"}]))
    token = otel_context.attach(extract_trace_context({"content-type": "application/json"}))
    try:
        em.Predict("question -> answer")(question="q")
    finally:
        otel_context.detach(token)
    assert by_name(memory.get_finished_spans())["module Predict"].parent is None
