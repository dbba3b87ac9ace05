"""Evaluation layer: metrics, concurrent evaluation, results and reports."""

from ._evaluator import Evaluate
from ._feedback import Feedback, finite_score, split_feedback
from ._metrics import (
    F1,
    Contains,
    ExactMatch,
    FieldMetric,
    FunctionMetric,
    LMJudge,
    Metric,
    NumericMatch,
    PassageMatch,
    answer_exact_match,
    answer_passage_match,
    as_metric,
    contains,
    exact_match,
    extract_number,
    f1,
    metric_by_name,
    normalize_text,
    numeric_match,
    passage_match,
)
from ._results import MEASURED, EvaluationResult, ExampleResult, compare
from ._runner import aevaluate, evaluate

# DSPy code writes dspy.evaluate.answer_exact_match; here em.evaluate is the function, so it
# carries DSPy's two metrics as attributes too.
evaluate.answer_exact_match = answer_exact_match  # type: ignore[attr-defined]
evaluate.answer_passage_match = answer_passage_match  # type: ignore[attr-defined]
__all__ = [
    "F1",
    "MEASURED",
    "Contains",
    "Evaluate",
    "EvaluationResult",
    "ExactMatch",
    "ExampleResult",
    "Feedback",
    "FieldMetric",
    "FunctionMetric",
    "LMJudge",
    "Metric",
    "NumericMatch",
    "PassageMatch",
    "aevaluate",
    "answer_exact_match",
    "answer_passage_match",
    "as_metric",
    "compare",
    "contains",
    "evaluate",
    "exact_match",
    "extract_number",
    "f1",
    "finite_score",
    "metric_by_name",
    "normalize_text",
    "numeric_match",
    "passage_match",
    "split_feedback",
]
