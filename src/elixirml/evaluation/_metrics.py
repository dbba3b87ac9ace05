"""Metrics: ``(example, prediction, trace=None) -> float | bool``, plain functions or objects.

A metric object implements :class:`Metric`: ``calculate`` (may be async), ``aggregate``
(mean by default) and ``direction`` (``"maximize"`` or ``"minimize"``). Built-ins pick the
field to compare by themselves (the first label of the example that the prediction has)
unless given ``field=...``.
"""

from __future__ import annotations

import inspect
import re
import string
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..errors import ConfigurationError, ValidationError

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def normalize_text(text: Any) -> str:
    """Lowercase, drop punctuation and articles, collapse whitespace (SQuAD-style)."""
    value = str(text).lower()
    value = "".join(ch for ch in value if ch not in set(string.punctuation))
    value = _ARTICLES.sub(" ", value)
    return " ".join(value.split())


def extract_number(text: Any) -> float | None:
    """The final number in ``text`` (after ``####`` when present, GSM8K style), or None."""
    value = str(text)
    if "####" in value:
        value = value.rsplit("####", 1)[1]
    found = _NUMBER.findall(value)
    if not found:
        return None
    try:
        return float(found[-1].replace(",", ""))
    except ValueError:
        return None


class Metric:
    """Base class (and protocol) of metric objects.

    Subclasses implement :meth:`calculate`. Instances are callable like metric functions.

    Attributes:
        name: the metric's name in reports.
        direction: ``"maximize"`` or ``"minimize"``.
    """

    name = "metric"
    direction = "maximize"

    def calculate(self, example: Any, prediction: Any, trace: Any = None) -> Any:
        """Score one prediction (a float or bool; may be a coroutine)."""
        raise NotImplementedError

    def aggregate(self, scores: Sequence[float]) -> float:
        """Combine per-example scores (the mean by default)."""
        return sum(scores) / len(scores) if scores else 0.0

    def __call__(self, example: Any, prediction: Any, trace: Any = None) -> Any:
        return self.calculate(example, prediction, trace)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class FunctionMetric(Metric):
    """Wraps a plain function ``fn(example, prediction, trace=None)``."""

    def __init__(self, fn: Callable[..., Any], name: str | None = None, direction: str = "maximize") -> None:
        self.fn = fn
        self.name = name or str(getattr(fn, "__name__", "metric"))
        self.direction = direction
        self._trace_by = _trace_passing(fn)

    def __eq__(self, other: object) -> bool:
        """Equal to the function it wraps (``optimizer.metric == my_metric``, as in DSPy) and to its other wrappers."""
        if isinstance(other, FunctionMetric):
            return bool(self.fn == other.fn and self.name == other.name and self.direction == other.direction)
        return bool(callable(other) and self.fn == other)

    def __hash__(self) -> int:
        return hash(self.fn)

    def calculate(self, example: Any, prediction: Any, trace: Any = None) -> Any:
        if self._trace_by == "keyword":
            return self.fn(example, prediction, trace=trace)
        if self._trace_by == "position":
            return self.fn(example, prediction, trace)
        return self.fn(example, prediction)


def _trace_passing(fn: Callable[..., Any]) -> str:
    """How a metric function takes the trace: ``"keyword"``, ``"position"`` or ``"none"``.

    As DSPy calls metrics: ``trace=`` by keyword to a function with a ``trace`` parameter or
    ``**kwargs``; positionally to one with a third positional parameter of another name (or
    ``*args``); not at all to ``metric(example, pred)``.
    """
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # a builtin without a signature: DSPy's positional call
        return "position"
    if any(p.name == "trace" and p.kind != p.POSITIONAL_ONLY for p in params):
        return "keyword"
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) >= 3 or any(p.kind == p.VAR_POSITIONAL for p in params):
        return "position"
    if any(p.kind == p.VAR_KEYWORD for p in params):
        return "keyword"
    return "none"


def as_metric(metric: Any) -> Metric:
    """Accept a Metric object or a function; return a Metric."""
    if isinstance(metric, Metric):
        return metric
    if callable(metric):
        return FunctionMetric(metric)
    raise ConfigurationError(f"A metric must be a function or an em.metrics.Metric, got {metric!r}")


class FieldMetric(Metric):
    """A metric comparing one field of the example with the same field of the prediction."""

    def __init__(self, field: str | None = None, pred_field: str | None = None) -> None:
        self.field = field
        self.pred_field = pred_field

    def _pair(self, example: Any, prediction: Any) -> tuple[Any, Any]:
        field = self.field
        if field is None:
            labels = example.labels() if hasattr(example, "labels") else example
            field = next((k for k in labels if k in prediction), None)
            if field is None:
                raise ConfigurationError(
                    f"{self.name}: no label field of the example is in the prediction "
                    f"(example labels {list(labels)}, prediction fields {list(prediction)}); pass field=..."
                )
        pred_field = self.pred_field or field
        return example[field], prediction[pred_field]


