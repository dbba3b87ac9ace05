"""``dspy.adapters.xml_adapter``: DSPy's import path of :class:`XMLAdapter`."""

from . import XMLAdapter

__all__ = ["XMLAdapter"]
