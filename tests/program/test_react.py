"""ReAct and its tools: typed tools, schemas and timeouts, MCP tools, native tool calls, budgets inside a tool."""

import ast
import asyncio
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
    assert observations[1].startswith("Execution error in calculator: invalid argument expression")
    assert observations[2].startswith("Execution error in calculator: \nTraceback (most recent call last):")
    assert observations[2].endswith("ZeroDivisionError: division by zero")  # the tool's own traceback, as in DSPy
    assert observations[3:] == ["2100000", 4200000, "Completed."]  # the tool's return value, as in DSPy
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
    assert pred.trajectory["observation_0"] == 3  # the return value, as in DSPy 3.4.1 (shown to the model as 3)


def test_react_drops_the_oldest_steps_when_the_prompt_does_not_fit():
    prompts = []

    def answer(messages, settings):
        user = messages[-1]["content"]
        if "You are an agent" not in messages[0]["content"]:
            return {"reasoning": "r", "answer": "done"}
        prompts.append(user)
        if len(prompts) == 3:  # the third step is too long once: the agent drops step 1 and asks again
            raise em.errors.ContextWindowExceededError(model="fake")
        if len(prompts) == 5:
            return step("done", "finish", {})
        return step(f"echo {len(prompts)}", "echo", {"text": str(len(prompts))})

    def echo(text: str) -> str:
        return f"echoed {text}"

    em.configure(lm=em.FunctionLM(answer), cache=False)
    pred = em.ReAct("question -> answer", tools=[echo])(question="q")
    assert pred.answer == "done"
    assert "Step 1 thought" in prompts[2] and "Step 1 thought" not in prompts[3]
    assert "Step 2 observation: echoed 2" in prompts[3]  # steps keep their numbers
    assert list(pred.trajectory) == [
        f"{k}_{i}" for i in (1, 2, 3) for k in ("thought", "tool_name", "tool_args", "observation")
    ]
    assert pred.trajectory["tool_name_3"] == "finish"

    agent = em.ReAct("question -> answer", tools=[echo])
    with pytest.raises(em.errors.ContextWindowExceededError, match="cannot be truncated"):
        agent.truncate_trajectory({"thought_0": "t", "tool_name_0": "echo", "tool_args_0": {}, "observation_0": "o"})


def test_react_ends_the_loop_when_a_step_cannot_be_used_or_max_iters_is_reached():
    calls = []

    def answer(messages, settings):
        calls.append(messages)
        if "You are an agent" not in messages[0]["content"]:
            return {"reasoning": "r", "answer": "from what it has"}
        return {"next_thought": "t", "next_tool_name": "no_such_tool", "next_tool_args": {}}

    em.configure(lm=em.FunctionLM(answer), cache=False)
    pred = em.ReAct("question -> answer", tools=[calculator])(question="q")
    assert pred.answer == "from what it has" and pred.trajectory == {}

    lm = em.DummyLM([step("again", "calculator", {"expression": "1+1"})] * 2 + [{"reasoning": "r", "answer": "2"}])
    em.configure(lm=lm)
    agent = em.ReAct("question -> answer", tools=[calculator], max_iters=5)
    pred = asyncio.run(agent.acall(question="q", max_iters=2))  # DSPy's per-call max_iters
    assert pred.answer == "2" and len(pred.trajectory) == 8 and pred.trajectory["observation_1"] == 2


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


def test_streamify_reports_tool_calls():
    em.configure(lm=react_lm())
    stream = em.streamify(em.ReAct("question -> answer", tools=[calculator, lookup], max_iters=8))

    async def main():
        return [event async for event in stream(question="q")]

    events = asyncio.run(main())
    tools = [e.data["tool"] for e in events if isinstance(e, em.StatusEvent) and e.kind == "tool_call"]
    assert tools == ["lookup", "calculator", "calculator", "lookup", "calculator"]
    assert events[-1].answer == "4200000"


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
