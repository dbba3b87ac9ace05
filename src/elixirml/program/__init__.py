"""Program layer: modules, predictors, variables, programs, pipelines, assertions, traces."""

from ._assertions import assert_output, suggest_output
from ._module import Module, load
from ._pipeline import Pipeline, stage
from ._predict import ChainOfThought, Predict
from ._program import Program
from ._space import Configuration, VariableSpace
from ._trace import TraceEntry, trace
from ._variable import Variable

__all__ = [
    "ChainOfThought",
    "Configuration",
    "Module",
    "Pipeline",
    "Predict",
    "Program",
    "TraceEntry",
    "Variable",
    "VariableSpace",
    "assert_output",
    "load",
    "stage",
    "suggest_output",
    "trace",
]
