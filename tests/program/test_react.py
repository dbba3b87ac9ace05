import ast
import asyncio
import json
import logging
import operator
import time

import pydantic
import pytest

import elixirml as em
from elixirml.testing import FakeLMServer

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def _arith(node):
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_arith(node.left), _arith(node.right))
    raise ValueError("unsupported expression")


@em.tool
def calculator(expression: str) -> float:
    """Evaluate an arithmetic expression such as '2 * (3 + 4)'."""
    return _arith(ast.parse(expression, mode="eval").body)


TABLE = {"capital of France": "Paris", "population of Paris": "2100000"}


@em.tool
async def lookup(key: str) -> str:
    """Look a fact up in the table."""
    await asyncio.sleep(0)
    return TABLE.get(key, "unknown")


def step(thought, tool, args):
    return {"next_thought": thought, "next_tool_name": tool, "next_tool_args": args}


SCRIPT = [
    step("find the capital", "lookup", {"key": "capital of France"}),
    step("bad arguments first", "calculator", {"expr": "1"}),
    step("a failing expression", "calculator", {"expression": "1 / 0"}),
    step("population next", "lookup", {"key": "population of Paris"}),
    step("double it", "calculator", {"expression": "2100000 * 2"}),
    step("done", "finish", {}),
]


def react_lm():
    def answer(messages, settings):
        system, user = messages[0]["content"], messages[-1]["content"]
        if "You are an agent" in system:
            steps_done = user.count("observation:")
            return SCRIPT[steps_done]
        assert "Step 5 observation: 4200000" in user
        return {"reasoning": "from the trajectory", "answer": "4200000"}

    return em.FunctionLM(answer)


def test_react_solves_multi_step_task_and_survives_tool_errors():
    em.configure(lm=react_lm())
    agent = em.ReAct("question -> answer", tools=[calculator, lookup], max_iters=8)
    pred = agent(question="What is twice the population of the capital of France?")
    assert pred.answer == "4200000"
    trajectory = pred.trajectory  # DSPy's dict: thought_i, tool_name_i, tool_args_i, observation_i
    assert list(trajectory)[:4] == ["thought_0", "tool_name_0", "tool_args_0", "observation_0"]
    assert len(trajectory) == 4 * 6  # five tool steps and the finish step, as in DSPy
    observations = [trajectory[f"observation_{i}"] for i in range(6)]
    assert observations[0] == "Paris"
    assert observations[1].startswith("Error: invalid argument expression")
    assert "ZeroDivisionError" in observations[2]
    assert observations[3:] == ["2100000", "4200000", "Completed."]
    assert trajectory["thought_0"] == "find the capital" and trajectory["tool_name_0"] == "lookup"
    assert trajectory["tool_args_0"] == {"key": "capital of France"}
    assert trajectory["tool_name_5"] == "finish" and trajectory["tool_args_5"] == {}


def test_react_without_tools_can_only_finish_as_in_dspy():
    lm = em.DummyLM([step("nothing to call", "finish", {}), {"reasoning": "r", "answer": "42"}])
    agent = em.ReAct("question -> answer", tools=[])
    em.configure(lm=lm)
    pred = agent(question="q")
    assert pred.answer == "42"
    assert pred.trajectory == {
        "thought_0": "nothing to call",
        "tool_name_0": "finish",
        "tool_args_0": {},
        "observation_0": "Completed.",
    }


def test_react_untyped_tool_arguments_arrive_as_the_lm_gave_them():
    got = []

    def add(a, b):
        """Add two numbers."""
        got.append((a, b))
        return a + b

    lm = em.DummyLM(
        [step("add", "add", {"a": 1, "b": 2}), step("done", "finish", {}), {"reasoning": "r", "answer": "3"}]
    )
    em.configure(lm=lm)
    pred = em.ReAct("question -> answer", tools=[add])(question="1 + 2?")
    assert got == [(1, 2)]  # JSON numbers stay numbers, as in DSPy 3.4.1
    assert pred.trajectory["observation_0"] == "3"


