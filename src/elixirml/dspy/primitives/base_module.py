"""``dspy.primitives.base_module``: DSPy's import path of the module base class."""

from ...program import Module
from ..utils.saving import get_dependency_versions

__all__ = ["BaseModule", "get_dependency_versions"]

BaseModule = Module
