"""``dspy.adapters.json_adapter``: DSPy's import path of :class:`JSONAdapter`."""

from . import JSONAdapter

__all__ = ["JSONAdapter"]
