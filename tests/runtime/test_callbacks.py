"""Callbacks: DSPy's BaseCallback method names, registration through settings, failures contained."""

from __future__ import annotations

import asyncio
import logging

import pytest

import elixirml as em
from elixirml.callbacks import Callback, CompletionTexts
from elixirml.errors import ConfigurationError, ProviderError
from elixirml.optimizers import RandomSearch


class Recorder(Callback):
    def __init__(self):
        self.events = []

    def _record(self, name, **arguments):
        self.events.append((name, arguments))

    def on_module_start(self, call_id, instance, inputs):
        self._record("module_start", call_id=call_id, instance=instance, inputs=inputs)

    def on_module_end(self, call_id, outputs, exception=None):
        self._record("module_end", call_id=call_id, outputs=outputs, exception=exception)

    def on_lm_start(self, call_id, instance, inputs):
        self._record("lm_start", call_id=call_id, instance=instance, inputs=inputs)

    def on_lm_end(self, call_id, outputs, exception=None):
        self._record("lm_end", call_id=call_id, outputs=outputs, exception=exception)

    def on_adapter_format_start(self, call_id, instance, inputs):
        self._record("format_start", call_id=call_id, instance=instance, inputs=inputs)

    def on_adapter_format_end(self, call_id, outputs, exception=None):
        self._record("format_end", call_id=call_id, outputs=outputs, exception=exception)

    def on_adapter_parse_start(self, call_id, instance, inputs):
        self._record("parse_start", call_id=call_id, instance=instance, inputs=inputs)

    def on_adapter_parse_end(self, call_id, outputs, exception=None):
        self._record("parse_end", call_id=call_id, outputs=outputs, exception=exception)

    def on_tool_start(self, call_id, instance, inputs):
        self._record("tool_start", call_id=call_id, instance=instance, inputs=inputs)

    def on_tool_end(self, call_id, outputs, exception=None):
        self._record("tool_end", call_id=call_id, outputs=outputs, exception=exception)

    def on_evaluate_start(self, call_id, instance, inputs):
        self._record("evaluate_start", call_id=call_id, instance=instance, inputs=inputs)

    def on_evaluate_end(self, call_id, outputs, exception=None):
        self._record("evaluate_end", call_id=call_id, outputs=outputs, exception=exception)

    def on_compile_start(self, call_id, instance, inputs):
        self._record("compile_start", call_id=call_id, instance=instance, inputs=inputs)

    def on_compile_end(self, call_id, outputs, exception=None):
        self._record("compile_end", call_id=call_id, outputs=outputs, exception=exception)

    def on_trial_end(self, call_id, instance, trial):
        self._record("trial_end", call_id=call_id, instance=instance, trial=trial)

    def names(self):
        return [name for name, _ in self.events]

    def first(self, name):
        return next(arguments for n, arguments in self.events if n == name)


def test_method_names_and_arguments_match_dspy_base_callback():
    import inspect

    expected = {
        "on_module_start": ["self", "call_id", "instance", "inputs"],
        "on_module_end": ["self", "call_id", "outputs", "exception"],
        "on_lm_start": ["self", "call_id", "instance", "inputs"],
        "on_lm_end": ["self", "call_id", "outputs", "exception"],
        "on_adapter_format_start": ["self", "call_id", "instance", "inputs"],
        "on_adapter_format_end": ["self", "call_id", "outputs", "exception"],
        "on_adapter_parse_start": ["self", "call_id", "instance", "inputs"],
        "on_adapter_parse_end": ["self", "call_id", "outputs", "exception"],
        "on_tool_start": ["self", "call_id", "instance", "inputs"],
        "on_tool_end": ["self", "call_id", "outputs", "exception"],
        "on_evaluate_start": ["self", "call_id", "instance", "inputs"],
        "on_evaluate_end": ["self", "call_id", "outputs", "exception"],
        "on_trial_end": ["self", "call_id", "instance", "trial"],
    }
    for name, parameters in expected.items():
        assert list(inspect.signature(getattr(Callback, name)).parameters) == parameters, name


def test_a_predict_call_reports_module_adapter_and_lm_in_nesting_order():
    recorder = Recorder()
    lm = em.DummyLM([{"answer": "Paris"}])
    em.configure(lm=lm, callbacks=[recorder])
    predict = em.Predict("question -> answer")
    prediction = predict(question="Capital of France?")
    assert prediction.answer == "Paris"
    assert recorder.names() == [
        "module_start",
        "format_start",
        "format_end",
        "lm_start",
        "parse_start",
        "parse_end",
        "lm_end",
        "module_end",
    ]
    start = recorder.first("module_start")
    assert start["instance"] is predict and start["inputs"] == {
        "args": (),
        "kwargs": {"question": "Capital of France?"},
    }
    end = recorder.first("module_end")
    assert end["call_id"] == start["call_id"] and end["outputs"] is prediction and end["exception"] is None
    lm_start = recorder.first("lm_start")
    assert lm_start["instance"] is lm and lm_start["inputs"]["messages"][-1]["role"] == "user"
    assert lm_start["inputs"]["kwargs"]["max_tokens"] == 512  # the effective request settings
    lm_end = recorder.first("lm_end")
    assert isinstance(lm_end["outputs"], CompletionTexts) and "Paris" in lm_end["outputs"][0]
    assert lm_end["outputs"].response.usage.calls == 1
    assert recorder.first("format_end")["outputs"][0]["role"] == "system"
    assert recorder.first("parse_end")["outputs"] == {"answer": "Paris"}
    assert len({arguments["call_id"] for name, arguments in recorder.events if name.endswith("_start")}) == 4


