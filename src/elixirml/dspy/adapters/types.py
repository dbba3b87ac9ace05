"""``dspy.adapters.types``: the rich field types, and DSPy's data types ElixirML has no name for.

``Reasoning``, ``Audio``, ``File``, ``ToolCallResults`` and the ``Type`` base are plain Pydantic
types here: a field of one of them is written as JSON and read from JSON like any Pydantic
model (no provider-native audio, file or reasoning handling).
"""

from __future__ import annotations

from typing import Any

import pydantic

from ...program import Tool
from ...schema import Code, History, Image, ToolCall, ToolCalls

__all__ = ["Audio", "Code", "File", "History", "Image", "Reasoning", "Tool", "ToolCallResults", "ToolCalls", "Type"]


class Type(pydantic.BaseModel):
    """DSPy's base of custom field types: a Pydantic model written as JSON in prompts."""

    @classmethod
    def description(cls) -> str:
        """How the type is described to the LM (its docstring)."""
        return (cls.__doc__ or "").strip()


class Reasoning(Type):
    """The model's reasoning, as text."""

    content: str

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


class File(Type):
    """A file: its data (base64), a provider's file id, or both, with its name."""

    file_data: str | None = None
    file_id: str | None = None
    filename: str | None = None

    @classmethod
    def from_file_id(cls, file_id: str, filename: str | None = None) -> File:
        """A file already uploaded to the provider."""
        return cls(file_id=file_id, filename=filename)


class ToolCallResult(pydantic.BaseModel):
    """The value one tool call returned."""

    call_id: str | None = None
    name: str
    value: Any = None


class ToolCallResults(Type):
    """The values returned by tool calls, each with the id of its call."""

    tool_call_results: list[ToolCallResult]

    @classmethod
    def from_tool_calls_and_values(cls, tool_calls: list[Any], values: list[Any]) -> ToolCallResults:
        """Pair each call (a ``ToolCalls.ToolCall``) with the value it returned."""
        return cls(
            tool_call_results=[
                ToolCallResult(call_id=getattr(call, "id", None), name=call.name, value=value)
                for call, value in zip(tool_calls, values, strict=True)
            ]
        )


ToolCallResults.ToolCallResult = ToolCallResult  # type: ignore[attr-defined]
del ToolCall
