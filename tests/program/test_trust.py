"""Variables and request settings you can trust: every variable reaches what runs, or it is reported.

Each test here failed on the code before the settings/variables rework (issue "Variables and
request settings you can trust").
"""

from __future__ import annotations

import warnings
from typing import Literal

import pytest

import elixirml as em
from elixirml.errors import ConfigurationError, VariableError


class QA(em.Signature):
    """Answer the question using the context."""

    context: str = em.InputField()
    question: str = em.InputField()
    answer: str = em.OutputField()
    confidence: float = em.OutputField(ge=0.0, le=1.0)


ANSWER = {"answer": "Paris", "confidence": 0.9}


def temperatures(lm: em.DummyLM) -> list[float | None]:
    return [r["settings"].get("temperature") for r in lm.requests]


# ---------------------------------------------------------------- what __init__ reads is re-applied
class InitReader(em.Program):
    temperature = em.Variable.float(default=0.7, low=0.0, high=2.0)

    def __init__(self):
        super().__init__()
        self.answer = em.Predict(QA, temperature=self.temperature)

    def forward(self, context, question):
        return self.answer(context=context, question=question)


def test_variable_read_in_init_is_reapplied_by_with_variables():
    lm = em.DummyLM([ANSWER] * 2)
    em.configure(lm=lm)
    program = InitReader()
    program(context="c", question="q")
    program.with_variables(temperature=0.1)(context="c", question="q")
    assert temperatures(lm) == [0.7, 0.1]
    assert program.answer.config == {"temperature": 0.7}  # the original is untouched


class ModelChoice(em.Program):
    model = em.Variable.lm({"big": em.DummyLM([ANSWER]), "cheap": em.DummyLM([ANSWER])})

    def __init__(self):
        super().__init__()
        self.answer = em.Predict(QA, lm=self.model)

    def forward(self, context, question):
        return self.answer(context=context, question=question)


def test_lm_variable_read_in_init_is_reapplied():
    program = ModelChoice()
    cheap = program.with_variables(model="cheap")
    cheap(context="c", question="q")
    options = ModelChoice.model.options
    assert len(options["cheap"].requests) == 1
    assert options["big"].requests == []


def test_state_set_after_construction_survives_a_rebuild():
    lm = em.DummyLM([ANSWER] * 3)
    other = em.DummyLM([ANSWER] * 3)
    em.configure(lm=lm)
    program = InitReader()
    demo = em.Example(context="c0", question="q0", answer="a0", confidence=1.0).with_inputs("context", "question")
    program.answer.demos = [demo]
    program.answer.instructions = "Answer in one word."
    program.answer.config["max_tokens"] = 17
    program.set_lm(other)
    rebuilt = program.with_variables(temperature=0.2)
    assert rebuilt.answer is not program.answer
    assert rebuilt.answer.demos == [demo]
    assert rebuilt.answer.instructions == "Answer in one word."
    assert rebuilt.answer.config == {"temperature": 0.2, "max_tokens": 17}
    assert rebuilt.answer.lm is other
    rebuilt(context="c", question="q")
    assert other.requests[-1]["settings"]["temperature"] == 0.2
    assert other.requests[-1]["settings"]["max_tokens"] == 17


class Strategy(em.Program):
    strategy = em.Variable.module({"direct": em.Predict, "cot": em.ChainOfThought}, default="cot")

    def __init__(self):
        super().__init__()
        self.answer = self.strategy(QA)

    def forward(self, context, question):
        return self.answer(context=context, question=question)


def test_module_choice_keeps_predictor_config_and_lm_set_afterwards():
    lm = em.DummyLM([ANSWER] * 2)
    program = Strategy()
    program.answer.config["temperature"] = 0.3
    program.set_lm(lm)
    direct = program.with_variables(strategy="direct")
    assert type(direct.answer) is em.Predict
    assert direct.answer.lm is lm
    assert direct.answer.config == {"temperature": 0.3}
    direct(context="c", question="q")
    assert temperatures(lm) == [0.3]


# ---------------------------------------------------------------- variables bind to what they set
class Bound(em.Program):
    temperature = em.Variable.float(default=0.7, low=0.0, high=2.0, setting="temperature")
    max_tokens = em.Variable.int(default=100, low=10, high=500, setting="max_tokens", targets=["second"])

    def __init__(self):
        super().__init__()
        self.first = em.Predict("question -> draft")
        self.second = em.Predict("draft -> answer")

    def forward(self, question):
        draft = self.first(question=question).draft
        return self.second(draft=draft)


