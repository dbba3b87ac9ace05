"""ElixirML: declarative language-model programs that optimize every parameter.

Quick start::

    import elixirml as em

    em.configure(lm=em.LM("local"))
    qa = em.ChainOfThought("question -> answer")
    print(qa(question="What is the capital of France?").answer)

Public names are listed in ``__all__``; everything else is private.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import errors
from ._lazy import lazy_getattr
from ._version import __version__
from .adapters import Adapter, ChatAdapter, JSONAdapter, PlainAdapter, TwoStepAdapter, XMLAdapter
from .lm import LM, LMResponse, RequestSettings, Usage, track_usage
from .program import (
    BestOfN,
    ChainOfThought,
    FieldChunk,
    Module,
    MultiChainComparison,
    Parallel,
    Pipeline,
    Predict,
    Program,
    ReAct,
    Refine,
    Retrieve,
    StatusEvent,
    Tool,
    TraceEntry,
    assert_output,
    inspect_trace,
    load,
    stage,
    streamify,
    suggest_output,
    tool,
    trace,
)
from .schema import Example, InputField, OutputField, Prediction, Schema, Signature
from .settings import Settings, configure, context, reload_config
from .variables import Configuration, Variable, VariableSpace

if TYPE_CHECKING:
    from . import callbacks, data, distributed, extensions, metrics, optimizers, retrievers, runtime, serve
    from .data import Dataset
    from .distributed import RayExecutor
    from .evaluation import Evaluate, EvaluationResult, Feedback, compare, evaluate
    from .lm import DummyLM, Embedder, FunctionLM
    from .optimizers import (
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
    from .program import Store
    from .schema import Code, History, Image, ToolCalls

# Loaded on first use, so that `import elixirml` does not pay for the optimizers, evaluation,
# the store, the server, Ray support, datasets or telemetry: public name -> module that defines it.
_LAZY: dict[str, str] = {
    **{
        name: f".{name}"
        for name in (
            "callbacks",
            "data",
            "distributed",
            "extensions",
            "metrics",
            "optimizers",
            "retrievers",
            "runtime",
            "serve",
        )
    },
    "Dataset": ".data",
    "RayExecutor": ".distributed",
    "Store": ".program",
    **dict.fromkeys(("DummyLM", "Embedder", "FunctionLM"), ".lm"),
    **dict.fromkeys(("Code", "History", "Image", "ToolCalls"), ".schema"),
    **dict.fromkeys(("Evaluate", "EvaluationResult", "Feedback", "compare", "evaluate"), ".evaluation"),
    **dict.fromkeys(
        (
            "COPRO",
            "GEPA",
            "SIMBA",
            "BootstrapFewShot",
            "BootstrapFewShotWithRandomSearch",
            "Ensemble",
            "KNNFewShot",
            "LabeledFewShot",
            "MIPROv2",
        ),
        ".optimizers",
    ),
}
__getattr__ = lazy_getattr(__name__, _LAZY, globals())


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "COPRO",
    "GEPA",
    "LM",
    "SIMBA",
    "Adapter",
    "BestOfN",
    "BootstrapFewShot",
    "BootstrapFewShotWithRandomSearch",
    "ChainOfThought",
    "ChatAdapter",
    "Code",
    "Configuration",
    "Dataset",
    "DummyLM",
    "Embedder",
    "Ensemble",
    "Evaluate",
    "EvaluationResult",
    "Example",
    "Feedback",
    "FieldChunk",
    "FunctionLM",
    "History",
    "Image",
    "InputField",
    "JSONAdapter",
    "KNNFewShot",
    "LMResponse",
    "LabeledFewShot",
    "MIPROv2",
    "Module",
    "MultiChainComparison",
    "OutputField",
    "Parallel",
    "Pipeline",
    "PlainAdapter",
    "Predict",
    "Prediction",
    "Program",
    "RayExecutor",
    "ReAct",
    "Refine",
    "RequestSettings",
    "Retrieve",
    "Schema",
    "Settings",
    "Signature",
    "StatusEvent",
    "Store",
    "Tool",
    "ToolCalls",
    "TraceEntry",
    "TwoStepAdapter",
    "Usage",
    "Variable",
    "VariableSpace",
    "XMLAdapter",
    "__version__",
    "assert_output",
    "callbacks",
    "compare",
    "configure",
    "context",
    "data",
    "distributed",
    "errors",
    "evaluate",
    "extensions",
    "inspect_history",
    "inspect_trace",
    "load",
    "metrics",
    "optimizers",
    "reload_config",
    "retrievers",
    "runtime",
    "serve",
    "stage",
    "streamify",
    "suggest_output",
    "tool",
    "trace",
    "track_usage",
]


def inspect_history(n: int = 1, lm: LM | None = None) -> str:
    """Print and return the last ``n`` prompts and answers of ``lm`` (default: the configured LM)."""
    from .settings import current

    target = lm or current().lm
    if target is None:
        raise errors.ConfigurationError("No LM configured; pass lm=... or call em.configure(lm=...)")
    return target.inspect_history(n)
