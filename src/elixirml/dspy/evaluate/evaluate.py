"""``dspy.evaluate.evaluate``: DSPy's import path of ``Evaluate``."""

from ...evaluation import Evaluate, EvaluationResult

__all__ = ["Evaluate", "EvaluationResult"]