def test_setting_binds_to_every_predictor_and_targets_limit_it():
    lm = em.DummyLM([{"draft": "d"}, {"answer": "a"}] * 2)
    em.configure(lm=lm)
    program = Bound()
    program(question="q")
    program.with_variables(temperature=0.2, max_tokens=300)(question="q")
    settings = [r["settings"] for r in lm.requests]
    assert [s["temperature"] for s in settings] == [0.7, 0.7, 0.2, 0.2]
    assert settings[0]["max_tokens"] != 100 and settings[1]["max_tokens"] == 100
    assert settings[2]["max_tokens"] != 300 and settings[3]["max_tokens"] == 300


def test_lm_variable_binds_to_its_targets():
    big, cheap = em.DummyLM([{"draft": "d"}] * 2), em.DummyLM([{"answer": "a"}] * 2)
    fallback = em.DummyLM([{"draft": "d"}] * 2)

    class Routed(em.Program):
        model = em.Variable.lm({"big": big, "cheap": cheap}, default="big", targets=["second"])

        def __init__(self):
            super().__init__()
            self.first = em.Predict("question -> draft")
            self.second = em.Predict("draft -> answer")

        def forward(self, question):
            return self.second(draft=self.first(question=question).draft)

    big._answers = [{"answer": "a"}]
    em.configure(lm=fallback)
    Routed().with_variables(model="cheap")(question="q")
    assert len(fallback.requests) == 1 and len(cheap.requests) == 1 and big.requests == []


def test_binding_declaration_errors():
    with pytest.raises(VariableError, match="not a request setting"):
        em.Variable.float(default=0.5, low=0, high=1, setting="temprature")
    with pytest.raises(VariableError, match="setting="):
        em.Variable.float(default=0.5, low=0, high=1, targets=["answer"])

    class BadTarget(em.Program):
        temperature = em.Variable.float(default=0.5, low=0, high=1, setting="temperature", targets=["nope"])

        def __init__(self):
            super().__init__()
            self.answer = em.Predict("question -> answer")

        def forward(self, question):
            return self.answer(question=question)

    em.configure(lm=em.DummyLM([{"answer": "a"}]))
    with pytest.raises(ConfigurationError, match="nope"):
        BadTarget()(question="q")


def test_precedence_forced_call_bound_predictor_lm_process():
    lm = em.DummyLM([{"answer": "a"}] * 5, temperature=0.1, top_p=0.5)
    em.configure(lm=lm, max_tokens=64)

    class Layers(em.Program):
        temperature = em.Variable.float(default=0.3, low=0.0, high=2.0, setting="temperature")
        seed = em.Variable.int(default=7, low=0, high=100, setting="seed")

        def __init__(self, call=None):
            super().__init__()
            self.answer = em.Predict("question -> answer", temperature=0.9, seed=1, top_k=4)
            self.call = call

        def forward(self, question):
            return self.answer(question=question, config=self.call)

    Layers()(question="q")
    first = lm.requests[-1]["settings"]
    # bound (0.3) > predictor (0.9) > LM (0.1); bound seed over predictor seed; predictor top_k; LM top_p; process
    assert (first["temperature"], first["seed"], first["top_k"], first["top_p"], first["max_tokens"]) == (
        0.3,
        7,
        4,
        0.5,
        64,
    )
    Layers(call={"temperature": 1.5, "max_tokens": 9})(question="q")
    second = lm.requests[-1]["settings"]
    assert (second["temperature"], second["max_tokens"]) == (1.5, 9)  # per-call beats bound and process
    best = em.BestOfN(Layers(call={"temperature": 1.5}), N=1, reward_fn=lambda i, p: 1.0, temperature=0.05)
    best(question="q")
    assert lm.requests[-1]["settings"]["temperature"] == 0.05  # forced by the wrapper beats per-call


class HandPassed(em.Program):
    temperature = em.Variable.float(default=0.7, low=0.0, high=2.0)

    def __init__(self):
        super().__init__()
        self.answer = em.Predict(QA)

    def forward(self, context, question):
        return self.answer(context=context, question=question, config={"temperature": self.temperature})


