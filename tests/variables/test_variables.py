import random

import pytest

import elixirml as em
from elixirml.errors import LoadError, VariableError


class QA(em.Signature):
    """Answer the question using the context."""

    context: str = em.InputField()
    question: str = em.InputField()
    answer: str = em.OutputField()
    confidence: float = em.OutputField(ge=0.0, le=1.0)


class QAProgram(em.Program):
    temperature = em.Variable.float(default=0.7, low=0.0, high=2.0)
    strategy = em.Variable.module({"direct": em.Predict, "cot": em.ChainOfThought}, default="cot")

    def __init__(self):
        super().__init__()
        self.answer = self.strategy(QA)

    def forward(self, context: str, question: str):
        pred = self.answer(context=context, question=question, config={"temperature": self.temperature})
        em.assert_output(pred.confidence >= 0.5, "Low confidence answer")
        return pred


class Retrieve(em.Module):
    k = em.Variable.int(default=3, low=1, high=10)
    mode = em.Variable.choice(["bm25", "dense"], default="bm25")
    alpha = em.Variable.float(default=0.5, low=0.0, high=1.0, active_when={"mode": "dense"})
    effective = em.Variable.composite(lambda k, mode: k * (2 if mode == "dense" else 1), depends=["k", "mode"])

    def __init__(self):
        self.rerank = em.Predict("passages -> best")


class Middle(em.Module):
    depth = em.Variable.int(default=1, low=1, high=4)

    def __init__(self):
        self.retrieve = Retrieve()


class Deep(em.Program):
    use_cache = em.Variable.bool(default=True)
    prefix = em.Variable.text("Answer briefly.", candidates=["Answer in detail."])

    def __init__(self):
        super().__init__()
        self.middle = Middle()
        self.final = em.ChainOfThought("question -> answer")


def test_discovery_three_levels_deep_with_implicit_predictor_variables():
    names = Deep().variable_space().names()
    assert names == [
        "use_cache",
        "prefix",
        "middle.depth",
        "middle.retrieve.k",
        "middle.retrieve.mode",
        "middle.retrieve.alpha",
        "middle.retrieve.effective",
        "middle.retrieve.rerank.instructions",
        "middle.retrieve.rerank.demos",
        "middle.retrieve.rerank.adapter",
        "final.instructions",
        "final.demos",
        "final.adapter",
    ]


def test_instance_access_gives_current_values():
    program = QAProgram()
    assert program.temperature == 0.7
    assert program.strategy is em.ChainOfThought
    assert isinstance(program.answer, em.ChainOfThought)
    assert Retrieve().effective == 3


def test_with_variables_swaps_module_and_leaves_original():
    program = QAProgram()
    direct = program.with_variables(strategy="direct", temperature=0.1)
    assert type(direct.answer) is em.Predict
    assert direct.temperature == 0.1
    assert type(program.answer) is em.ChainOfThought and program.temperature == 0.7
    back = direct.with_variables(strategy="cot")
    assert type(back.answer) is em.ChainOfThought and back.temperature == 0.1


def test_with_configuration_sets_nested_and_implicit_values():
    program = Deep()
    demo = em.Example(question="q", reasoning="r", answer="a")
    new = program.with_configuration(
        {
            "middle.retrieve.k": 7,
            "middle.retrieve.mode": "dense",
            "middle.retrieve.alpha": 0.9,
            "final.instructions": "Be terse.",
            "final.demos": [demo],
        }
    )
    assert new.middle.retrieve.k == 7 and new.middle.retrieve.effective == 14
    assert new.final.instructions == "Be terse." and new.final.demos == [demo]
    assert program.middle.retrieve.k == 3 and program.final.demos == []
    assert new.configuration()["middle.retrieve.k"] == 7


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"temperature": 3.0}, "temperature.*out of range"),
        ({"bogus": 1}, "Unknown variable.*bogus"),
        ({"strategy": "tree"}, "strategy.*not one of"),
        ({"temperature": "hot"}, "temperature.*expected a number"),
    ],
)
def test_validate_rejects_bad_values_naming_the_variable(config, message):
    with pytest.raises(VariableError, match=message):
        QAProgram().variable_space().validate(config)


def test_conditional_conflict_and_composite_are_rejected():
    space = Deep().variable_space()
    with pytest.raises(VariableError, match="alpha.*only applies when"):
        space.validate({"middle.retrieve.alpha": 0.2})  # mode is bm25
    space.validate({"middle.retrieve.mode": "dense", "middle.retrieve.alpha": 0.2})
    with pytest.raises(VariableError, match="effective.*derived"):
        space.validate({"middle.retrieve.effective": 4})


