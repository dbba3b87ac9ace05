"""Metrics for :func:`elixirml.evaluate` (``em.evaluate``) and the optimizers (``em.metrics``).

Built-ins are ready-made instances (``exact_match``, ``f1``, ``numeric_match``, ``contains``,
``passage_match``); use the classes to choose the field: ``ExactMatch(field="label")``.
"""

from .evaluation import (
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
    normalize_text,
    numeric_match,
    passage_match,
)

__all__ = [
    "F1",
    "Contains",
    "ExactMatch",
    "FieldMetric",
    "FunctionMetric",
    "LMJudge",
    "Metric",
    "NumericMatch",
    "PassageMatch",
    "answer_exact_match",
    "answer_passage_match",
    "as_metric",
    "contains",
    "exact_match",
    "extract_number",
    "f1",
    "normalize_text",
    "numeric_match",
    "passage_match",
]