def test_best_of_n_temperature_wins_over_the_wrapped_programs_config():
    lm = em.DummyLM([ANSWER] * 7)
    em.configure(lm=lm)
    best = em.BestOfN(HandPassed(), N=5, reward_fn=lambda inputs, pred: 0.0, threshold=1.0)
    best(context="c", question="q")
    assert temperatures(lm) == [1.0] * 5
    assert [h["settings"].get("rollout_id") for h in lm.history] == [0, 1, 2, 3, 4]
    refine = em.Refine(HandPassed(), N=2, reward_fn=lambda inputs, pred: 0.0, threshold=1.0, temperature=0.4)
    refine(context="c", question="q")
    assert temperatures(lm)[-2:] == [0.4, 0.4]


def test_bootstrap_rounds_force_temperature_one():
    lm = em.FunctionLM(lambda messages, settings: {"answer": "wrong", "confidence": 0.9})
    em.configure(lm=lm)
    train = [
        em.Example(context="c", question=f"q{i}", answer="right").with_inputs("context", "question") for i in range(2)
    ]
    em.optimizers.BootstrapFewShot(
        lambda ex, pred, trace=None: pred.answer == ex.answer, max_bootstrapped_demos=1, max_rounds=2
    ).compile(HandPassed(), trainset=train)
    temps = [h["settings"].get("temperature") for h in lm.history]
    assert temps == [0.7, 0.7, 1.0, 1.0]


def test_program_create_binds_any_setting_to_every_predictor():
    lm = em.DummyLM([{"draft": "d"}, {"answer": "a"}])
    em.configure(lm=lm)
    program = em.Program.create(
        {"first": em.Predict("question -> draft"), "second": em.ChainOfThought("draft -> answer")},
        variables={
            "frequency_penalty": em.Variable.float(default=0.5, low=0.0, high=1.0),
            "presence_penalty": em.Variable.float(default=0.25, low=0.0, high=1.0),
        },
    )
    lm._answers[1] = {"reasoning": "r", "answer": "a"}
    program(question="q")
    assert [r["settings"]["frequency_penalty"] for r in lm.requests] == [0.5, 0.5]
    assert [r["settings"]["presence_penalty"] for r in lm.requests] == [0.25, 0.25]


# ---------------------------------------------------------------- no inert variables
class Sentiment(em.Signature):
    """Classify the sentiment."""

    sentence: str = em.InputField()
    sentiment: Literal["positive", "negative"] = em.OutputField()


class Classifier(em.Program):
    temperature = em.Variable.float(default=0.7, low=0.0, high=1.0)
    unused = em.Variable.choice(["a", "b"], default="a")

    def __init__(self):
        super().__init__()
        self.classify = em.Predict(Sentiment)

    def forward(self, sentence):
        return self.classify(sentence=sentence, config={"temperature": self.temperature})


def test_variable_space_does_not_depend_on_the_configured_lm():
    em.configure(lm=em.DummyLM([]))
    without = Classifier().variable_space().names()
    scoring = em.DummyLM([])
    scoring.supports_scoring = True
    em.configure(lm=scoring)
    assert Classifier().variable_space().names() == without
    assert "classify.decoding" in without


def test_variable_space_iterates_over_its_variables():
    space = Classifier().variable_space()
    names = list(space)
    assert names == space.names()
    assert all(isinstance(space[name], em.Variable) for name in space)
    assert dict(space.items())["temperature"].kind == "float"


def test_optimizer_reports_and_skips_inert_variables():
    lm = em.FunctionLM(lambda messages, settings: {"sentiment": "positive"})
    em.configure(lm=lm)
    train = [em.Example(sentence=f"s{i}", sentiment="positive").with_inputs("sentence") for i in range(4)]
    optimizer = em.optimizers.RandomSearch(
        lambda ex, pred, trace=None: pred.sentiment == ex.sentiment, num_candidates=3, max_bootstrapped_demos=1
    )
    with pytest.warns(UserWarning, match="variable 'unused' has no effect on any request"):
        optimizer.compile(Classifier(), trainset=train)
    result = optimizer.last_result
    assert result is not None
    assert "unused" in result.inert_variables
    assert "temperature" not in result.inert_variables
    # the LM cannot score, so decoding has one usable value here: not searched, and said so
    assert "classify.decoding" in result.inert_variables
    for trial in result.trials:
        assert "unused" not in trial.configuration
        assert trial.configuration.get("classify.decoding", "generate") == "generate"


# ---------------------------------------------------------------- control flow is not an error
class Inner(em.Program):
    def __init__(self):
        super().__init__()
        self.answer = em.Predict(QA)

    def forward(self, context, question):
        pred = self.answer(context=context, question=question)
        em.assert_output(pred.confidence >= 0.5, "Low confidence answer")
        return pred

    def on_error(self, error):
        return em.Prediction(answer="fallback", confidence=0.0)


