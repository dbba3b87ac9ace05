"""``dspy.predict``: the predictor modules."""

from __future__ import annotations

from ...program import BestOfN, ChainOfThought, MultiChainComparison, Predict, ReAct, Refine, Tool
from . import best_of_n, chain_of_thought, multi_chain_comparison, parallel, predict, react, refine
from .parallel import Parallel

__all__ = [
    "BestOfN",
    "ChainOfThought",
    "MultiChainComparison",
    "Parallel",
    "Predict",
    "ReAct",
    "Refine",
    "Tool",
    "best_of_n",
    "chain_of_thought",
    "multi_chain_comparison",
    "parallel",
    "predict",
    "react",
    "refine",
]
