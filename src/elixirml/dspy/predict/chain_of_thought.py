"""``dspy.predict.chain_of_thought``: DSPy's import path of ChainOfThought."""

from ...program import ChainOfThought

__all__ = ["ChainOfThought"]