def test_cycles_are_detected():
    class Cyclic(em.Module):
        a = em.Variable.choice(["x", "y"], active_when={"b": "x"})
        b = em.Variable.choice(["x", "y"], active_when={"a": "x"})

        def forward(self):
            return None

    with pytest.raises(VariableError, match="cycle"):
        Cyclic().variable_space()


def test_sample_default_and_encoding():
    space = Deep().variable_space()
    rng = random.Random(0)
    samples = [space.sample(rng) for _ in range(30)]
    for sample in samples:
        space.validate(sample.to_dict())  # every sample is valid
        if sample["middle.retrieve.mode"] == "bm25":
            assert sample["middle.retrieve.alpha"] == 0.5  # inactive: kept at its base value
    assert {s["middle.retrieve.k"] for s in samples} != {3}
    assert space.default()["middle.retrieve.k"] == 3
    enc = space.encoding()
    assert enc["middle.retrieve.k"]["type"] == "numeric" and enc["middle.retrieve.k"]["integer"]
    assert enc["middle.retrieve.mode"] == {"type": "categorical", "choices": ["bm25", "dense"]}
    assert enc["prefix"]["type"] == "text" and "Answer in detail." in enc["prefix"]["candidates"]
    assert "middle.retrieve.effective" not in enc


def test_space_repr_lists_variables():
    text = repr(QAProgram().variable_space())
    assert "temperature: float = 0.7" in text and "strategy: module = cot" in text
    assert "answer.instructions" in text and "answer.demos" in text


def test_declaration_errors():
    with pytest.raises(VariableError, match="low <= high"):
        em.Variable.float(default=1.0, low=2.0, high=0.0)
    with pytest.raises(VariableError, match="out of range"):
        em.Variable.int(default=11, low=0, high=10)
    with pytest.raises(VariableError, match="log"):
        em.Variable.float(default=1.0, low=0.0, high=2.0, log=True)


def test_setting_a_variable_on_an_instance_validates():
    program = QAProgram()
    program.temperature = 0.2
    assert program.temperature == 0.2
    with pytest.raises(VariableError):
        program.temperature = 5.0


def test_configuration_survives_save_and_load(tmp_path):
    program = QAProgram().with_variables(strategy="direct", temperature=0.3)
    program.answer.demos = [em.Example(context="c", question="q", answer="a", confidence=0.9)]
    path = program.save(tmp_path / "qa.json")
    loaded = QAProgram().load(path)
    assert type(loaded.answer) is em.Predict and loaded.temperature == 0.3
    assert loaded.answer.demos == program.answer.demos
    again = em.load(path)
    assert type(again.answer) is em.Predict and again.temperature == 0.3
    bad = path.read_text().replace('"temperature": 0.3', '"temperature": 9.0')
    (tmp_path / "bad.json").write_text(bad)
    with pytest.raises(LoadError, match="temperature"):
        QAProgram().load(tmp_path / "bad.json")


def test_seed_program_runs_and_assertion_retries_with_feedback():
    answers = [
        {"reasoning": "r", "answer": "Paris", "confidence": 0.2},
        {"reasoning": "r", "answer": "Paris", "confidence": 0.9},
    ]
    lm = em.DummyLM(answers)
    em.configure(lm=lm)
    program = QAProgram()
    result = program(context="The Eiffel Tower is in Paris, France.", question="Where is the Eiffel Tower?")
    assert result.answer == "Paris" and result.confidence == 0.9
    assert lm.requests[0]["settings"]["temperature"] == 0.7
    retry_messages = lm.requests[1]["messages"]
    assert retry_messages[-2]["role"] == "assistant" and "0.2" in retry_messages[-2]["content"]
    assert "Low confidence answer" in retry_messages[-1]["content"]


def test_hard_assertion_raises_after_exactly_n_retries():
    lm = em.DummyLM([{"reasoning": "r", "answer": "x", "confidence": 0.1}] * 10)
    em.configure(lm=lm)
    with pytest.raises(em.errors.AssertionFailed) as info:
        QAProgram()(context="c", question="q")
    assert len(lm.requests) == 3  # one try + 2 retries
    assert len(info.value.attempts) == 3


