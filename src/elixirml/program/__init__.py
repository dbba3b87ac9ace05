"""Program layer: modules, predictors, traces."""

from ._module import Module, load
from ._predict import ChainOfThought, Predict
from ._trace import TraceEntry, trace

__all__ = ["ChainOfThought", "Module", "Predict", "TraceEntry", "load", "trace"]
