"""``dspy.adapters.two_step_adapter``: DSPy's import path of :class:`TwoStepAdapter`."""

from . import TwoStepAdapter

__all__ = ["TwoStepAdapter"]
