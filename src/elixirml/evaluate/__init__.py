"""Evaluation layer: metrics, concurrent evaluation, results and reports."""

from ._evaluate import Evaluate, EvaluationResult, ExampleResult, aevaluate, compare, evaluate
from ._feedback import Feedback
from ._metrics import Metric, answer_exact_match, answer_passage_match, as_metric

# DSPy code writes dspy.evaluate.answer_exact_match; here em.evaluate is the function, so it
# carries DSPy's two metrics as attributes too.
evaluate.answer_exact_match = answer_exact_match  # type: ignore[attr-defined]
evaluate.answer_passage_match = answer_passage_match  # type: ignore[attr-defined]

__all__ = [
    "Evaluate",
    "EvaluationResult",
    "ExampleResult",
    "Feedback",
    "Metric",
    "aevaluate",
    "answer_exact_match",
    "answer_passage_match",
    "as_metric",
    "compare",
    "evaluate",
]