def test_program_schemas_and_hooks():
    calls = []

    class Hooked(em.Program):
        input_schema = em.Signature("question: str -> answer: str")
        output_schema = em.Signature("question: str -> answer: str")

        def __init__(self):
            super().__init__()
            self.qa = em.Predict("question -> answer")

        def before_run(self, inputs):
            calls.append("before")
            return {"question": inputs["question"].upper()}

        def after_prediction(self, predictor, prediction):
            calls.append(("prediction", prediction.answer))

        def after_run(self, inputs, output):
            calls.append("after")

        def forward(self, question):
            return self.qa(question=question)

    lm = em.DummyLM({"HELLO": {"answer": "hi"}}, field="question")
    em.configure(lm=lm)
    assert Hooked().run({"question": "hello"}).answer == "hi"
    assert calls == ["before", ("prediction", "hi"), "after"]
    with pytest.raises(em.errors.ValidationError, match="question"):
        Hooked()(question=None)


def test_on_error_can_recover():
    class Safe(em.Program):
        def forward(self, x):
            raise RuntimeError("boom")

        def on_error(self, error):
            return em.Prediction(answer=f"recovered from {error}")

    assert Safe()(x=1).answer == "recovered from boom"


def test_program_create_runs_modules_in_connection_order():
    lm = em.DummyLM({"[[ ## question ## ]]": {"draft": "d1"}, "[[ ## draft ## ]]": {"answer": "final"}})
    em.configure(lm=lm)
    program = em.Program.create(
        modules={"refine": em.Predict("draft -> answer"), "draft": em.Predict("question -> draft")},
        connections=[("draft", "refine")],
        variables={"temperature": em.Variable.float(default=0.4, low=0, high=1)},
    )
    out = program(question="q")
    assert out.answer == "final" and out.draft == "d1"
    assert all(r["settings"]["temperature"] == 0.4 for r in lm.requests)
    assert "temperature" in program.variable_space()
    hotter = program.with_variables(temperature=0.9)
    hotter(question="q")
    assert lm.requests[-1]["settings"]["temperature"] == 0.9


def test_program_create_with_module_variable():
    program = em.Program.create(
        modules={"qa": ("strategy", "question -> answer")},
        variables={"strategy": em.Variable.module({"direct": em.Predict, "cot": em.ChainOfThought}, default="direct")},
    )
    assert type(program.modules["qa"]) is em.Predict
    assert type(program.with_variables(strategy="cot").modules["qa"]) is em.ChainOfThought
    with pytest.raises(em.errors.ConfigurationError, match="cycle"):
        em.Program.create(
            modules={"a": em.Predict("x -> y"), "b": em.Predict("y -> x")}, connections=[("a", "b"), ("b", "a")]
        )


def test_lm_variable_chooses_the_lm():
    fast, slow = em.DummyLM([{"answer": "fast"}]), em.DummyLM([{"answer": "slow"}])

    class Chooser(em.Program):
        model = em.Variable.lm({"fast": fast, "slow": slow}, default="fast")

        def __init__(self):
            super().__init__()
            self.qa = em.Predict("question -> answer")

        def forward(self, question):
            return self.qa(question=question, lm=self.model)

    assert Chooser()(question="q").answer == "fast"
    assert Chooser().with_variables(model="slow")(question="q").answer == "slow"


# ---------------------------------------------------------------- issue 35: bound values reach every predictor
class InlineQA(em.Program):
    temperature = em.Variable.float(default=0.3, low=0.0, high=2.0, setting="temperature")
    max_tokens = em.Variable.int(default=77, low=10, high=500, setting="max_tokens")

    def forward(self, context, question):
        return em.Predict(QA)(context=context, question=question)


def test_predictor_created_inside_forward_gets_the_bound_values():
    lm = em.DummyLM([{"answer": "a", "confidence": 0.9}] * 2)
    em.configure(lm=lm)
    InlineQA()(context="c", question="q")
    InlineQA().with_variables(temperature=1.1, max_tokens=200)(context="c", question="q")
    sent = [(r["settings"]["temperature"], r["settings"]["max_tokens"]) for r in lm.requests]
    assert sent == [(0.3, 77), (1.1, 200)]


