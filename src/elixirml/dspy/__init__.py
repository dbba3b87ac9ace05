"""DSPy 3.4's public import paths over ElixirML: ``import elixirml.dspy as dspy``.

A DSPy program runs with only its import changed::

    import elixirml.dspy as dspy
    from elixirml.dspy.teleprompt import BootstrapFewShot

The names here are ElixirML's own classes and functions (behaviour lives in the package
proper); this namespace re-exports them under DSPy's paths and adds the few DSPy spellings
ElixirML has no name for (``dspy.settings.lm``, ``BaseLM`` subclasses implementing
``forward``, ``GLOBAL_HISTORY``). Where ElixirML differs on purpose (no pickle, no code run on
load, outputs strictly validated) the error says what to use instead; see docs/dspy.md.
"""

from __future__ import annotations

from .. import (
    BestOfN,
    ChainOfThought,
    Code,
    Evaluate,
    Example,
    History,
    Image,
    InputField,
    MultiChainComparison,
    OutputField,
    Predict,
    Prediction,
    ReAct,
    Refine,
    Signature,
    Tool,
    ToolCalls,
)
from ..schema import make_signature
from . import adapters, clients, evaluate, experimental, predict, primitives, signatures, teleprompt, utils
from ._settings import configure, context, load_settings, reset_for_tests, settings
from .adapters import Adapter, ChatAdapter, JSONAdapter, TwoStepAdapter, XMLAdapter
from .adapters.types import Audio, File, Reasoning, ToolCallResults, Type
from .clients import LM, BaseLM, inspect_history
from .predict import Parallel
from .primitives import Module
from .signatures import infer_prefix
from .teleprompt import (
    COPRO,
    GEPA,
    SIMBA,
    BootstrapFewShot,
    BootstrapFewShotWithRandomSearch,
    Ensemble,
    KNNFewShot,
    LabeledFewShot,
    MIPROv2,
)
from .utils import DummyLM, LMUnexpectedError, load, track_usage

__all__ = [
    "COPRO",
    "GEPA",
    "LM",
    "SIMBA",
    "Adapter",
    "Audio",
    "BaseLM",
    "BestOfN",
    "BootstrapFewShot",
    "BootstrapFewShotWithRandomSearch",
    "ChainOfThought",
    "ChatAdapter",
    "Code",
    "DummyLM",
    "Ensemble",
    "Evaluate",
    "Example",
    "File",
    "History",
    "Image",
    "InputField",
    "JSONAdapter",
    "KNNFewShot",
    "LMUnexpectedError",
    "LabeledFewShot",
    "MIPROv2",
    "Module",
    "MultiChainComparison",
    "OutputField",
    "Parallel",
    "Predict",
    "Prediction",
    "ReAct",
    "Reasoning",
    "Refine",
    "Signature",
    "Tool",
    "ToolCallResults",
    "ToolCalls",
    "TwoStepAdapter",
    "Type",
    "XMLAdapter",
    "adapters",
    "clients",
    "configure",
    "context",
    "evaluate",
    "experimental",
    "infer_prefix",
    "inspect_history",
    "load",
    "load_settings",
    "make_signature",
    "predict",
    "primitives",
    "reset_for_tests",
    "settings",
    "signatures",
    "teleprompt",
    "track_usage",
    "utils",
]
