"""Program layer: modules, predictors, variables, programs, pipelines, assertions, traces, retrieval."""

from typing import TYPE_CHECKING

from .._lazy import lazy_getattr
from ._assertions import assert_output, suggest_output
from ._code import class_allowed, class_origin, file_module_name, import_source_file, resolve_class
from ._composite import BestOfN, MultiChainComparison, Parallel, Refine
from ._events import FieldChunk, StatusEvent, streamify
from ._interface import Interface, interface_of
from ._module import Module
from ._persist import (
    build_program,
    class_path,
    dependency_versions,
    load,
    read_saved_program,
    refuse_unsafe_lm_state,
    version_mismatches,
)
from ._pipeline import Pipeline, stage
from ._predict import ChainOfThought, Predict, forced_settings
from ._program import Program
from ._react import ReAct
from ._retrieve import Retrieve
from ._serialize import configuration_from_json, configuration_to_json, demo_from_json, demo_to_json
from ._tools import Tool, ToolError, format_error_for_lm, tool, tool_error_observation
from ._trace import TraceEntry, inspect_trace, trace

if TYPE_CHECKING:
    from ._store import Store, configured_store


# The store (and the database layer under it) loads on first use.
__getattr__ = lazy_getattr(__name__, dict.fromkeys(("Store", "configured_store"), "._store"), globals())

__all__ = [
    "BestOfN",
    "ChainOfThought",
    "FieldChunk",
    "Interface",
    "Module",
    "MultiChainComparison",
    "Parallel",
    "Pipeline",
    "Predict",
    "Program",
    "ReAct",
    "Refine",
    "Retrieve",
    "StatusEvent",
    "Store",
    "Tool",
    "ToolError",
    "TraceEntry",
    "assert_output",
    "build_program",
    "class_allowed",
    "class_origin",
    "class_path",
    "configuration_from_json",
    "configuration_to_json",
    "configured_store",
    "demo_from_json",
    "demo_to_json",
    "dependency_versions",
    "file_module_name",
    "forced_settings",
    "format_error_for_lm",
    "import_source_file",
    "inspect_trace",
    "interface_of",
    "load",
    "read_saved_program",
    "refuse_unsafe_lm_state",
    "resolve_class",
    "stage",
    "streamify",
    "suggest_output",
    "tool",
    "tool_error_observation",
    "trace",
    "version_mismatches",
]
