"""ReAct: reason, call tools, observe, repeat; then produce the signature's outputs."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Generator, Sequence
from typing import Any, Literal

from .. import settings as _settings
from .._log import logger
from ..adapters import adapter_for
from ..errors import ConfigurationError, ContextWindowExceededError, OutputError
from ..runtime import run_sync
from ..schema import InputField, OutputField, Prediction, ensure_signature, make_signature
from . import _events
from ._module import Module
from ._predict import ChainOfThought, Predict
from ._tools import Tool, ToolError, tool_error_observation

TRAJECTORY_DESC = "the thoughts, tool calls and observations so far"

#: The observation of the ``finish`` step, as DSPy records it.
FINISHED = "Completed."

#: How often a step is asked again, each time without the oldest tool call, when the prompt is
#: longer than the model's context window (DSPy's number).
TRUNCATION_ATTEMPTS = 3


def observation_text(value: Any) -> str:
    """A tool's result as the model is shown it: text as it is, anything else as JSON (else ``str``)."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)


def format_trajectory(trajectory: dict[str, Any]) -> str:
    """The trajectory (DSPy's ``{"thought_0": ..., "tool_name_0": ...}`` dict) as text for the prompt.

    Steps are numbered by their index, so a trajectory whose oldest steps were dropped (see
    :meth:`ReAct.truncate_trajectory`) keeps its numbers.
    """
    indices = [int(key[len("thought_") :]) for key in trajectory if key.startswith("thought_")]
    if not indices:
        return "(no steps yet)"
    lines = []
    for i in indices:
        args = json.dumps(trajectory.get(f"tool_args_{i}", {}), default=str)
        lines.append(f"Step {i + 1} thought: {trajectory[f'thought_{i}']}")
        lines.append(f"Step {i + 1} tool: {trajectory.get(f'tool_name_{i}')}({args})")
        lines.append(f"Step {i + 1} observation: {observation_text(trajectory.get(f'observation_{i}', ''))}")
    return "\n".join(lines)


def _add_step(trajectory: dict[str, Any], index: int, thought: Any, tool: str, args: Any, observation: Any) -> None:
    trajectory[f"thought_{index}"] = thought
    trajectory[f"tool_name_{index}"] = tool
    trajectory[f"tool_args_{index}"] = args
    trajectory[f"observation_{index}"] = observation


class _Call:
    """One call the agent's loop asks its driver to make: a module (or any callable) or a tool."""

    __slots__ = ("kwargs", "target")

    def __init__(self, target: Any, kwargs: dict[str, Any]) -> None:
        self.target = target
        self.kwargs = kwargs

    def run(self) -> Any:
        return self.target(**self.kwargs)

    async def arun(self) -> Any:
        call: Callable[..., Awaitable[Any]] = self.target.acall
        return await call(**self.kwargs)


_Loop = Generator[_Call, Any, Any]


def _resume(loop: _Loop, result: Any, error: Exception | None) -> tuple[_Call | None, Any]:
    """Hand the loop a call's result (or its error); return the next call, or None and the loop's result."""
    try:
        return (loop.throw(error) if error is not None else loop.send(result)), None
    except StopIteration as stop:
        return None, stop.value


def _drive(loop: _Loop) -> Any:
    """Run the agent's loop synchronously: each module is called (``module(...)``), each tool run."""
    request, value = _resume(loop, None, None)
    while request is not None:
        try:
            result, error = request.run(), None
        except Exception as exc:  # handed to the loop, which re-raises what it does not handle
            result, error = None, exc
        request, value = _resume(loop, result, error)
    return value


async def _adrive(loop: _Loop) -> Any:
    """Run the agent's loop asynchronously: each module is awaited (``module.acall(...)``)."""
    request, value = _resume(loop, None, None)
    while request is not None:
        try:
            result, error = await request.arun(), None
        except Exception as exc:  # handed to the loop, which re-raises what it does not handle
            result, error = None, exc
        request, value = _resume(loop, result, error)
    return value


