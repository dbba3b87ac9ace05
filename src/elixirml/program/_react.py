"""ReAct: reason, call tools, observe, repeat; then produce the signature's outputs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

from .. import settings as _settings
from ..adapters import adapter_for
from ..errors import ConfigurationError
from ..schema import InputField, OutputField, Prediction, ensure_signature, make_signature
from . import _events
from ._module import Module
from ._predict import ChainOfThought, Predict
from ._tools import Tool

TRAJECTORY_DESC = "the thoughts, tool calls and observations so far"


#: The observation of the ``finish`` step, as DSPy records it.
FINISHED = "Completed."


def format_trajectory(trajectory: dict[str, Any]) -> str:
    """The trajectory (DSPy's ``{"thought_0": ..., "tool_name_0": ...}`` dict) as text for the prompt."""
    if not trajectory:
        return "(no steps yet)"
    lines = []
    for i in range(len(trajectory) // 4):
        args = json.dumps(trajectory[f"tool_args_{i}"], default=str)
        lines.append(f"Step {i + 1} thought: {trajectory[f'thought_{i}']}")
        lines.append(f"Step {i + 1} tool: {trajectory[f'tool_name_{i}']}({args})")
        lines.append(f"Step {i + 1} observation: {trajectory[f'observation_{i}']}")
    return "\n".join(lines)


def _add_step(trajectory: dict[str, Any], thought: Any, tool: str, args: Any, observation: str) -> None:
    index = len(trajectory) // 4
    trajectory[f"thought_{index}"] = thought
    trajectory[f"tool_name_{index}"] = tool
    trajectory[f"tool_args_{index}"] = args
    trajectory[f"observation_{index}"] = observation


class ReAct(Module):
    """An agent loop over tools, finishing with the signature's output fields.

    With an LM that supports native tool calling (``lm.supports_tools``) the tools are sent as
    the provider's ``tools`` and called from its ``tool_calls``; otherwise each step is a
    predictor (thought, tool name, tool arguments) through the adapter's text protocol. Bad
    arguments, tool exceptions and timeouts become observations; the loop goes on.

    The prediction's ``trajectory`` is DSPy's dict: ``thought_0``, ``tool_name_0``,
    ``tool_args_0``, ``observation_0``, then ``..._1`` and so on; the ``finish`` step is recorded
    with the observation ``"Completed."``. Observations are the text the model was shown.

    Args:
        signature: the task's signature.
        tools: :class:`~elixirml.Tool` objects or plain functions (none: the agent can only finish,
            as in DSPy).
        max_iters: the most tool steps before the outputs are produced anyway.
        native: force (True) or forbid (False) native tool calling; default: when supported.
        adapter: the prompt format of both its predictors (the step and the final answer), as
            for :class:`Predict`: a name, an adapter, or a variable (``adapter=self.fmt``).
    """

    def __init__(
        self,
        signature: Any,
        tools: Sequence[Any],
        max_iters: int = 5,
        native: bool | None = None,
        *,
        adapter: Any = None,
    ) -> None:
        sig = ensure_signature(signature)
        if max_iters < 1:
            raise ConfigurationError("max_iters must be >= 1")
        built = [t if isinstance(t, Tool) else Tool(t) for t in tools]
        self.signature = sig
        self.tools = {t.name: t for t in built}
        if "finish" in self.tools:
            raise ConfigurationError("'finish' is reserved; rename that tool")
        self.max_iters = max_iters
        self.native = native
        names = (*self.tools, "finish")
        tool_lines = "\n".join(f"- {t.describe()}" for t in built)
        instructions = (
            f"{sig.instructions}\n\nYou are an agent that works in steps. In each step write a thought, then pick "
            f"the next tool and its arguments (a JSON object). Pick `finish` (with arguments {{}}) once the "
            f"trajectory holds what you need to produce the outputs.\nTools:\n{tool_lines}\n"
            "- finish(): signal that the outputs can be produced."
        )
        step_fields: dict[str, Any] = {name: (spec.annotation, spec) for name, spec in sig.input_fields.items()}
        step_fields["trajectory"] = (str, InputField(desc=TRAJECTORY_DESC))
        step_fields["next_thought"] = (str, OutputField())
        step_fields["next_tool_name"] = (Literal.__getitem__(names), OutputField())
        step_fields["next_tool_args"] = (dict[str, Any], OutputField(desc="arguments of the tool, as a JSON object"))
        self.react = Predict(make_signature(step_fields, instructions, name="ReActStep"), adapter=adapter)
        self.extract = ChainOfThought(sig.append("trajectory", InputField(desc=TRAJECTORY_DESC), str), adapter=adapter)

    async def aforward(self, **inputs: Any) -> Prediction:
        lm = self.react.lm or _settings.current().lm
        use_native = self.native if self.native is not None else bool(getattr(lm, "supports_tools", False))
        if use_native and self.tools:  # with no tool there is nothing to call natively
            return await self._native(lm, inputs)
        trajectory: dict[str, Any] = {}
        for _ in range(self.max_iters):
            step = await self.react.acall(**inputs, trajectory=format_trajectory(trajectory))
            if step.next_tool_name == "finish":
                _add_step(trajectory, step.next_thought, "finish", step.next_tool_args, FINISHED)
                break
            tool = self.tools[step.next_tool_name]
            _events.emit("tool_call", tool=tool.name, arguments=step.next_tool_args)
            observation, _ok = await tool.observe(step.next_tool_args)
            _add_step(trajectory, step.next_thought, tool.name, step.next_tool_args, observation)
        final = await self.extract.acall(**inputs, trajectory=format_trajectory(trajectory))
        return Prediction({**final.to_dict(), "trajectory": trajectory})

    async def _native(self, lm: Any, inputs: dict[str, Any]) -> Prediction:
        if lm is None:
            raise ConfigurationError("No LM configured for ReAct; call em.configure(lm=...)")
        adapter = adapter_for(lm, self.react.adapter or _settings.current().adapter)
        values = self.signature.validate_inputs(inputs)
        messages = adapter.format(self.signature, [], values)
        messages[0]["content"] += (
            "\n\nYou can call the provided tools. When you have what you need, stop calling tools and "
            "answer in the structure above."
        )
        schemas = [t.openai_schema() for t in self.tools.values()]
        trajectory: dict[str, Any] = {}
        for _ in range(self.max_iters):
            response = await lm.arequest(messages, tools=schemas)
            completion = response.completions[0]
            if not completion.tool_calls:
                return Prediction({**adapter.parse(self.signature, completion.text), "trajectory": trajectory})
            messages.append(
                {
                    "role": "assistant",
                    "content": completion.text or None,
                    "tool_calls": [
                        {
                            "id": c["id"],
                            "type": "function",
                            "function": {"name": c["name"], "arguments": json.dumps(c["arguments"], default=str)},
                        }
                        for c in completion.tool_calls
                    ],
                }
            )
            for call in completion.tool_calls:
                tool = self.tools.get(call["name"])
                _events.emit("tool_call", tool=call["name"], arguments=call["arguments"])
                if tool is None:
                    observation = f"Error: no tool named {call['name']!r}; tools: {list(self.tools)}"
                else:
                    observation, _ok = await tool.observe(call["arguments"])
                messages.append({"role": "tool", "tool_call_id": call["id"], "content": observation})
                _add_step(trajectory, completion.text, call["name"], call["arguments"], observation)
        response = await lm.arequest(messages)  # out of steps: answer without tools
        return Prediction({**adapter.parse(self.signature, response.text), "trajectory": trajectory})
