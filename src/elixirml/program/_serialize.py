"""The one JSON form of demos and configurations (predictor state, the store, optimizer trials)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import LoadError
from ..schema import Example, to_jsonable


def demo_to_json(demo: Any) -> dict[str, Any]:
    """``{"data": {...}, "inputs": [...]}`` for an Example (or a plain dict of values)."""
    if isinstance(demo, Example):
        data: dict[str, Any] = {"data": to_jsonable(demo.to_dict())}
        if demo.input_keys is not None:
            data["inputs"] = sorted(demo.input_keys)
        return data
    return {"data": to_jsonable(dict(demo))}


def demo_from_json(item: Any) -> Example:
    """The Example that :func:`demo_to_json` wrote (input marks restored)."""
    if not isinstance(item, dict) or not isinstance(item.get("data"), dict):
        raise LoadError(f"Malformed demo in saved state: {item!r}")
    example = Example(item["data"])
    inputs = item.get("inputs")
    return example.with_inputs(*inputs) if inputs else example


def is_demos_key(key: str) -> bool:
    """Whether a configuration key names a predictor's demos (``demos`` or ``<path>.demos``)."""
    return key == "demos" or key.endswith(".demos")


def configuration_to_json(config: Mapping[str, Any]) -> dict[str, Any]:
    """A configuration made JSON-ready: demo lists through :func:`demo_to_json`, the rest as values."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if is_demos_key(key) and isinstance(value, list):
            out[key] = [demo_to_json(d) for d in value]
        else:
            out[key] = to_jsonable(value)
    return out


def configuration_from_json(data: Mapping[str, Any]) -> dict[str, Any]:
    """The configuration that :func:`configuration_to_json` wrote (demo lists back as Examples)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if is_demos_key(key) and isinstance(value, list):
            out[key] = [demo_from_json(d) for d in value]
        else:
            out[key] = value
    return out
