"""Evaluation layer: metrics, concurrent evaluation, results and reports."""

from ._evaluate import Evaluate, EvaluationResult, ExampleResult, aevaluate, compare, evaluate
from ._metrics import Metric, as_metric

__all__ = ["Evaluate", "EvaluationResult", "ExampleResult", "Metric", "aevaluate", "as_metric", "compare", "evaluate"]
