"""Adapters: signature + inputs -> messages; completion -> validated outputs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from ._base import Adapter, parse_json_like, strip_fences
from ._chat import ChatAdapter
from ._json import JSONAdapter
from ._plain import PlainAdapter
from ._two_step import TwoStepAdapter
from ._xml import XMLAdapter

if TYPE_CHECKING:
    from ._dspy_format import DSPyChatAdapter, DSPyJSONAdapter, DSPyXMLAdapter

__all__ = [
    "ADAPTER_NAMES",
    "Adapter",
    "ChatAdapter",
    "DSPyChatAdapter",
    "DSPyJSONAdapter",
    "DSPyXMLAdapter",
    "JSONAdapter",
    "PlainAdapter",
    "TwoStepAdapter",
    "XMLAdapter",
    "adapter_for",
    "parse_json_like",
    "strip_fences",
]


_LAZY = {"DSPyChatAdapter", "DSPyJSONAdapter", "DSPyXMLAdapter"}


def __getattr__(name: str) -> Any:
    """DSPy's formats load on first use (they build Pydantic models and need the rich types)."""
    if name in _LAZY:
        from . import _dspy_format

        return getattr(_dspy_format, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def adapter_for(lm: Any, configured: Any = None) -> Adapter:
    """The adapter to use: the configured one (an instance, a class or a name), else the LM's preferred one.

    An LM prefers by its ``default_adapter``: ``"chat"``, ``"json"``, or an adapter instance.
    """
    if configured is not None:
        if isinstance(configured, Adapter):
            return configured
        if isinstance(configured, type) and issubclass(configured, Adapter):
            return configured()
        if isinstance(configured, str):
            if configured in _BY_NAME:
                return _BY_NAME[configured]
            from .. import extensions  # an adapter from an installed or registered extension

            if configured not in extensions.names("adapters"):
                known = extensions.names("adapters")
                raise ConfigurationError(f"Unknown adapter name {configured!r}; use one of {known}")
            return adapter_for(lm, extensions.get("adapters", configured))
        raise TypeError(
            f"adapter must be an Adapter, an Adapter class or one of {list(ADAPTER_NAMES)}, got {configured!r}"
        )
    preferred = getattr(lm, "default_adapter", "chat")
    if isinstance(preferred, Adapter):  # an LM that names its own adapter (elixirml.dspy's LMs: DSPy's format)
        return preferred
    return _DEFAULT_JSON if preferred == "json" else _DEFAULT_CHAT


# Adapters without a fallback hold no state, so the defaults can be shared.
_DEFAULT_CHAT = ChatAdapter()
_DEFAULT_JSON = JSONAdapter()
_BY_NAME: dict[str, Adapter] = {
    "chat": _DEFAULT_CHAT,
    "json": _DEFAULT_JSON,
    "plain": PlainAdapter(),
    "xml": XMLAdapter(),
}
#: Names accepted wherever an adapter is expected (``Predict(adapter="plain")``, ``em.configure``).
ADAPTER_NAMES = tuple(_BY_NAME)
