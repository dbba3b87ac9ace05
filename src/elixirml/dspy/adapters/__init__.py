"""``dspy.adapters``: DSPy's adapter classes and keywords over ElixirML's adapters.

``ChatAdapter``, ``JSONAdapter`` and ``XMLAdapter`` here build the messages DSPy 3.4 builds
(:class:`elixirml.adapters.DSPyChatAdapter` and its siblings), with DSPy's constructor keywords
(``callbacks``, ``use_native_function_calling``, ``parallel_tool_calls``) and DSPy's native
response types (``Reasoning``, ``Citations``). ElixirML's own formats stay ``em.ChatAdapter``,
``em.JSONAdapter``, ``em.XMLAdapter`` and ``em.PlainAdapter``.
"""

from __future__ import annotations

from typing import Any

from ... import adapters as _em
from ...errors import ConfigurationError
from ...program import Tool
from ...schema import Code, History, Image, Signature, ToolCalls

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
    "default_chat_adapter",
]

Adapter = _em.Adapter
TwoStepAdapter = _em.TwoStepAdapter


def _native_types() -> list[type]:
    from ..experimental import Citations
    from .types import Reasoning

    return [Citations, Reasoning]


class _DSPyHooks(_em.DSPyChatAdapter):
    """DSPy's constructor defaults and names of the adapters' call steps (tests and subclasses call them)."""

    def __init__(
        self,
        callbacks: list[Any] | None = None,
        use_native_function_calling: bool = False,
        native_response_types: list[type] | None = None,
        use_json_adapter_fallback: bool = True,
        parallel_tool_calls: bool | None = None,
    ) -> None:
        super().__init__(
            callbacks,
            use_native_function_calling=use_native_function_calling,
            native_response_types=native_response_types if native_response_types is not None else _native_types(),
            use_json_adapter_fallback=use_json_adapter_fallback,
            parallel_tool_calls=parallel_tool_calls,
        )

    def _call_preprocess(
        self, lm: Any, lm_kwargs: dict[str, Any], signature: type[Signature], inputs: dict[str, Any]
    ) -> type[Signature]:
        return self.preprocess(lm, lm_kwargs, signature, inputs)

    def _call_postprocess(
        self,
        processed_signature: type[Signature],
        original_signature: type[Signature],
        outputs: list[Any],
        lm: Any,
        lm_kwargs: dict[str, Any],
    ) -> list[dict[str, Any]]:
        return self.postprocess(processed_signature, original_signature, outputs)


class ChatAdapter(_DSPyHooks):
    """DSPy 3.4's ``ChatAdapter`` (:class:`elixirml.adapters.DSPyChatAdapter`), with DSPy's native response types.

    As in DSPy, ``use_json_adapter_fallback`` is on (one JSON call after a parse failure) and a
    failed answer is not re-asked (``output_retries = 0`` unless the setting is given).
    """


class JSONAdapter(_DSPyHooks, _em.DSPyJSONAdapter):
    """DSPy 3.4's ``JSONAdapter`` (:class:`elixirml.adapters.DSPyJSONAdapter`), with DSPy's native response types."""

    def __init__(
        self,
        callbacks: list[Any] | None = None,
        use_native_function_calling: bool = True,
        parallel_tool_calls: bool | None = None,
    ) -> None:
        _em.DSPyJSONAdapter.__init__(
            self,
            callbacks,
            use_native_function_calling=use_native_function_calling,
            native_response_types=_native_types(),
            parallel_tool_calls=parallel_tool_calls,
        )


class XMLAdapter(_DSPyHooks, _em.DSPyXMLAdapter):
    """DSPy 3.4's ``XMLAdapter`` (:class:`elixirml.adapters.DSPyXMLAdapter`), with DSPy's native response types."""


_NAMES: dict[type, str] = {ChatAdapter: "chat", JSONAdapter: "json", XMLAdapter: "xml"}
_DEFAULT: list[ChatAdapter] = []


def default_chat_adapter() -> ChatAdapter:
    """The adapter a DSPy program uses when none is configured (one shared ``ChatAdapter()``: it holds no state)."""
    if not _DEFAULT:
        _DEFAULT.append(ChatAdapter())
    return _DEFAULT[0]


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
