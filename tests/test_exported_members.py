import elixirml as em

EXPECTED = {
    "Code",
    "History",
    "Image",
    "ToolCalls",
    "Embedder",
    "Retrieve",
    "retrievers",
    "RayExecutor",
    "distributed",
    "extensions",
    "reload_config",
    "Store",
    "LabeledFewShot",
    "BootstrapFewShotWithRandomSearch",
    "BootstrapFewShot",
    "MIPROv2",
    "GEPA",
    "SIMBA",
    "COPRO",
    "KNNFewShot",
    "Ensemble",
    "optimizers",
    "serve",
    "callbacks",
    "tool",
    "streamify",
    "inspect_trace",
    "Tool",
    "StatusEvent",
    "Refine",
    "ReAct",
    "Parallel",
    "MultiChainComparison",
    "FieldChunk",
    "BestOfN",
    "metrics",
    "runtime",
    "evaluate",
    "data",
    "compare",
    "EvaluationResult",
    "Evaluate",
    "Feedback",
    "Dataset",
    "Configuration",
    "Pipeline",
    "Program",
    "Variable",
    "VariableSpace",
    "assert_output",
    "stage",
    "suggest_output",
    "LM",
    "RequestSettings",
    "Adapter",
    "ChainOfThought",
    "ChatAdapter",
    "DummyLM",
    "Example",
    "FunctionLM",
    "InputField",
    "JSONAdapter",
    "LMResponse",
    "Module",
    "OutputField",
    "PlainAdapter",
    "Predict",
    "Prediction",
    "Schema",
    "Settings",
    "Signature",
    "TraceEntry",
    "TwoStepAdapter",
    "Usage",
    "XMLAdapter",
    "__version__",
    "configure",
    "context",
    "errors",
    "inspect_history",
    "load",
    "trace",
    "track_usage",
}


def test_all_is_pinned():
    assert set(em.__all__) == EXPECTED


def test_every_exported_name_exists_and_is_documented():
    for name in em.__all__:
        value = getattr(em, name)
        if name.startswith("__"):
            continue
        assert getattr(value, "__doc__", None), f"{name} has no docstring"


def test_import_does_not_load_heavy_packages():
    import subprocess
    import sys

    code = (
        "import sys, elixirml;"
        "heavy=[m for m in ('aiohttp','llama_cpp','json_repair','optuna','ray','sqlalchemy','rich',"
        "'anthropic','litellm','fastapi','uvicorn','starlette','openai','httpx') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
