"""``dspy.adapters.types``: the rich field types, and DSPy's data types ElixirML has no name for.

``Reasoning``, ``Audio``, ``File``, ``ToolCallResults`` and the ``Type`` base are plain Pydantic
types here: a field of one of them is written as JSON and read from JSON like any Pydantic
model (no provider-native audio, file or reasoning handling).
"""

from __future__ import annotations

from typing import Any, ClassVar

import pydantic

from ...program import Tool
from ...schema import Code, History, Image, ToolCall, ToolCalls

__all__ = ["Audio", "Code", "File", "History", "Image", "Reasoning", "Tool", "ToolCallResults", "ToolCalls", "Type"]


class Type(pydantic.BaseModel):
    """DSPy's base of custom field types: a Pydantic model written as JSON in prompts."""

    @classmethod
    def description(cls) -> str:
        """How the type is described to the LM (none by default)."""
        return ""

    def format(self) -> list[dict[str, Any]] | str:
        """The value in a prompt: a string, or content parts (``[{"type": "image_url", ...}]``)."""
        raise NotImplementedError


class Reasoning(Type):
    """The model's reasoning, as text (filled natively by an LM that reasons, when the adapter is DSPy's)."""

    content: str

    #: Shown as ``str`` in prompts, and written as text (DSPy's ``ChainOfThought`` reasoning).
    adapter_type_name: ClassVar[str] = "str"
    adapter_text_type: ClassVar[bool] = True

    @pydantic.model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        return {"content": value} if isinstance(value, str) else value

    def format(self) -> str:
        """The reasoning's text."""
        return self.content

    @classmethod
    def adapt_to_native_lm_feature(cls, signature: Any, field_name: str, lm: Any, lm_kwargs: dict[str, Any]) -> Any:
        """With an LM that reasons natively, ask for its reasoning (``reasoning_effort``) instead of a field."""
        if "reasoning_effort" in lm_kwargs:
            effort = lm_kwargs["reasoning_effort"]
        else:
            effort = (getattr(lm, "kwargs", None) or {}).get("reasoning_effort", "low")
        if effort is None or not getattr(lm, "supports_reasoning", False):
            return signature
        if "gpt-5" in str(getattr(lm, "model", "")) and getattr(lm, "model_type", "chat") == "chat":
            return signature  # LiteLLM's chat API returns no reasoning for these models
        lm_kwargs["reasoning_effort"] = effort
        return signature.delete(field_name)

    @classmethod
    def parse_lm_response(cls, response: Any) -> Reasoning | None:
        """The reasoning an LM returned natively (``reasoning_content``), if any."""
        if isinstance(response, dict) and "reasoning_content" in response:
            return cls(content=response["reasoning_content"])
        return None

    def __str__(self) -> str:
        return self.content

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            return self.content == other
        return super().__eq__(other)

    __hash__ = None  # type: ignore[assignment]


class Audio(Type):
    """Audio content, base64-encoded."""

    data: str
    audio_format: str

    def format(self) -> list[dict[str, Any]]:
        """The audio as an ``input_audio`` content part."""
        return [{"type": "input_audio", "input_audio": {"data": self.data, "format": self.audio_format}}]


class File(Type):
    """A file: its data (base64), a provider's file id, or both, with its name."""

    file_data: str | None = None
    file_id: str | None = None
    filename: str | None = None

    def format(self) -> list[dict[str, Any]]:
        """The file as a ``file`` content part (the fields that are set)."""
        entry = {"file_data": self.file_data, "file_id": self.file_id, "filename": self.filename}
        return [{"type": "file", "file": {k: v for k, v in entry.items() if v is not None}}]

    @classmethod
    def from_file_id(cls, file_id: str, filename: str | None = None) -> File:
        """A file already uploaded to the provider."""
        return cls(file_id=file_id, filename=filename)


class ToolCallResult(pydantic.BaseModel):
    """The value one tool call returned (``is_error``: the call failed and ``value`` says how)."""

    call_id: str | None = None
    name: str
    value: Any = None
    is_error: bool = False


class ToolCallResults(Type):
    """The values returned by tool calls, each with the id of its call."""

    tool_call_results: list[ToolCallResult]

    @pydantic.model_validator(mode="before")
    @classmethod
    def _from_entries(cls, data: Any) -> Any:
        if isinstance(data, list):
            return {"tool_call_results": data}
        if isinstance(data, dict) and "tool_call_results" not in data and {"name", "value"} <= set(data):
            return {"tool_call_results": [data]}
        return data

    @classmethod
    def from_tool_calls_and_values(
        cls, tool_calls: Any, values: list[Any], is_errors: list[bool] | None = None
    ) -> ToolCallResults:
        """Pair each call (a ``ToolCalls.ToolCall``, or the calls of a ``ToolCalls``) with the value it returned.

        Raises:
            ValueError: ``values`` (or ``is_errors``) is not as long as the calls.
        """
        calls = list(getattr(tool_calls, "tool_calls", tool_calls))
        if len(calls) != len(values):
            raise ValueError("`tool_calls` and `values` must have the same length.")
        errors = list(is_errors) if is_errors is not None else [False] * len(calls)
        if len(errors) != len(calls):
            raise ValueError("`is_errors` must have the same length as `tool_calls` when provided.")
        return cls(
            tool_call_results=[
                ToolCallResult(call_id=getattr(call, "id", None), name=call.name, value=value, is_error=error)
                for call, value, error in zip(calls, values, errors, strict=True)
            ]
        )


ToolCallResults.ToolCallResult = ToolCallResult  # type: ignore[attr-defined]
del ToolCall
