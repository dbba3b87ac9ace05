"""``dspy.adapters``: DSPy's adapter classes and keywords over ElixirML's adapters.

``ChatAdapter``, ``JSONAdapter`` and ``XMLAdapter`` here are ElixirML's, accepting DSPy's
constructor keywords (``callbacks``, ``use_native_function_calling``,
``parallel_tool_calls``). Native function calling for tool fields in signatures is not built
yet: a signature with ``list[dspy.Tool]`` inputs or a ``dspy.ToolCalls`` output on an adapter
asked to call natively raises ``ConfigurationError`` naming ``em.ReAct(..., native=True)``;
every other signature is sent exactly as without the flag (DSPy's flag changes nothing else).
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from typing import Any

from ... import adapters as _em
from ...errors import ConfigurationError
from ...program import Tool
from ...schema import Code, Example, History, Image, Signature, ToolCalls

__all__ = [
    "Adapter",
    "ChatAdapter",
    "Code",
    "History",
    "Image",
    "JSONAdapter",
    "Tool",
    "ToolCalls",
    "TwoStepAdapter",
    "XMLAdapter",
    "adapter_from_name",
    "adapter_name",
]

Adapter = _em.Adapter
TwoStepAdapter = _em.TwoStepAdapter


def _has_tool_fields(signature: type[Signature]) -> bool:
    for spec in signature.input_fields.values():
        args = typing.get_args(spec.annotation)
        if spec.annotation is Tool or (args and args[0] is Tool):
            return True
    return any(spec.annotation is ToolCalls for spec in signature.output_fields.values())


class _DSPyKeywords:
    """DSPy's adapter constructor keywords, shared by the three adapters here."""

    use_native_function_calling: bool
    parallel_tool_calls: bool | None
    callbacks: list[Any]

    def _take(
        self, callbacks: list[Any] | None, use_native_function_calling: bool, parallel_tool_calls: bool | None
    ) -> None:
        self.callbacks = list(callbacks or [])
        self.use_native_function_calling = use_native_function_calling
        self.parallel_tool_calls = parallel_tool_calls

    def _check_native(self, signature: type[Signature]) -> None:
        if self.use_native_function_calling and _has_tool_fields(signature):
            raise ConfigurationError(
                f"{type(self).__name__}(use_native_function_calling=True) with tool fields in the signature "
                f"({signature.__name__}) is not supported yet; use em.ReAct(signature, tools, native=True) for "
                "the LM's native tool calls, or use_native_function_calling=False to have the tool calls written "
                "as a field."
            )


class ChatAdapter(_DSPyKeywords, _em.ChatAdapter):
    """ElixirML's :class:`~elixirml.ChatAdapter` with DSPy's constructor keywords."""

    def __init__(
        self,
        callbacks: list[Any] | None = None,
        use_native_function_calling: bool = False,
        native_response_types: list[type] | None = None,
        use_json_adapter_fallback: bool = False,
        parallel_tool_calls: bool | None = None,
    ) -> None:
        del native_response_types
        _em.ChatAdapter.__init__(self, use_json_adapter_fallback=use_json_adapter_fallback)
        self._take(callbacks, use_native_function_calling, parallel_tool_calls)

    def format(self, signature: type[Signature], demos: Sequence[Example], inputs: dict[str, Any]) -> Any:
        """Messages for ``signature`` (see :meth:`elixirml.Adapter.format`)."""
        self._check_native(signature)
        return super().format(signature, demos, inputs)


class JSONAdapter(_DSPyKeywords, _em.JSONAdapter):
    """ElixirML's :class:`~elixirml.JSONAdapter` with DSPy's constructor keywords."""

    def __init__(
        self,
        callbacks: list[Any] | None = None,
        use_native_function_calling: bool = True,
        parallel_tool_calls: bool | None = None,
    ) -> None:
        _em.JSONAdapter.__init__(self)
        self._take(callbacks, use_native_function_calling, parallel_tool_calls)

    def format(self, signature: type[Signature], demos: Sequence[Example], inputs: dict[str, Any]) -> Any:
        """Messages for ``signature`` (see :meth:`elixirml.Adapter.format`)."""
        self._check_native(signature)
        return super().format(signature, demos, inputs)


class XMLAdapter(_DSPyKeywords, _em.XMLAdapter):
    """ElixirML's :class:`~elixirml.XMLAdapter` with DSPy's constructor keywords."""

    def __init__(
        self,
        callbacks: list[Any] | None = None,
        use_native_function_calling: bool = False,
        parallel_tool_calls: bool | None = None,
    ) -> None:
        _em.XMLAdapter.__init__(self)
        self._take(callbacks, use_native_function_calling, parallel_tool_calls)

    def format(self, signature: type[Signature], demos: Sequence[Example], inputs: dict[str, Any]) -> Any:
        """Messages for ``signature`` (see :meth:`elixirml.Adapter.format`)."""
        self._check_native(signature)
        return super().format(signature, demos, inputs)


_NAMES: dict[type, str] = {ChatAdapter: "chat", JSONAdapter: "json", XMLAdapter: "xml"}


def adapter_name(adapter: Any) -> str:
    """The name ``settings.save`` writes for an adapter (``"chat"``, ``"json"``, ``"xml"``, ``"plain"``).

    Raises:
        ConfigurationError: an adapter with no name (a custom class or a ``TwoStepAdapter``).
    """
    for cls, name in _NAMES.items():
        if type(adapter) is cls:
            return name
    for name in _em.ADAPTER_NAMES:
        if type(adapter) is type(_em.adapter_for(None, name)):
            return name
    raise ConfigurationError(f"{adapter!r} has no name to save; set it again in code after load_settings")


def adapter_from_name(name: str) -> Any:
    """The adapter :func:`adapter_name` names."""
    for cls, known in _NAMES.items():
        if known == name:
            return cls()
    return type(_em.adapter_for(None, name))()
