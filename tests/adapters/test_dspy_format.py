"""DSPy 3.4's prompt formats (``em.adapters.DSPyChatAdapter`` and siblings), used from ElixirML's own modules."""

from __future__ import annotations

from typing import Any, Literal

import pytest

import elixirml as em
from elixirml.adapters import DSPyChatAdapter, DSPyJSONAdapter, DSPyXMLAdapter
from elixirml.errors import AdapterParseError
from elixirml.lm import Completion, LMResponse, Usage


class QA(em.Signature):
    """Answer the question."""

    question: str = em.InputField()
    answer: str = em.OutputField()


def _capture(answer: Any) -> tuple[em.FunctionLM, list[tuple[list[Any], dict[str, Any]]]]:
    seen: list[tuple[list[Any], dict[str, Any]]] = []

    def fn(messages: list[Any], settings: dict[str, Any]) -> Any:
        seen.append((messages, settings))
        return answer

    return em.FunctionLM(fn), seen


def test_chat_messages_are_dspys_and_no_stop_is_sent() -> None:
    lm, seen = _capture("[[ ## answer ## ]]\nParis\n\n[[ ## completed ## ]]")
    pred = em.Predict(QA, adapter=DSPyChatAdapter())(question="Capital of France?", lm=lm)
    assert pred.answer == "Paris"
    messages, settings = seen[0]
    assert messages[0]["content"] == (
        "Your input fields are:\n1. `question` (str):\nYour output fields are:\n1. `answer` (str):\n"
        "All interactions will be structured in the following way, with the appropriate values filled in.\n\n"
        "[[ ## question ## ]]\n{question}\n\n[[ ## answer ## ]]\n{answer}\n\n[[ ## completed ## ]]\n"
        "In adhering to this structure, your objective is: \n        Answer the question."
    )
    assert messages[1]["content"] == (
        "[[ ## question ## ]]\nCapital of France?\n\nRespond with the corresponding output fields, starting with "
        "the field `[[ ## answer ## ]]`, and then ending with the marker for `[[ ## completed ## ]]`."
    )
    assert "stop" not in settings


def test_incomplete_demo_is_marked_and_typed_outputs_get_notes() -> None:
    class Scored(em.Signature):
        question: str = em.InputField()
        verdict: Literal["yes", "no"] = em.OutputField()
        score: float = em.OutputField()

    messages = DSPyChatAdapter().format(Scored, [em.Example(question="Q1", verdict="yes")], {"question": "Q2"})
    system = messages[0]["content"]
    assert (
        "{verdict}        # note: the value you produce must exactly match (no extra characters) one of: yes; no"
        in (system)
    )
    assert "{score}        # note: the value you produce must be a single float value" in system
    assert messages[1]["content"].startswith("This is an example of the task, though some input or output fields")
    assert "Not supplied for this particular example." in messages[2]["content"]
    assert "(must be formatted as a valid Python float)" in messages[3]["content"]


def test_chat_parse_reads_types_and_fills_optional_defaults() -> None:
    class Out(em.Signature):
        question: str = em.InputField()
        n: int = em.OutputField()
        note: str = em.OutputField(default="none")

    assert DSPyChatAdapter().parse(Out, "[[ ## n ## ]]\n42") == {"n": 42, "note": "none"}
    with pytest.raises(AdapterParseError):
        DSPyChatAdapter().parse(Out, "[[ ## note ## ]]\nhi")


def test_json_adapter_writes_demos_as_indented_json_and_reads_json() -> None:
    adapter = DSPyJSONAdapter()
    messages = adapter.format(QA, [em.Example(question="Q1", answer="A1")], {"question": "Q2"})
    assert "Outputs will be a JSON object with the following fields." in messages[0]["content"]
    assert messages[2]["content"] == '{\n  "answer": "A1"\n}'
    assert messages[3]["content"].endswith("Respond with a JSON object in the following order of fields: `answer`.")
    assert adapter.parse(QA, 'Sure: {"answer": "Paris", "extra": 1}') == {"answer": "Paris"}


def test_json_adapter_asks_for_the_outputs_schema_when_the_lm_takes_one() -> None:
    seen: list[dict[str, Any]] = []

    def fn(messages: list[Any], settings: dict[str, Any]) -> str:
        seen.append(settings)
        return '{"answer": "Paris"}'

    lm = em.FunctionLM(fn, supports_json_schema=True)
    pred = em.Predict(QA, adapter=DSPyJSONAdapter())(question="Capital?", lm=lm)
    assert pred.answer == "Paris"
    response_format = seen[0]["response_format"]
    assert response_format["type"] == "json_schema"
    schema = response_format["json_schema"]["schema"]
    assert schema["required"] == ["answer"] and schema["additionalProperties"] is False