class Outer(em.Program):
    def __init__(self):
        super().__init__()
        self.inner = Inner()

    def forward(self, context, question):
        return self.inner(context=context, question=question)


def test_nested_on_error_does_not_swallow_assertion_retries():
    lm = em.DummyLM([{"answer": "x", "confidence": 0.1}, {"answer": "Paris", "confidence": 0.9}])
    em.configure(lm=lm)
    result = Outer()(context="c", question="q")
    assert result.answer == "Paris"
    assert len(lm.requests) == 2


def test_a_users_broad_except_does_not_swallow_assertion_retries():
    lm = em.DummyLM([{"answer": "x", "confidence": 0.1}, {"answer": "Paris", "confidence": 0.9}])
    em.configure(lm=lm)

    class Careless(em.Program):
        def __init__(self):
            super().__init__()
            self.answer = em.Predict(QA)

        def forward(self, context, question):
            try:
                pred = self.answer(context=context, question=question)
                em.assert_output(pred.confidence >= 0.5, "Low confidence answer")
            except Exception:
                return em.Prediction(answer="swallowed", confidence=0.0)
            return pred

    assert Careless()(context="c", question="q").answer == "Paris"


def test_evaluate_stops_on_a_setup_error():
    train = [em.Example(question="q", answer="a").with_inputs("question")]
    with pytest.raises(ConfigurationError, match="No LM configured"):
        em.evaluate(em.Predict("question -> answer"), train, em.metrics.exact_match)


def test_optimizers_stop_on_a_setup_error():
    train = [em.Example(question="q", answer="a").with_inputs("question")]
    with pytest.raises(ConfigurationError, match="No LM configured"):
        em.optimizers.RandomSearch(em.metrics.exact_match, num_candidates=2).compile(
            em.Predict("question -> answer"), trainset=train
        )


def test_provider_and_parse_failures_stay_per_example():
    lm = em.DummyLM(["not a parsable answer at all"] * 6)  # each example: an answer and 2 re-asks
    em.configure(lm=lm)
    data = [em.Example(question=f"q{i}", answer="a").with_inputs("question") for i in range(2)]
    result = em.evaluate(em.Predict("question -> answer: int"), data, em.metrics.exact_match)
    assert result.errors == 2


# ---------------------------------------------------------------- DSPy spellings
def test_dspy_spellings_of_modules():
    lm = em.DummyLM([{"answer": "a"}] * 4)
    em.configure(lm=lm)
    predict = em.Predict("question -> answer")
    assert [p.answer for p in predict.batch([{"question": "x"}, {"question": "y"}], num_threads=2)] == ["a", "a"]
    cot = em.ChainOfThought("question -> answer")
    demo = em.Example(question="q", reasoning="r", answer="a").with_inputs("question")
    cot.predict.demos = [demo]
    assert cot.demos == [demo]
    assert em.BestOfN(predict, N=3, reward_fn=lambda i, p: 1.0).n == 3
    assert em.Refine(predict, N=2, reward_fn=lambda i, p: 1.0, threshold=0.5).n == 2
    with pytest.raises(ConfigurationError, match="number of attempts"):
        em.BestOfN(predict, reward_fn=lambda i, p: 1.0)


def test_list_for_a_str_input_is_formatted_as_passages():
    lm = em.DummyLM([{"answer": "a"}])
    em.configure(lm=lm)
    em.Predict("context, question -> answer")(context=["first passage", "second passage"], question="q")
    user = lm.requests[0]["messages"][-1]["content"]
    assert "[1] «first passage»" in user and "[2] «second passage»" in user
    with pytest.raises(em.errors.ValidationError):  # outputs stay strict
        em.Predict("question -> answer").signature.validate_outputs({"answer": ["x"]})


def test_save_program_false_saves_and_a_pickle_is_refused(tmp_path):
    program = em.Predict("question -> answer")
    assert program.save(tmp_path / "p.json", save_program=False).exists()
    with pytest.raises(ConfigurationError, match="pickle"):
        program.save(tmp_path / "q.pkl")
    assert not (tmp_path / "q.pkl").exists()


