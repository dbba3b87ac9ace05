"""``dspy.predict.best_of_n``: DSPy's import path of BestOfN."""

from ...program import BestOfN

__all__ = ["BestOfN"]
