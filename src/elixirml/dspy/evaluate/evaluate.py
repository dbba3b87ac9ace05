"""``dspy.evaluate.evaluate``: DSPy's import path of ``Evaluate``."""

from ...evaluate import Evaluate, EvaluationResult

__all__ = ["Evaluate", "EvaluationResult"]
