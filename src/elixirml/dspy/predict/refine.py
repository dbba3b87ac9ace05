"""``dspy.predict.refine``: DSPy's import path of Refine."""

from ...program import Refine

__all__ = ["Refine"]
