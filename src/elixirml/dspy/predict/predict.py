"""``dspy.predict.predict``: DSPy's import path of ``Predict`` (and its module logger)."""

from __future__ import annotations

import logging
from typing import Any

from ...program import Predict
from ...schema import Prediction

__all__ = ["Predict", "Prediction", "logger", "serialize_object"]

#: The logger of ElixirML's predictors (where input type-mismatch warnings go).
logger = logging.getLogger("elixirml.program")


def serialize_object(obj: Any) -> Any:
    """A value as JSON-ready data (Pydantic models as dicts, with ``mode="json"``), as DSPy's helper."""
    import pydantic

    if isinstance(obj, pydantic.BaseModel):
        return obj.model_dump(mode="json")
    if isinstance(obj, (list, tuple)):
        return (
            type(obj)(serialize_object(item) for item in obj)
            if isinstance(obj, tuple)
            else [serialize_object(item) for item in obj]
        )
    if isinstance(obj, dict):
        return {key: serialize_object(value) for key, value in obj.items()}
    return obj