class ExactMatch(FieldMetric):
    """1.0 when the normalised texts are equal (see :func:`normalize_text`)."""

    name = "exact_match"

    def calculate(self, example: Any, prediction: Any, trace: Any = None) -> float:
        gold, pred = self._pair(example, prediction)
        golds = gold if isinstance(gold, (list, tuple)) else [gold]
        return float(any(normalize_text(g) == normalize_text(pred) for g in golds))


class F1(FieldMetric):
    """Token-level F1 between the normalised texts."""

    name = "f1"

    def calculate(self, example: Any, prediction: Any, trace: Any = None) -> float:
        gold, pred = self._pair(example, prediction)
        golds = gold if isinstance(gold, (list, tuple)) else [gold]
        return max(_f1(normalize_text(g).split(), normalize_text(pred).split()) for g in golds)


def _f1(gold: list[str], pred: list[str]) -> float:
    if not gold or not pred:
        return float(gold == pred)
    common = sum((Counter(gold) & Counter(pred)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


class NumericMatch(FieldMetric):
    """1.0 when the final numbers agree (gold may use GSM8K's ``#### N`` form)."""

    name = "numeric_match"

    def __init__(self, field: str | None = None, pred_field: str | None = None, tolerance: float = 1e-6) -> None:
        super().__init__(field, pred_field)
        self.tolerance = tolerance

    def calculate(self, example: Any, prediction: Any, trace: Any = None) -> float:
        gold, pred = self._pair(example, prediction)
        g, p = extract_number(gold), extract_number(pred)
        return float(g is not None and p is not None and abs(g - p) <= self.tolerance)


class Contains(FieldMetric):
    """1.0 when the normalised gold text occurs in the normalised prediction."""

    name = "contains"

    def calculate(self, example: Any, prediction: Any, trace: Any = None) -> float:
        gold, pred = self._pair(example, prediction)
        golds = gold if isinstance(gold, (list, tuple)) else [gold]
        return float(any(normalize_text(g) in normalize_text(pred) for g in golds))


class PassageMatch(Metric):
    """1.0 when any retrieved passage contains a gold answer.

    Args:
        answer_field: the example field with the answer(s).
        passages_field: the prediction field with the passages (a list of texts).
    """

    name = "passage_match"

    def __init__(self, answer_field: str = "answer", passages_field: str = "passages") -> None:
        self.answer_field = answer_field
        self.passages_field = passages_field

    def calculate(self, example: Any, prediction: Any, trace: Any = None) -> float:
        gold = example[self.answer_field]
        golds = gold if isinstance(gold, (list, tuple)) else [gold]
        passages = prediction[self.passages_field]
        texts = [normalize_text(p) for p in passages]
        return float(any(normalize_text(g) in t for g in golds for t in texts))


def _field(obj: Any, name: str) -> Any:
    """``obj.name``, or ``obj[name]`` for a mapping: DSPy's metrics read plain objects too."""
    try:
        return getattr(obj, name)
    except AttributeError:
        if isinstance(obj, Mapping) and name in obj:
            return obj[name]
        raise AttributeError(
            f"{type(obj).__name__} has no field {name!r}: DSPy's answer metrics read example.answer "
            f"and the prediction's {name!r}; use em.metrics.ExactMatch(field=...) for other fields."
        ) from None


def _gold_answers(metric: str, example: Any) -> list[Any]:
    gold = _field(example, "answer")
    if isinstance(gold, str):
        return [gold]
    if isinstance(gold, (list, tuple)):
        return list(gold)
    raise ValidationError(metric, "answer", gold, "the example's answer must be a str or a list of str, as in DSPy")


def answer_exact_match(example: Any, pred: Any, trace: Any = None, frac: float = 1.0) -> bool:
    """DSPy's ``answer_exact_match``: whether ``pred.answer`` matches one of ``example.answer``.

    Texts are compared after :func:`normalize_text`. Examples, predictions, dicts and plain
    objects with an ``answer`` attribute all work.

    Args:
        example: has ``answer``, a str or a list of str.
        pred: has ``answer``.
        trace: unused (metrics receive it during optimization).
        frac: below 1.0, a token F1 of at least ``frac`` with one gold answer counts as a match.

    Raises:
        ValidationError: ``example.answer`` is neither a str nor a list (a ``ValueError``, as in DSPy).
    """
    golds = _gold_answers("answer_exact_match", example)
    predicted = normalize_text(_field(pred, "answer"))
    if frac >= 1.0:
        return any(normalize_text(gold) == predicted for gold in golds)
    return max((_f1(normalize_text(gold).split(), predicted.split()) for gold in golds), default=0.0) >= frac


def answer_passage_match(example: Any, pred: Any, trace: Any = None) -> bool:
    """DSPy's ``answer_passage_match``: whether a passage of ``pred.context`` has a gold answer.

    An answer matches when its normalised words occur as consecutive whole words of a passage
    (``"cat"`` is not found in ``"concatenate"``).

    Args:
        example: has ``answer``, a str or a list of str.
        pred: has ``context``, a list of passages (texts).
        trace: unused.

    Raises:
        ValidationError: ``example.answer`` is neither a str nor a list (a ``ValueError``, as in DSPy).
    """
    golds = [normalize_text(gold).split() for gold in _gold_answers("answer_passage_match", example)]
    context = _field(pred, "context")
    passages = [context] if isinstance(context, str) else list(context)
    for passage in passages:
        words = normalize_text(passage).split()
        for gold in golds:
            if gold and any(words[i : i + len(gold)] == gold for i in range(len(words) - len(gold) + 1)):
                return True
    return False


class LMJudge(Metric):
    """Asks an LM to grade a prediction from 0 to 1.

    Args:
        rubric: a grading rubric (text), or a Signature whose output field ``score`` is the
            grade and whose input fields are filled by name from the example and prediction.
        lm: the judging LM (default: the configured one).
        name: the metric's name.
    """

    direction = "maximize"

    def __init__(self, rubric: Any, *, lm: Any = None, name: str = "lm_judge") -> None:
        from ..program import Predict
        from ..schema import InputField, OutputField, SignatureMeta, make_signature

        self.name = name
        self.lm = lm
        if isinstance(rubric, SignatureMeta):
            if "score" not in rubric.output_fields:
                raise ConfigurationError("An LMJudge signature needs an output field named 'score'")
            signature = rubric
            self._by_name = True
        elif isinstance(rubric, str):
            signature = make_signature(
                {
                    "example": (str, InputField(desc="the task input and the expected answer, as JSON")),
                    "prediction": (str, InputField(desc="the answer to grade, as JSON")),
                    "score": (float, OutputField(desc="the grade, from 0 (wrong) to 1 (perfect)", ge=0.0, le=1.0)),
                },
                f"Grade the prediction against the rubric. Rubric: {rubric}",
                name="Judge",
            )
            self._by_name = False
        else:
            raise ConfigurationError("LMJudge takes a rubric string or a Signature with a 'score' output")
        self.judge = Predict(signature, lm=lm)

    async def calculate(self, example: Any, prediction: Any, trace: Any = None) -> float:
        import json

        if self._by_name:
            values = {**dict(example.items()), **dict(prediction.items())}
            inputs = {k: values[k] for k in self.judge.signature.input_fields if k in values}
        else:
            inputs = {
                "example": json.dumps(dict(example.items()), default=str),
                "prediction": json.dumps(dict(prediction.items()), default=str),
            }
        graded = await self.judge.acall(**inputs)
        return float(graded.score)


exact_match = ExactMatch()
f1 = F1()
numeric_match = NumericMatch()
contains = Contains()
passage_match = PassageMatch()


METRIC_NAMES = ("exact_match", "f1", "contains", "numeric_match")


def metric_by_name(name: str, field: str | None = None, pred_field: str | None = None) -> Any:
    """A metric by name: a built-in (``exact_match``, ``f1``, ``contains``, ``numeric_match``) or an extension's.

    Args:
        name: the metric's name.
        field: the example field to compare (default: the metric picks it).
        pred_field: the prediction field, if named differently.

    Raises:
        ConfigurationError: no metric has this name.
    """
    classes: dict[str, type[FieldMetric]] = {
        "exact_match": ExactMatch,
        "f1": F1,
        "contains": Contains,
        "numeric_match": NumericMatch,
    }
    if name in classes:
        return classes[name](field=field, pred_field=pred_field)
    from .. import extensions

    if name not in extensions.names("metrics"):
        raise ConfigurationError(f"Unknown metric {name!r}; use one of {extensions.names('metrics')}")
    provided = extensions.get("metrics", name)
    # A metric class from an extension is built like the built-ins; a function or object is used as it is.
    return provided(field=field, pred_field=pred_field) if isinstance(provided, type) else provided
