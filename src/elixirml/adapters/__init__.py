"""Adapters: signature + inputs -> messages; completion -> validated outputs."""

from __future__ import annotations

from typing import Any

from ._base import Adapter
from ._chat import ChatAdapter
from ._json import JSONAdapter

__all__ = ["Adapter", "ChatAdapter", "JSONAdapter", "adapter_for"]


def adapter_for(lm: Any, configured: Any = None) -> Adapter:
    """The adapter to use: the configured one, else the LM's preferred kind."""
    if configured is not None:
        if isinstance(configured, Adapter):
            return configured
        if isinstance(configured, type) and issubclass(configured, Adapter):
            return configured()
        raise TypeError(f"adapter must be an Adapter instance, got {configured!r}")
    return _DEFAULT_JSON if getattr(lm, "default_adapter", "chat") == "json" else _DEFAULT_CHAT


# Adapters without a fallback hold no state, so the defaults can be shared.
_DEFAULT_CHAT = ChatAdapter()
_DEFAULT_JSON = JSONAdapter()