def test_native_tool_calls_go_in_the_request_and_come_back_as_tool_calls() -> None:
    def search(query: str, k: int = 3) -> str:
        """Search for documents."""
        return query

    class Agent(em.Signature):
        question: str = em.InputField()
        tools: list[em.Tool] = em.InputField()
        tool_calls: em.ToolCalls = em.OutputField()

    seen: list[tuple[list[Any], dict[str, Any]]] = []

    def fn(messages: list[Any], settings: dict[str, Any]) -> LMResponse:
        seen.append((messages, settings))
        call = {"id": "call_1", "name": "search", "arguments": {"query": "cats"}}
        return LMResponse([Completion("", [call], None, "tool_calls")], Usage(1, 1, 0.0, 1), "function")

    lm = em.FunctionLM(fn)
    lm.supports_tools = True
    adapter = DSPyChatAdapter(use_native_function_calling=True, parallel_tool_calls=True)
    pred = em.Predict(Agent, adapter=adapter)(question="Find cats", tools=[em.Tool(search)], lm=lm)
    messages, settings = seen[0]
    assert settings["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "search",
                "description": "Search for documents.",
                "parameters": {
                    "type": "object",
                    "properties": {"query": {"type": "string"}, "k": {"type": "integer", "default": 3}},
                    "required": ["query"],
                },
            },
        }
    ]
    assert settings["extra"] == {"parallel_tool_calls": True} and settings["tool_choice"] == "auto"
    assert "[[ ## tools ## ]]" not in messages[-1]["content"]
    (call,) = pred.tool_calls.tool_calls
    assert (call.id, call.name, call.args) == ("call_1", "search", {"query": "cats"})