def test_a_nested_modules_binding_wins_for_predictors_it_creates():
    lm = em.DummyLM([{"answer": "a", "confidence": 0.9}] * 2)
    em.configure(lm=lm)

    class Inner(em.Module):
        temperature = em.Variable.float(default=0.9, low=0.0, high=2.0, setting="temperature")

        def forward(self, context, question):
            return em.Predict(QA)(context=context, question=question)

    class Outer(em.Program):
        temperature = em.Variable.float(default=0.2, low=0.0, high=2.0, setting="temperature")
        max_tokens = em.Variable.int(default=33, low=10, high=500, setting="max_tokens")

        def __init__(self):
            super().__init__()
            self.inner = Inner()

        def forward(self, context, question):
            em.Predict(QA)(context=context, question=question)
            return self.inner(context=context, question=question)

    Outer()(context="c", question="q")
    sent = [(r["settings"]["temperature"], r["settings"]["max_tokens"]) for r in lm.requests]
    assert sent == [(0.2, 33), (0.9, 33)]


# ---------------------------------------------------------------- issue 35: one variable per setting
class Formatted(em.Program):
    fmt = em.Variable.choice(["chat", "plain"], default="chat")

    def __init__(self, by_object=False):
        super().__init__()
        self.answer = em.Predict("question -> answer", adapter=type(self).fmt if by_object else self.fmt)

    def forward(self, question):
        return self.answer(question=question)


def format_lm():
    def answer(messages, settings):
        sent = "chat" if any("[[ ## " in m["content"] for m in messages) else "plain"
        return {"answer": sent}

    return em.FunctionLM(answer)


@pytest.mark.parametrize("by_object", [False, True])
def test_a_users_adapter_variable_replaces_the_implicit_one(by_object):
    em.configure(lm=format_lm())
    program = Formatted(by_object=by_object)
    assert program.variable_space().names() == ["fmt", "answer.instructions", "answer.demos"]
    assert Formatted.fmt.name == "fmt"  # the user's variable keeps its name
    assert program(question="q").answer == "chat"
    plain = program.with_variables(fmt="plain")
    assert plain(question="q").answer == "plain" and plain.fmt == "plain"
    with pytest.raises(VariableError):
        program.with_configuration({"answer.adapter": "plain"})


def test_trials_report_the_adapter_they_sent():
    from elixirml.optimizers import RandomSearch

    em.configure(lm=format_lm())
    train = [em.Example(question=f"q{i}", answer="plain").with_inputs("question") for i in range(3)]
    optimizer = RandomSearch(
        lambda ex, pred, trace=None: pred.answer == "plain", num_candidates=8, max_bootstrapped_demos=0, seed=1
    )
    optimizer.compile(Formatted(), trainset=train, valset=train)
    trials = optimizer.last_result.trials
    assert {t.configuration.get("fmt", "chat") for t in trials} == {"chat", "plain"}
    for trial in trials:
        assert "answer.adapter" not in trial.configuration
        assert trial.score == (100.0 if trial.configuration.get("fmt", "chat") == "plain" else 0.0), trial


def _lookup(term: str) -> str:
    """Look a term up."""
    return f"{term} is in Paris."


def test_module_variable_offers_a_module_that_needs_arguments_with_them_bound():
    import functools

    class Agentic(em.Program):
        strategy = em.Variable.module(
            {"direct": em.Predict, "react": functools.partial(em.ReAct, tools=[_lookup], max_iters=2)}
        )

        def __init__(self):
            super().__init__()
            self.answer = self.strategy("question -> answer")

        def forward(self, question):
            return self.answer(question=question)

    lm = em.DummyLM(
        [
            {"next_thought": "look", "next_tool_name": "_lookup", "next_tool_args": {"term": "the tower"}},
            {"next_thought": "done", "next_tool_name": "finish", "next_tool_args": {}},
            {"reasoning": "the lookup says", "answer": "Paris"},
        ]
    )
    agent = Agentic().with_variables(strategy="react")
    assert type(agent.answer) is em.ReAct and list(agent.answer.tools) == ["_lookup"]
    assert agent.with_variables(strategy=em.ReAct).configuration()["strategy"] == "react"  # the class names it too
    with em.context(lm=lm):
        result = agent(question="Where is the tower?")
    assert result.answer == "Paris" and result.trajectory["observation_0"] == "the tower is in Paris."
    assert "strategy: module = react" in str(agent.variable_space())
    assert type(agent.with_variables(strategy="direct").answer) is em.Predict


def test_module_variable_refuses_an_option_that_cannot_be_built_from_a_signature():
    with pytest.raises(VariableError, match=r"option 'react' \(ReAct\) .* needs tools.*functools\.partial\(ReAct"):
        em.Variable.module({"direct": em.Predict, "react": em.ReAct})
    with pytest.raises(VariableError, match="option 'x' is 3"):
        em.Variable.module({"x": 3})
