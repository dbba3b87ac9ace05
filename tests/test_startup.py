"""`import elixirml` loads what defining a program needs; the rest loads on first use (issue 32, start-up).

Times are measured by bench/overhead.py; these tests pin which modules the import leaves unloaded.
"""

from __future__ import annotations

import json
import subprocess
import sys

DEFERRED = (
    "elixirml.store",
    "elixirml.optimizers",
    "elixirml.evaluation",
    "elixirml.data",
    "elixirml.serve",
    "elixirml.distributed",
    "elixirml.runtime._supervisor",
    "elixirml.runtime._telemetry",
    "elixirml.retrievers._bm25",
    "elixirml.retrievers._pgvector",
    "elixirml.schema._media",  # the rich types are Pydantic models: none is built by the import
    "elixirml.lm._cache",
    "elixirml.lm._embed",
    "elixirml.lm._litellm",
    "elixirml.lm._openai",
    "elixirml.lm._testing",
    "pydantic.main",  # signatures build their models on first use
    "importlib.metadata",  # Pydantic's plugin lookup, run by the first model built
    "asyncio",  # the async core imports it on the first call
    "concurrent.futures",
    "logging",
    "tempfile",
    "sqlalchemy",
    "sqlite3",
    "aiohttp",
)


def _loaded_after(code: str) -> list[str]:
    probe = f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_import_loads_no_deferred_package() -> None:
    loaded = _loaded_after("import elixirml")
    assert [name for name in DEFERRED if name in loaded] == []


def test_deferred_names_load_on_first_use() -> None:
    import elixirml as em

    assert em.Store.__name__ == "Store"
    assert em.MIPROv2 is em.optimizers.MIPROv2
    assert callable(em.evaluate)  # the function, not the package of that name
    assert em.Dataset.__name__ == "Dataset"
    assert em.runtime.Supervisor.__name__ == "Supervisor"
    assert em.retrievers.BM25.__name__ == "BM25"
    assert [em.Image.__name__, em.History.__name__, em.ToolCalls.__name__, em.Code.__name__] == [
        "Image",
        "History",
        "ToolCalls",
        "Code",
    ]
    import elixirml.testing

    assert em.DummyLM is elixirml.testing.DummyLM and em.FunctionLM is elixirml.testing.FunctionLM
    assert em.Embedder.__name__ == "Embedder"
    assert set(em.__all__) <= set(dir(em))


def test_evaluate_stays_the_function_after_the_package_loads() -> None:
    code = "import elixirml as em, elixirml.evaluation, elixirml.optimizers\nassert callable(em.evaluate)"
    loaded = _loaded_after(code)
    assert "elixirml.optimizers" in loaded


def test_evaluate_names_one_thing() -> None:
    """`em.evaluate` is the function; the package is `elixirml.evaluation` (no name shadows another)."""
    import importlib

    import pytest

    import elixirml as em

    assert callable(em.evaluate)
    assert em.evaluate is importlib.import_module("elixirml.evaluation").evaluate
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("elixirml.evaluate")


def test_unknown_name_is_an_attribute_error() -> None:
    import pytest

    import elixirml as em

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        em.nope  # noqa: B018


def test_a_fresh_interpreter_defines_and_calls_a_program() -> None:
    """What the import leaves out loads on the first call (sync and async), in a process that had none of it."""
    code = """
import elixirml as em

class QA(em.Signature):
    question: str = em.InputField()
    answer: str = em.OutputField()

program = em.ChainOfThought(QA)
lm = em.DummyLM([{"reasoning": "r", "answer": "Paris"}, {"reasoning": "r", "answer": "Rome"}])
with em.context(lm=lm):
    assert program(question="France?").answer == "Paris"
    import asyncio
    assert asyncio.run(program.acall(question="Italy?")).answer == "Rome"
assert em.Signature("photo: Image, question -> answer").input_fields["photo"].annotation is em.Image
"""
    loaded = _loaded_after(code)
    assert "asyncio" in loaded and "elixirml.lm._testing" in loaded
