"""``dspy.primitives.module``: DSPy's import path of ``Module``, and ``set_attribute_by_name``."""

from __future__ import annotations

import ast
import re
from typing import Any

from ...program import Module

__all__ = ["Module", "set_attribute_by_name"]

_STEP = re.compile(r"\.?([A-Za-z_]\w*)|\[([^\]]+)\]")


def set_attribute_by_name(obj: Any, name: str, value: Any) -> None:
    """Set the attribute or item a DSPy parameter name points to (``"a.b[0]['k'].c"``)."""
    steps: list[tuple[str, Any]] = []
    pos = 0
    while pos < len(name):
        match = _STEP.match(name, pos)
        if match is None:
            raise ValueError(f"Cannot read the name {name!r} at position {pos}")
        if match.group(1) is not None:
            steps.append(("attr", match.group(1)))
        else:
            steps.append(("item", ast.literal_eval(match.group(2))))
        pos = match.end()
    target = obj
    for kind, key in steps[:-1]:
        target = getattr(target, key) if kind == "attr" else target[key]
    kind, key = steps[-1]
    if kind == "attr":
        setattr(target, key, value)
    else:
        target[key] = value
