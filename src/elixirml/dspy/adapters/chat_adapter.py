"""``dspy.adapters.chat_adapter``: DSPy's import path of :class:`ChatAdapter`."""

from . import ChatAdapter

__all__ = ["ChatAdapter"]
