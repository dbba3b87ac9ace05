import ast
import re
from pathlib import Path

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


ROOT = Path(em.__file__).parent
#: Public top-level modules that must say what they export.
PUBLIC_MODULES = ("callbacks.py", "metrics.py", "testing.py")


def _isort_key(name: str) -> tuple[int, list[object]]:
    """The order ruff's RUF022 keeps ``__all__`` in: CONSTANTS, then Classes, then the rest, each naturally sorted."""
    kind = 0 if len(name) > 1 and name.isupper() else 1 if name[:1].isupper() else 2
    return kind, [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _declared_all(path: Path) -> list[str] | None:
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return list(ast.literal_eval(node.value))
    return None


def test_isort_key_orders_as_ruff_does():
    names = ["tool", "F1", "Callback", "ACTIVE_CALL_ID", "x10", "__version__", "x2", "COPRO", "Code"]
    expected = ["ACTIVE_CALL_ID", "COPRO", "F1", "Callback", "Code", "__version__", "tool", "x2", "x10"]
    assert sorted(names, key=_isort_key) == expected


def test_every_package_declares_a_sorted_all():
    """Each package says what it exports, in one order (ruff's RUF022 keeps it so; this names what is off)."""
    missing, unsorted = [], []
    for path in sorted(ROOT.rglob("*.py")):
        where = path.relative_to(ROOT).as_posix()
        if "migrations" in path.parts or (path.name.startswith("_") and path.name != "__init__.py"):
            continue  # private modules, and Alembic's migration scripts
        names = _declared_all(path)
        if names is None:
            if path.name == "__init__.py" or where in PUBLIC_MODULES:
                missing.append(where)
        elif names != sorted(names, key=_isort_key):
            unsorted.append(where)
    assert missing == []
    assert unsorted == []
    assert em.__all__ == sorted(em.__all__, key=_isort_key)