def test_dspy_compile_keywords():
    lm = em.FunctionLM(lambda messages, settings: {"answer": "a"})
    em.configure(lm=lm)
    train = [em.Example(question=f"q{i}", answer="a").with_inputs("question") for i in range(3)]
    teacher_lm = em.FunctionLM(lambda messages, settings: {"answer": "a"})
    teacher = em.Predict("question -> answer", lm=teacher_lm)
    compiled = em.BootstrapFewShot(em.metrics.exact_match, max_bootstrapped_demos=2, max_labeled_demos=2).compile(
        em.Predict("question -> answer"), teacher=teacher, trainset=train
    )
    assert len(teacher_lm.history) >= 1 and len(compiled.demos) == 2
    search = em.BootstrapFewShotWithRandomSearch(em.metrics.exact_match, num_candidate_programs=2, num_threads=3)
    assert search.concurrency == 3
    mipro = em.MIPROv2(em.metrics.exact_match, auto="light", num_threads=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mipro.compile(
            em.Predict("question -> answer"),
            trainset=train,
            max_bootstrapped_demos=1,
            max_labeled_demos=1,
            requires_permission_to_run=False,
            num_trials=2,
        )
    assert mipro.max_bootstrapped_demos == 4  # per-run options do not stick
    assert all(len(t.configuration.get("demos", [])) <= 1 for t in mipro.last_result.trials)


# ---------------------------------------------------------------- a saved file never steers requests
@pytest.mark.parametrize(
    "config, message",
    [
        ({"model": "gpt-4o"}, "unknown request setting 'model'"),
        ({"messages": [{"role": "system", "content": "x"}]}, "unknown request setting 'messages'"),
        ({"cache": "/tmp/elsewhere.sqlite"}, "may not set"),
        ({"tools": [{"type": "function"}]}, "may not set"),
        ({"max_tokens": "lots"}, "must be an int"),
        ("temperature", "must be a mapping"),
    ],
)
def test_a_saved_config_is_checked_like_code(tmp_path, config, message):
    import json

    path = em.Predict("question -> answer").save(tmp_path / "p.json")
    document = json.loads(path.read_text())
    document["state"]["config"] = config
    path.write_text(json.dumps(document))
    with pytest.raises(em.errors.LoadError, match=message):
        em.load(path)
    with pytest.raises(em.errors.LoadError, match=message):
        em.Predict("question -> answer").load(path)


@pytest.mark.parametrize(
    "field, message",
    [({"name": "__class__", "kind": "input"}, "Invalid field name"), ({"name": "a", "kind": "weird"}, "kinds are")],
)
def test_saved_field_names_and_kinds_pass_the_checks_of_code(tmp_path, field, message):
    import json

    path = em.Predict("question -> answer").save(tmp_path / "p.json")
    document = json.loads(path.read_text())
    document["state"]["signature"]["fields"][0].update(field)
    path.write_text(json.dumps(document))
    with pytest.raises(em.errors.LoadError, match=message):
        em.load(path)


# ---------------------------------------------------------------- wrappers' defaults on a narrow provider
class NoTemperatureLM(em.FunctionLM):
    """A provider that cannot set a temperature (as Anthropic's SDK 2.x)."""

    supported_settings = frozenset({"max_tokens", "n", "stop"})


def test_bootstrap_and_best_of_n_defaults_are_best_effort_on_a_provider_without_temperature():
    lm = NoTemperatureLM(lambda messages, settings: {"answer": "wrong", "confidence": 0.9})
    em.configure(lm=lm)
    train = [
        em.Example(context="c", question=f"q{i}", answer="right").with_inputs("context", "question") for i in range(2)
    ]
    em.optimizers.BootstrapFewShot(
        lambda ex, pred, trace=None: pred.answer == ex.answer, max_bootstrapped_demos=1, max_rounds=2
    ).compile(em.Predict(QA), trainset=train)
    assert all("temperature" not in h["settings"] for h in lm.history)
    assert [h["settings"].get("rollout_id") for h in lm.history] == [None, None, 1, 1]  # rounds still differ
    em.BestOfN(em.Predict(QA), N=2, reward_fn=lambda i, p: 0.0).deepcopy()(context="c", question="q")
    with pytest.raises(ConfigurationError, match="temperature"):  # an explicit value is required
        em.BestOfN(em.Predict(QA), N=2, reward_fn=lambda i, p: 0.0, temperature=0.5)(context="c", question="q")
    attempts = NoTemperatureLM(
        lambda messages, settings: (
            [{"reasoning": "r", "answer": "a"}] * settings.get("n", 1)
            if "attempt_1" not in messages[-1]["content"]
            else {"rationale": "same", "answer": "a"}
        )
    )
    em.configure(lm=attempts)
    assert em.MultiChainComparison("question -> answer", M=2)(question="q").answer == "a"
    assert all("temperature" not in h["settings"] for h in attempts.history)
