"""``dspy.predict.multi_chain_comparison``: DSPy's import path of MultiChainComparison."""

from ...program import MultiChainComparison

__all__ = ["MultiChainComparison"]
