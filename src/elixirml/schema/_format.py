"""Values as text: what adapters write into prompts and test LMs write into scripted answers."""

from __future__ import annotations

import enum
import json
from typing import Any

import pydantic

from ._values import Example


def to_jsonable(value: Any) -> Any:
    """Convert Pydantic models, examples, enums, sets and tuples into JSON-ready values."""
    if isinstance(value, Example):
        return to_jsonable(value.to_dict())
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [to_jsonable(v) for v in value]
    return value


def format_value(value: Any) -> str:
    """Render a value as prompt text: strings as they are, everything else as JSON.

    An enum member with a string value is written as that value (``red``, not ``"red"``), as
    DSPy writes it.
    """
    if isinstance(value, enum.Enum) and isinstance(value.value, str):
        value = value.value
    if isinstance(value, str):
        return value
    from ._media import Image

    if isinstance(value, Image):
        return value.marker()  # the adapter puts the image itself there (an image content part)
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, Image) for v in value):
        return "\n".join(v.marker() for v in value)
    return json.dumps(to_jsonable(value), ensure_ascii=False, default=str)
