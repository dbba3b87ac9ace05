"""``dspy.utils.exceptions``: DSPy's error classes, as ElixirML's (one hierarchy, ``elixirml.errors``)."""

from __future__ import annotations

from ...errors import AdapterParseError, ContextWindowExceededError, LMUnexpectedError

__all__ = ["AdapterParseError", "ContextWindowExceededError", "LMUnexpectedError"]