def test_react_native_tool_calling_over_http():
    def answer(body):
        tool_results = [m for m in body["messages"] if m["role"] == "tool"]
        if not tool_results:
            assert [t["function"]["name"] for t in body["tools"]] == ["calculator", "lookup"]
            return {
                "tool_calls": [
                    {"name": "lookup", "arguments": {"key": "capital of France"}},
                    {"name": "nope", "arguments": {}},
                ]
            }
        assert tool_results[0]["content"] == "Paris" and "no tool named" in tool_results[1]["content"]
        return "[[ ## answer ## ]]\nParis\n\n[[ ## completed ## ]]"

    with FakeLMServer(answer) as server:
        lm = em.LM("openai/fake", base_url=server.base_url, cache=False)
        agent = em.ReAct("question -> answer", tools=[calculator, lookup])
        em.configure(lm=lm)
        pred = agent(question="What is the capital of France?")
        assert pred.answer == "Paris" and len(pred.trajectory) == 2 * 4
        assert pred.trajectory["tool_name_0"] == "lookup" and pred.trajectory["observation_0"] == "Paris"
        assert pred.trajectory["tool_name_1"] == "nope" and "no tool named" in pred.trajectory["observation_1"]
        assert len(server.requests) == 2


def test_tool_schema_validation_and_timeout():
    class Point(pydantic.BaseModel):
        x: int
        y: int

    @em.tool(timeout=0.1, examples=[{"p": {"x": 1, "y": 2}}])
    def norm(p: Point, scale: float = 1.0) -> float:
        """Scaled taxicab norm."""
        return (abs(p.x) + abs(p.y)) * scale

    assert norm.name == "norm" and norm.description == "Scaled taxicab norm."
    assert norm.parameters["required"] == ["p"]
    assert norm.parameters["properties"]["scale"]["type"] == "number"
    assert norm(p={"x": 1, "y": -2}) == 3.0
    assert asyncio.run(norm.acall(p={"x": 1, "y": 1}, scale=2)) == 4.0
    text, ok = asyncio.run(norm.observe({"p": {"x": "a", "y": 1}}))
    assert not ok and "invalid argument p.x" in text
    text, ok = asyncio.run(norm.observe("{not json"))
    assert not ok and "not valid JSON" in text

    @em.tool(timeout=0.05)
    def slow() -> str:
        """Sleeps."""
        time.sleep(0.3)
        return "late"

    text, ok = asyncio.run(slow.observe({}))
    assert not ok and "did not finish within 0.05s" in text
    assert "norm(p: Point, scale: number)" in norm.describe()


def test_tool_from_mcp_wraps_a_session():
    class Block:
        def __init__(self, text):
            self.text = text

    class Result:
        def __init__(self, text, error=False):
            self.content, self.isError = [Block(text)], error

    class Session:
        def __init__(self):
            self.calls = []

        async def call_tool(self, name, arguments):
            self.calls.append((name, arguments))
            return Result("boom", error=True) if arguments.get("fail") else Result(f"hello {arguments['who']}")

    class McpTool:
        name = "greet"
        description = "Greets someone."
        inputSchema = {"type": "object", "properties": {"who": {"type": "string"}}, "required": ["who"]}  # noqa: RUF012

    session = Session()
    greet = em.Tool.from_mcp(session, McpTool())
    assert greet.parameters["required"] == ["who"]
    assert asyncio.run(greet.observe({"who": "Ann"})) == ("hello Ann", True)
    assert asyncio.run(greet.observe({"who": "x", "fail": True}))[0] == "Error: boom"
    assert "missing required" in asyncio.run(greet.observe({}))[0]
    assert session.calls == [("greet", {"who": "Ann"}), ("greet", {"who": "x", "fail": True})]


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


def test_streamify_yields_field_chunks_before_the_prediction():
    for adapter in (em.ChatAdapter(), em.JSONAdapter()):
        lm = em.DummyLM([{"reasoning": "think it through", "answer": "Paris is the answer"}], stream_chunk=3)
        stream = em.streamify(em.ChainOfThought("question -> answer", lm=lm, adapter=adapter))

        async def main(stream=stream):
            return [event async for event in stream(question="Where?")]

        events = asyncio.run(main())
        assert isinstance(events[-1], em.Prediction) and events[-1].answer == "Paris is the answer"
        chunks = [e for e in events if isinstance(e, em.FieldChunk)]
        assert len(chunks) > 3
        assert "".join(c.text for c in chunks if c.field == "answer").strip() == "Paris is the answer"
        assert "".join(c.text for c in chunks if c.field == "reasoning").strip() == "think it through"
        statuses = [e.kind for e in events if isinstance(e, em.StatusEvent)]
        assert statuses == ["module_start", "module_end"]


