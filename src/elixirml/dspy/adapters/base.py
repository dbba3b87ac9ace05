"""``dspy.adapters.base``: DSPy's import path of the adapter base class."""

from . import Adapter

__all__ = ["Adapter"]
