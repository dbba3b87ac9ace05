"""``dspy.evaluate``: ``Evaluate`` and DSPy's answer metrics."""

from __future__ import annotations

from ...evaluation import Evaluate, EvaluationResult, answer_exact_match, answer_passage_match
from . import evaluate, metrics

__all__ = ["Evaluate", "EvaluationResult", "answer_exact_match", "answer_passage_match", "evaluate", "metrics"]