def test_streamify_reports_tool_calls():
    em.configure(lm=react_lm())
    stream = em.streamify(em.ReAct("question -> answer", tools=[calculator, lookup], max_iters=8))

    async def main():
        return [event async for event in stream(question="q")]

    events = asyncio.run(main())
    tools = [e.data["tool"] for e in events if isinstance(e, em.StatusEvent) and e.kind == "tool_call"]
    assert tools == ["lookup", "calculator", "calculator", "lookup", "calculator"]
    assert events[-1].answer == "4200000"


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


def test_parallel_and_batch_keep_order():
    def slow(messages, settings):
        n = int(messages[-1]["content"].split("item ")[1].split()[0])
        time.sleep(0.02 * (5 - n))
        return {"answer": str(n)}

    em.configure(lm=em.FunctionLM(slow))
    predict = em.Predict("question -> answer")
    results = predict.batch([em.Example(question=f"item {i}").with_inputs("question") for i in range(5)], concurrency=5)
    assert [r.answer for r in results] == ["0", "1", "2", "3", "4"]
    parallel = em.Parallel(num_threads=3)
    out = parallel([(predict, {"question": f"item {i}"}) for i in range(4)])
    assert [r.answer for r in out] == ["0", "1", "2", "3"]


def test_every_run_records_a_trace_and_inspect_trace_prints_it(capsys):
    lm = em.DummyLM([{"reasoning": "r", "answer": "x"}])
    pred = em.ChainOfThought("question -> answer", lm=lm)(question="q")
    assert len(pred.trace) == 1 and pred.trace[0].completion.startswith("[[ ## reasoning")
    text = em.inspect_trace(pred)
    assert "ChainOfThought(question: str -> reasoning: str, answer: str)" in text
    assert "inputs:  {'question': 'q'}" in text and "'answer': 'x'" in capsys.readouterr().out
    with pytest.raises(TypeError):
        em.inspect_trace("nope")


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


def test_json_stream_parser_handles_nested_values():
    from elixirml.adapters._stream import JSONStreamParser

    parser = JSONStreamParser(["items", "note"])
    text = json.dumps({"items": ["a", "b"], "note": 'he said "hi"\nok'})
    pieces = []
    for i in range(0, len(text), 2):
        pieces.extend(parser.feed(text[i : i + 2]))
    by_field = {}
    for field, piece in pieces:
        by_field[field] = by_field.get(field, "") + piece
    assert json.loads(by_field["items"]) == ["a", "b"]
    assert by_field["note"] == 'he said "hi"\nok'


def test_module_inputs_may_use_any_keyword_name():
    class Echo(em.Module):
        def forward(self, call, args=None):  # names the call machinery uses internally
            return em.Prediction(call=call, args=args)

    assert Echo()(call="c", args="a").call == "c"
    assert asyncio.run(Echo().acall(call="c")).call == "c"


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


@pytest.mark.parametrize("failure", ["budget", "setup"])
def test_a_spent_budget_or_a_setup_error_inside_a_tool_stops_react(failure):
    from elixirml.errors import BudgetExceededError, ConfigurationError
    from elixirml.lm import spending_limit

    inner = em.Predict("question -> answer")

    def ask(question: str) -> str:
        """Ask a helper model (with a budget of its own)."""
        with spending_limit(0 if failure == "budget" else None):
            return inner(question=question).answer

    lm = em.DummyLM(
        [step("ask", "ask", {"question": "x"}), step("done", "finish", {}), {"reasoning": "r", "answer": "a"}]
    )
    em.configure(lm=lm if failure == "budget" else None)
    agent = em.ReAct("question -> answer", tools=[ask], max_iters=4)
    agent.set_lm(lm)
    inner.lm = None
    with pytest.raises(BudgetExceededError if failure == "budget" else ConfigurationError):
        agent(question="q")
    assert len(lm.requests) == 1  # the agent's first step; nothing after the tool failed


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
