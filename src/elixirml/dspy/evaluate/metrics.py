"""``dspy.evaluate.metrics``: DSPy's answer metrics."""

from ...evaluation import answer_exact_match, answer_passage_match

__all__ = ["answer_exact_match", "answer_passage_match"]
