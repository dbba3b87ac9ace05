"""``dspy.primitives.prediction``: DSPy's import path of ``Prediction`` and ``Completions``."""

from ...schema import Completions, Prediction

__all__ = ["Completions", "Prediction"]
