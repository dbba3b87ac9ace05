"""``dspy.utils.exceptions``: DSPy's error classes, as ElixirML's (one hierarchy, ``elixirml.errors``)."""

from __future__ import annotations

from ...errors import AdapterParseError, ContextWindowExceededError, LMUnexpectedError
from ...program import format_error_for_lm

__all__ = ["AdapterParseError", "ContextWindowExceededError", "LMUnexpectedError", "format_error_for_lm"]
