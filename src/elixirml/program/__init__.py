"""Program layer: modules, predictors, variables, programs, pipelines, assertions, traces, retrieval."""

from typing import TYPE_CHECKING

from .._lazy import lazy_getattr
from ._assertions import assert_output, suggest_output
from ._composite import BestOfN, MultiChainComparison, Parallel, Refine
from ._events import FieldChunk, StatusEvent, streamify
from ._module import Module, load
from ._pipeline import Pipeline, stage
from ._predict import ChainOfThought, Predict
from ._program import Program
from ._react import ReAct
from ._retrieve import Retrieve
from ._space import Configuration, VariableSpace
from ._tools import Tool, ToolError, tool
from ._trace import TraceEntry, inspect_trace, trace
from ._variable import Variable

if TYPE_CHECKING:
    from ._store import Store


__getattr__ = lazy_getattr(__name__, {"Store": "._store"}, globals())  # the store loads on first use

__all__ = [
    "Store",
    "inspect_trace",
    "tool",
    "ToolError",
    "Tool",
    "ReAct",
    "Retrieve",
    "streamify",
    "StatusEvent",
    "FieldChunk",
    "Refine",
    "Parallel",
    "MultiChainComparison",
    "BestOfN",
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
