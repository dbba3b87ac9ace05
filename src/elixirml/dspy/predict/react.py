"""``dspy.predict.react``: DSPy's import path of ReAct,Tool."""

from ...program import ReAct, Tool

__all__ = ["ReAct", "Tool"]
