"""``dspy.predict.parallel``: DSPy's import path of Parallel."""

from ...program import Parallel

__all__ = ["Parallel"]
