"""The one JSON form of demos and configurations (predictor state, the store, optimizer trials)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


def demos_to_state(demos: Sequence[Any]) -> dict[str, Any]:
    """A predictor's demos in DSPy's ``dump_state`` layout, with ElixirML's input marks beside them.

    ``demos`` is a list of flat field-to-value objects, as DSPy 3.4.1 writes (values made JSON-ready,
    Pydantic models as ``model_dump(mode="json")``); ``demo_inputs`` lists, per demo, its sorted
    input field names (None for a demo without marks). DSPy reads such a state too.
    """
    demos = list(demos)
    return {
        "demos": [to_jsonable(d.to_dict() if isinstance(d, Example) else dict(d)) for d in demos],
        "demo_inputs": [
            sorted(d.input_keys) if isinstance(d, Example) and d.input_keys is not None else None for d in demos
        ],
    }


def demos_from_state(state: Mapping[str, Any], input_fields: Sequence[str]) -> list[Example]:
    """The demos of a saved predictor state, in any layout ElixirML or DSPy wrote.

    * ``demos`` with ``demo_inputs`` (:func:`demos_to_state`): flat demos, input marks restored;
    * ElixirML's earlier layout (a state with ``type`` and no ``demo_inputs``): each demo
      ``{"data": {...}, "inputs": [...]}`` (:func:`demo_to_json`);
    * DSPy's (flat demos, no marks): the signature's ``input_fields`` present in a demo are its
      inputs, and DSPy's ``augmented`` flag is dropped.

    Raises:
        LoadError: a demo or the input marks are malformed.
    """
    raw = state.get("demos") or []
    if not isinstance(raw, list):
        raise LoadError(f"Malformed demos in saved state: a list was expected, got {type(raw).__name__}")
    if "demo_inputs" not in state and "type" in state:
        return [demo_from_json(d) for d in raw]
    marks = state.get("demo_inputs")
    if marks is not None and (not isinstance(marks, list) or len(marks) != len(raw)):
        raise LoadError(f"Malformed demo_inputs in saved state: one entry per demo was expected, got {marks!r}")
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or not all(isinstance(k, str) for k in item):
            raise LoadError(f"Malformed demo in saved state: {item!r}")
        if marks is None:
            values = {k: v for k, v in item.items() if k != "augmented"}
            out.append(Example(values).with_inputs(*[f for f in input_fields if f in values]))
            continue
        inputs = marks[i]
        if inputs is not None and (not isinstance(inputs, list) or not all(isinstance(k, str) for k in inputs)):
            raise LoadError(f"Malformed demo_inputs[{i}] in saved state: {inputs!r}")
        example = Example(dict(item))
        out.append(example.with_inputs(*inputs) if inputs is not None else example)
    return out
