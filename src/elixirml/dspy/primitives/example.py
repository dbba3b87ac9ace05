"""``dspy.primitives.example``: DSPy's import path of ``Example``."""

from ...schema import Example

__all__ = ["Example"]
