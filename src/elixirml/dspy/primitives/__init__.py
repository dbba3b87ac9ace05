"""``dspy.primitives``: examples, predictions and modules."""

from __future__ import annotations

from ...program import Module, Tool
from ...schema import Code, Example, History, Image, Prediction
from . import base_module, example, module, prediction

__all__ = [
    "BaseModule",
    "Code",
    "Example",
    "History",
    "Image",
    "Module",
    "Prediction",
    "Tool",
    "base_module",
    "example",
    "module",
    "prediction",
]

BaseModule = Module
