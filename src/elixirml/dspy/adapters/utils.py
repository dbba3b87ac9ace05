"""``dspy.adapters.utils``: helpers adapters use to write and read field values."""

from __future__ import annotations

from ...adapters import parse_json_like, strip_fences
from ...schema import format_value, to_jsonable

__all__ = ["format_value", "parse_json_like", "serialize_for_json", "strip_fences"]

#: DSPy's name of the helper that turns a value into JSON-ready data.
serialize_for_json = to_jsonable