def test_images_become_content_parts() -> None:
    class Look(em.Signature):
        image: em.Image = em.InputField()
        caption: str = em.OutputField()

    messages = DSPyChatAdapter().format(Look, [], {"image": em.Image("https://example.com/cat.png")})
    content = messages[1]["content"]
    assert content[0] == {"type": "text", "text": "[[ ## image ## ]]\n"}
    assert content[1] == {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    assert content[2]["type"] == "text" and content[2]["text"].startswith("\n\nRespond with")


def test_xml_adapter_round_trip() -> None:
    adapter = DSPyXMLAdapter()
    messages = adapter.format(QA, [], {"question": "Q"})
    assert messages[1]["content"] == (
        "<question>\nQ\n</question>\n\nRespond with the corresponding output fields wrapped in XML tags `<answer>`."
    )
    assert adapter.parse(QA, "<answer>\nParis &amp; London\n</answer>") == {"answer": "Paris & London"}


def test_dspy_call_form_returns_outputs_per_completion() -> None:
    lm, _ = _capture("[[ ## answer ## ]]\nParis")
    assert DSPyChatAdapter()(lm, {}, QA, [], {"question": "Q"}) == [{"answer": "Paris"}]


def test_an_lm_may_name_its_default_adapter() -> None:
    lm, seen = _capture("[[ ## answer ## ]]\nParis")
    lm.default_adapter = DSPyChatAdapter()  # type: ignore[assignment]
    assert em.adapters.adapter_for(lm) is lm.default_adapter
    assert em.Predict(QA)(question="Q", lm=lm).answer == "Paris"
    assert seen[0][0][0]["content"].startswith("Your input fields are:\n1. `question` (str):\nYour output fields")


def test_dspy_programs_use_dspys_chat_format_by_default() -> None:
    import elixirml.dspy as dspy

    lm = dspy.utils.DummyLM([{"answer": "Paris"}])
    with dspy.context(lm=lm):
        assert dspy.Predict("question -> answer")(question="Capital of France?").answer == "Paris"
    assert isinstance(em.adapters.adapter_for(lm), dspy.ChatAdapter)
    (entry,) = [h for h in dspy.clients.base_lm.GLOBAL_HISTORY if h["model"] == lm.model][-1:]
    assert (
        "In adhering to this structure, your objective is: \n        Given the fields"
        in (entry["messages"][0]["content"])
    )


def test_elixirmls_own_chat_adapter_calls_tools_natively_when_asked() -> None:
    def search(query: str) -> str:
        """Search."""
        return query

    class Agent(em.Signature):
        question: str = em.InputField()
        tools: list[em.Tool] = em.InputField()
        tool_calls: em.ToolCalls = em.OutputField()

    answers = [
        LMResponse(
            [Completion("", [{"id": "c1", "name": "search", "arguments": {"query": "x"}}], None, "tool_calls")],
            Usage(1, 1, 0.0, 1),
            "function",
        ),
        "No call needed.",
    ]
    seen: list[tuple[list[Any], dict[str, Any]]] = []

    def fn(messages: list[Any], settings: dict[str, Any]) -> Any:
        seen.append((messages, settings))
        return answers[len(seen) - 1]

    lm = em.FunctionLM(fn)
    lm.supports_tools = True
    predict = em.Predict(Agent, adapter=em.ChatAdapter(use_native_function_calling=True))
    pred = predict(question="Find x", tools=[em.Tool(search)], lm=lm)
    assert [c.name for c in pred.tool_calls.tool_calls] == ["search"]
    messages, settings = seen[0]
    assert [t["function"]["name"] for t in settings["tools"]] == ["search"]
    assert "[[ ## tools ## ]]" not in messages[0]["content"] and "[[ ## tool_calls ## ]]" not in messages[0]["content"]
    assert predict(question="Nothing", tools=[em.Tool(search)], lm=lm).tool_calls.tool_calls == []


def test_field_constraints_are_worded_as_dspy_words_them() -> None:
    class Bounded(em.Signature):
        text: str = em.InputField(min_length=5, max_length=100)
        score: float = em.OutputField(ge=0.0, le=1.0)

    lm, seen = _capture("[[ ## score ## ]]\n0.5\n\n[[ ## completed ## ]]")
    em.Predict(Bounded, adapter=DSPyChatAdapter())(text="hello world", lm=lm)
    system = seen[0][0][0]["content"]
    assert "Constraints: minimum length: 5, maximum length: 100" in system
    assert "Constraints: greater than or equal to: 0.0, less than or equal to: 1.0" in system


def test_a_dspy_lm_that_overrides_call_is_called_and_may_call_super() -> None:
    import elixirml.dspy as dspy

    class Spy(dspy.LM):
        def __init__(self) -> None:
            super().__init__("dummy_model")
            self.calls: list[Any] = []

        def __call__(self, prompt: Any = None, messages: Any = None, **kwargs: Any) -> list[str]:
            self.calls.append(messages)
            return ["[[ ## answer ## ]]\nParis"]

    class Slow(dspy.utils.DummyLM):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            self.wrapped = True
            return super().__call__(*args, **kwargs)

    spy = Spy()
    assert em.Predict(QA, adapter=DSPyChatAdapter())(question="Capital?", lm=spy).answer == "Paris"
    assert "Capital?" in spy.calls[0][-1]["content"]
    slow = Slow([{"answer": "Rome"}])
    assert em.Predict(QA, adapter=DSPyChatAdapter())(question="Capital?", lm=slow).answer == "Rome"
    assert slow.wrapped


@pytest.mark.parametrize("adapter", [DSPyChatAdapter(), DSPyXMLAdapter()], ids=["chat", "xml"])
def test_dspy_formats_do_not_re_ask_and_fall_back_to_json_once(adapter: DSPyChatAdapter) -> None:
    """As DSPy: one JSON fallback after a parse failure, then the error (no output_retries re-asks)."""
    assert adapter.use_json_adapter_fallback and adapter.output_retries == 0
    lm = em.DummyLM(["no fields at all"] * 5)
    with pytest.raises(AdapterParseError):
        em.Predict(QA, lm=lm, adapter=adapter)(question="q")
    assert len(lm.requests) == 2  # the format's answer, then the JSON fallback's
    json_lm = em.DummyLM(["not json"] * 5)
    with pytest.raises(AdapterParseError):
        em.Predict(QA, lm=json_lm, adapter=DSPyJSONAdapter())(question="q")
    assert len(json_lm.requests) == 1


def test_an_explicit_output_retries_wins_over_the_dspy_formats_none() -> None:
    lm = em.DummyLM(["no fields at all"] * 2 + ["[[ ## answer ## ]]\nParis\n\n[[ ## completed ## ]]"])
    adapter = DSPyChatAdapter(use_json_adapter_fallback=False)
    with em.context(output_retries=2):
        assert em.Predict(QA, lm=lm, adapter=adapter)(question="q").answer == "Paris"
    assert len(lm.requests) == 3
    ours = em.DummyLM(["[[ ## answer ## ]]\nmany"] * 5)
    with pytest.raises(em.errors.ValidationError):  # ElixirML's own adapters keep the setting's default (2 re-asks)
        em.Predict("question -> answer: int", lm=ours, adapter=em.ChatAdapter())(question="q")
    assert len(ours.requests) == 3


def test_a_dspy_format_fallback_counts_the_answer_it_replaced():
    """DSPy's chat format falls back to its JSON format; the usage is both answers', as for ElixirML's adapters."""
    lm = em.DummyLM(["no fields at all", '{"answer": "Paris"}'])
    adapter = em.adapters.DSPyChatAdapter(use_json_adapter_fallback=True)
    pred = em.Predict("question -> answer", lm=lm, adapter=adapter)(question="q")
    assert pred.answer == "Paris" and len(lm.requests) == 2
    assert pred.usage["calls"] == 2
    assert pred.usage["total_tokens"] == sum(e["usage"]["total_tokens"] for e in lm.history)