class ReAct(Module):
    """An agent loop over tools, finishing with the signature's output fields.

    With an LM that supports native tool calling (``lm.supports_tools``) the tools are sent as
    the provider's ``tools`` and called from its ``tool_calls``; otherwise each step is a
    predictor (thought, tool name, tool arguments) through the adapter's text protocol. Bad
    arguments, tool exceptions and timeouts become observations
    (``"Execution error in <tool>: ..."``, with the tool's traceback); the loop goes on. A step
    whose answer cannot be used ends the loop, and the outputs are produced from what it has.

    The prediction's ``trajectory`` is DSPy's dict: ``thought_0``, ``tool_name_0``,
    ``tool_args_0``, ``observation_0``, then ``..._1`` and so on; the ``finish`` step is recorded
    with the observation ``"Completed."``. An observation is the tool's return value, as in
    DSPy (the model is shown it as text or JSON).

    When a step's prompt does not fit the model's context window
    (:class:`~elixirml.errors.ContextWindowExceededError`), the oldest tool call is dropped
    (:meth:`truncate_trajectory`, which a subclass may override) and the step asked again, up to
    three times; if the loop itself cannot go on, the outputs are produced from the trajectory
    so far.

    Args:
        signature: the task's signature.
        tools: :class:`~elixirml.Tool` objects or plain functions (none: the agent can only finish,
            as in DSPy).
        max_iters: the most tool steps before the outputs are produced anyway (a call can pass
            ``max_iters=`` as well, as in DSPy).
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

    # ------------------------------------------------------------------ running
    def forward(self, **inputs: Any) -> Prediction:
        max_iters = inputs.pop("max_iters", self.max_iters)
        if self._native_lm() is not None:
            return run_sync(self._native(self._native_lm(), inputs, max_iters))
        result: Prediction = _drive(self._loop(inputs, max_iters))
        return result

    async def aforward(self, **inputs: Any) -> Prediction:
        max_iters = inputs.pop("max_iters", self.max_iters)
        lm = self._native_lm()
        if lm is not None:
            return await self._native(lm, inputs, max_iters)
        result: Prediction = await _adrive(self._loop(inputs, max_iters))
        return result

    def _native_lm(self) -> Any:
        """The LM to call tools natively with, or None for the text protocol."""
        lm = getattr(self.react, "lm", None) or _settings.current().lm
        use_native = self.native if self.native is not None else bool(getattr(lm, "supports_tools", False))
        return lm if use_native and self.tools else None  # with no tool there is nothing to call natively

    def _loop(self, inputs: dict[str, Any], max_iters: int) -> _Loop:
        """The agent's steps; each module call and tool run is yielded to the driver (sync or async)."""
        trajectory: dict[str, Any] = {}
        for index in range(max_iters):
            try:
                step = yield from self._truncating(self.react, trajectory, inputs)
            except ContextWindowExceededError as exc:
                logger().warning("ReAct: ending the trajectory: %s", exc)
                break
            except OutputError as exc:
                logger().warning("ReAct: ending the trajectory: the agent's step could not be used: %s", exc)
                break
            name, args = step.next_tool_name, step.next_tool_args
            if name == "finish":
                _add_step(trajectory, index, step.next_thought, "finish", args, FINISHED)
                break
            tool = self.tools[name]
            _events.emit("tool_call", tool=tool.name, arguments=args)
            try:
                values = args if isinstance(args, dict) else tool.validate(args)
                observation = yield _Call(tool, values)
            except ToolError as exc:
                observation = tool_error_observation(tool.name, exc)
            _add_step(trajectory, index, step.next_thought, tool.name, args, observation)
        final = yield from self._truncating(self.extract, trajectory, inputs)
        return Prediction({**final.to_dict(), "trajectory": trajectory})

    def _truncating(self, module: Any, trajectory: dict[str, Any], inputs: dict[str, Any]) -> _Loop:
        """Call ``module`` with the trajectory; on a context-window error drop the oldest step and ask again."""
        last: ContextWindowExceededError | None = None
        for _ in range(TRUNCATION_ATTEMPTS):
            try:
                return (yield _Call(module, {**inputs, "trajectory": format_trajectory(trajectory)}))
            except ContextWindowExceededError as exc:
                logger().warning("ReAct: the trajectory exceeded the context window; dropping its oldest tool call")
                last = exc
                trajectory = self.truncate_trajectory(trajectory)
        raise ContextWindowExceededError(
            message=f"The context window was exceeded even after {TRUNCATION_ATTEMPTS} attempts to truncate the "
            "trajectory; shorten the inputs or lower max_iters."
        ) from last

    def _call_with_potential_trajectory_truncation(self, module: Any, trajectory: dict[str, Any], **inputs: Any) -> Any:
        """Call ``module(**inputs, trajectory=...)``, dropping the oldest steps while it does not fit (DSPy's name)."""
        return _drive(self._truncating(module, trajectory, inputs))

    async def _async_call_with_potential_trajectory_truncation(
        self, module: Any, trajectory: dict[str, Any], **inputs: Any
    ) -> Any:
        """Async :meth:`_call_with_potential_trajectory_truncation` (``await module.acall(...)``)."""
        return await _adrive(self._truncating(module, trajectory, inputs))

    def truncate_trajectory(self, trajectory: dict[str, Any]) -> dict[str, Any]:
        """Drop the oldest tool call (its four keys) so that the prompt fits; override for another policy.

        Raises:
            ContextWindowExceededError: the trajectory holds one tool call or none, so nothing
                can be dropped.
        """
        keys = list(trajectory)
        if len(keys) <= 4:  # every tool call has 4 keys: thought, tool_name, tool_args and observation
            raise ContextWindowExceededError(
                message="The trajectory is too long for the model's context window but holds only one tool call, "
                "so it cannot be truncated; shorten the inputs or use a model with a larger context window."
            )
        for key in keys[:4]:
            trajectory.pop(key)
        return trajectory

    async def _native(self, lm: Any, inputs: dict[str, Any], max_iters: int) -> Prediction:
        adapter = adapter_for(lm, getattr(self.react, "adapter", None) or _settings.current().adapter)
        values = self.signature.validate_inputs(inputs)
        messages = adapter.format(self.signature, [], values)
        messages[0]["content"] += (
            "\n\nYou can call the provided tools. When you have what you need, stop calling tools and "
            "answer in the structure above."
        )
        schemas = [t.openai_schema() for t in self.tools.values()]
        trajectory: dict[str, Any] = {}
        index = 0
        for _ in range(max_iters):
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
                observation: Any
                if tool is None:
                    observation = f"Error: no tool named {call['name']!r}; tools: {list(self.tools)}"
                else:
                    try:
                        args = call["arguments"]
                        observation = await tool.acall(**(args if isinstance(args, dict) else tool.validate(args)))
                    except ToolError as exc:
                        observation = tool_error_observation(tool.name, exc)
                messages.append({"role": "tool", "tool_call_id": call["id"], "content": observation_text(observation)})
                _add_step(trajectory, index, completion.text, call["name"], call["arguments"], observation)
                index += 1
        response = await lm.arequest(messages)  # out of steps: answer without tools
        return Prediction({**adapter.parse(self.signature, response.text), "trajectory": trajectory})
