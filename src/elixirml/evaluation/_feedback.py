"""Metric feedback: a score with the reasons for it, which reflective optimizers read."""

from __future__ import annotations

import math
from typing import Any

from ..errors import ConfigurationError, MetricError, truncate


class Feedback:
    """A metric's score together with text that says why.

    A metric may return ``em.Feedback(score, feedback="...")`` wherever it returns a number:
    evaluation uses the score and keeps the text (``ExampleResult.feedback``), and optimizers
    that reflect (GEPA, SIMBA) show it to their reflection LM. ``float(feedback)`` is the score,
    so code that expects a number keeps working.

    DSPy's GEPA metrics return ``dspy.Prediction(score=..., feedback=...)``; a prediction (or
    any object or mapping) with ``score`` and ``feedback`` is read the same way.

    Args:
        score: the score (a number or bool; higher is better unless the metric says otherwise).
        feedback: why the prediction earned it: what was wrong, what the answer should be.

    Raises:
        ConfigurationError: the score is not a finite number, or the feedback is not text.
    """

    __slots__ = ("feedback", "score")

    def __init__(self, score: float | bool, feedback: str = "") -> None:
        if isinstance(score, bool):
            score = float(score)
        if not isinstance(score, (int, float)) or not math.isfinite(score):
            raise ConfigurationError(f"Feedback score must be a finite number, got {score!r}")
        if not isinstance(feedback, str):
            raise ConfigurationError(f"Feedback text must be a str, got {type(feedback).__name__}")
        self.score = float(score)
        self.feedback = feedback

    def __float__(self) -> float:
        return self.score

    def __bool__(self) -> bool:
        return self.score > 0

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Feedback):
            return (self.score, self.feedback) == (other.score, other.feedback)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.score, self.feedback))

    def __repr__(self) -> str:
        return f"Feedback({self.score!r}, feedback={self.feedback!r})"


def finite_score(value: Any, metric: str) -> float:
    """A metric's score as a float; anything but a finite number raises :class:`~elixirml.errors.MetricError`.

    ``True``/``False`` are 1.0/0.0. ``None``, NaN, infinities and other values name the metric
    and the value: a score that is not a number would poison every aggregate and record after it.
    """
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        number = math.nan
    if math.isfinite(number):
        return number
    raise MetricError(
        f"The metric {metric!r} returned {truncate(value, 80)}, which is not a finite number; return a "
        "number (a bool works too: True scores 1), e.g. 0.0 for a wrong answer"
    )


def split_feedback(value: Any) -> tuple[Any, str | None]:
    """A metric's return value as ``(score, feedback text or None)``.

    Reads :class:`Feedback`, and objects or mappings with both ``score`` and ``feedback``
    (DSPy's ``Prediction(score=, feedback=)``); anything else is a bare score.
    """
    if isinstance(value, Feedback):
        return value.score, value.feedback
    if isinstance(value, (int, float)):
        return value, None
    if isinstance(value, dict):
        if "score" in value and "feedback" in value:
            return value["score"], str(value["feedback"])
        return value, None
    score = getattr(value, "score", None)
    text = getattr(value, "feedback", None)
    if score is not None and text is not None and not callable(score):
        return score, str(text)
    return value, None