def test_async_calls_and_a_scoped_context_register_callbacks_only_inside():
    recorder = Recorder()
    em.configure(lm=em.DummyLM([{"answer": "a"}] * 3))
    predict = em.Predict("question -> answer")
    predict(question="before")
    with em.context(callbacks=[recorder]):
        asyncio.run(predict.acall(question="inside"))
    predict(question="after")
    assert recorder.names().count("module_start") == 1
    assert recorder.first("module_start")["inputs"]["kwargs"] == {"question": "inside"}


def test_a_failing_callback_is_logged_once_and_never_breaks_the_call(caplog):
    class Broken(Callback):
        def on_lm_start(self, call_id, instance, inputs):
            raise RuntimeError("callback bug")

    recorder = Recorder()
    em.configure(lm=em.DummyLM([{"answer": "a"}] * 2), callbacks=[Broken(), recorder])
    predict = em.Predict("question -> answer")
    with caplog.at_level(logging.DEBUG, logger="elixirml"):
        assert predict(question="one").answer == "a"
        assert predict(question="two").answer == "a"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "callback bug" in str(r.exc_info)]
    assert len(warnings) == 1 and "on_lm_start" in warnings[0].getMessage()
    assert recorder.names().count("lm_end") == 2  # the other callback still heard everything


def test_failures_reach_the_end_callbacks_as_exceptions():
    def fail(messages, settings):
        raise ProviderError("endpoint down", retryable=False)

    recorder = Recorder()
    em.configure(lm=em.FunctionLM(fail), callbacks=[recorder])
    with pytest.raises(ProviderError):
        em.Predict("question -> answer")(question="q")
    assert isinstance(recorder.first("lm_end")["exception"], ProviderError)
    assert recorder.first("lm_end")["outputs"] is None
    assert isinstance(recorder.first("module_end")["exception"], ProviderError)


def test_an_assertion_retry_is_not_reported_as_an_exception():
    class Checked(em.Module):
        def __init__(self):
            self.inner = em.Predict("question -> answer")

        def forward(self, question):
            prediction = self.inner(question=question)
            em.assert_output(prediction.answer == "good", "say good")
            return prediction

    class Outer(em.Module):
        def __init__(self):
            self.checked = Checked()

        def forward(self, question):
            return self.checked(question=question)

    recorder = Recorder()
    em.configure(lm=em.DummyLM([{"answer": "bad"}, {"answer": "good"}]), callbacks=[recorder])
    assert Outer()(question="q").answer == "good"
    module_ends = [arguments for name, arguments in recorder.events if name == "module_end"]
    assert all(end["exception"] is None for end in module_ends)
    # the retried attempt of Checked ended without outputs; the second one with the prediction
    assert [end["outputs"] is None for end in module_ends] == [False, True, False, False, False]


def test_tool_calls_are_reported():
    @em.tool
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    recorder = Recorder()
    em.configure(callbacks=[recorder])
    assert add(a=2, b=3) == 5
    assert recorder.first("tool_start")["instance"] is add
    assert recorder.first("tool_start")["inputs"] == {"kwargs": {"a": 2, "b": 3}}
    assert recorder.first("tool_end")["outputs"] == 5


def test_evaluate_and_optimizer_trials_are_reported():
    examples = [em.Example(question=f"q{i}", answer="yes").with_inputs("question") for i in range(4)]
    recorder = Recorder()
    em.configure(lm=em.DummyLM([{"answer": "yes"}] * 200), callbacks=[recorder])
    program = em.Predict("question -> answer")

    def metric(example, prediction, trace=None):
        return example.answer == prediction.answer

    result = em.evaluate(program, examples, metric, display_progress=False)
    start = recorder.first("evaluate_start")
    assert start["instance"] is program and start["inputs"]["devset"] == examples
    assert recorder.first("evaluate_end")["outputs"] is result

    recorder.events.clear()
    optimizer = RandomSearch(metric, num_candidates=2, max_bootstrapped_demos=1, search_variables=False)
    compiled = optimizer.compile(program, trainset=examples, valset=examples)
    trials = [arguments["trial"] for name, arguments in recorder.events if name == "trial_end"]
    assert trials and trials == optimizer.last_result.trials
    assert all(arguments["instance"] is optimizer for name, arguments in recorder.events if name == "trial_end")
    assert recorder.names()[0] == "compile_start" and recorder.names()[-1] == "compile_end"
    assert recorder.first("compile_end")["outputs"] is compiled


def test_a_dspy_style_callback_without_on_trial_end_is_accepted():
    class DSPyStyle:  # duck-typed like a dspy BaseCallback subclass: no on_trial_end, no em base class
        def __init__(self):
            self.seen = []

        def on_module_start(self, call_id, instance, inputs):
            self.seen.append("start")

        def on_module_end(self, call_id, outputs, exception=None):
            self.seen.append("end")

    callback = DSPyStyle()
    em.configure(lm=em.DummyLM([{"answer": "a"}]), callbacks=[callback])
    em.Predict("question -> answer")(question="q")
    assert callback.seen == ["start", "end"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not a list", "'callbacks' expects a list of em.callbacks.Callback"),
        ([object()], "is not a callback"),
        (Recorder(), "'callbacks' expects a list"),
    ],
)
def test_bad_callbacks_setting_is_refused(value, message):
    with pytest.raises(ConfigurationError, match=message):
        em.configure(callbacks=value)


def test_trace_content_setting_is_validated_and_read_from_the_environment(monkeypatch):
    with pytest.raises(ConfigurationError, match="'trace_content' expects True or False"):
        em.configure(trace_content="yes")
    monkeypatch.setenv("ELIXIRML_TRACE_CONTENT", "true")
    settings = em.reload_config()
    assert settings.trace_content is True and settings.layer_of("trace_content") == "env ELIXIRML_TRACE_CONTENT"
    assert settings.callbacks == ()
