"""Runs DSPy's own tests against ``elixirml.dspy``: the one change made to DSPy's files.

This file takes the place of DSPy's ``tests/conftest.py``. It

* maps ``import dspy`` (and every ``dspy.<sub>``) onto ``elixirml.dspy``, and ``tests.<sub>``
  (DSPy's test package) onto this folder, so the vendored files run unmodified;
* resets elixirml's settings (and the history, caches and usage of the shim) before each test,
  as DSPy's ``clear_settings`` fixture does for DSPy;
* keeps DSPy's opt-in markers (``reliability``, ``extra``, ``llm_call``, ``deno``) and the
  ``lm_for_test`` fixture, which skips without ``LM_FOR_TEST``;
* marks expected failures listed in ``xfail.tsv`` (tests DSPy itself fails, or that check DSPy's
  internals), and, with ``DSPY_CONFORMANCE_REPORT=path``, writes each test's outcome there.

Each file runs in its own process (``run.py``), as DSPy's README asks.
"""

from __future__ import annotations

import gc
import importlib
import importlib.abc
import importlib.machinery
import json
import os
import sys
import tempfile
import types
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

HERE = Path(__file__).resolve().parent
_SANDBOX = tempfile.mkdtemp(prefix="elixirml-dspy-conformance-")
os.environ["HOME"] = _SANDBOX
os.environ["XDG_CACHE_HOME"] = os.path.join(_SANDBOX, "cache")
os.environ["ELIXIRML_CACHE_DIR"] = os.path.join(_SANDBOX, "elixirml-cache")
os.environ["ELIXIRML_STORE"] = "sqlite:///" + os.path.join(_SANDBOX, "store.db")
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

SKIP_DEFAULT_FLAGS = ["reliability", "extra", "llm_call", "deno"]


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return importlib.import_module(self.target)

    def exec_module(self, module: types.ModuleType) -> None:
        pass


class _AliasFinder(importlib.abc.MetaPathFinder):
    """``dspy.x`` is ``elixirml.dspy.x`` (the same module object), ``tests.x`` is ``dspy_conformance.x``."""

    PREFIXES: ClassVar[dict[str, str]] = {"dspy": "elixirml.dspy", "tests": __package__ or "dspy_conformance"}

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        head, _, rest = fullname.partition(".")
        if head not in self.PREFIXES:
            return None
        real = self.PREFIXES[head] + ("." + rest if rest else "")
        if importlib.util.find_spec(real) is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(real), is_package=True)


sys.meta_path.insert(0, _AliasFinder())

import elixirml.dspy  # noqa: E402
import elixirml.settings as _settings  # noqa: E402

from . import run  # noqa: E402


@pytest.fixture(autouse=True)
def clear_settings() -> Iterator[None]:
    """Fresh elixirml settings and DSPy-shim state for each test (DSPy's ``clear_settings``)."""
    saved = _settings._DEFAULT.value
    _settings._DEFAULT.value = _settings.Settings()
    elixirml.dspy.reset_for_tests()
    try:
        yield
    finally:
        _settings._DEFAULT.value = saved
        elixirml.dspy.reset_for_tests()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def lm_for_test() -> str:
    model = os.environ.get("LM_FOR_TEST", None)
    if model is None:
        pytest.skip("LM_FOR_TEST is not set in the environment variables")
    return model


def pytest_addoption(parser: Any) -> None:
    for flag in SKIP_DEFAULT_FLAGS:
        parser.addoption(f"--{flag}", action="store_true", default=False, help=f"run {flag} tests")


def pytest_configure(config: Any) -> None:
    for flag in SKIP_DEFAULT_FLAGS:
        config.addinivalue_line("markers", flag)


def _test_id(item: Any) -> str:
    return "tests/" + item.nodeid


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    for flag in SKIP_DEFAULT_FLAGS:
        if config.getoption(f"--{flag}"):
            continue
        skip_mark = pytest.mark.skip(reason=f"need --{flag} option to run")
        for item in items:
            if flag in item.keywords:
                item.add_marker(skip_mark)
    xfails = run.xfails()
    for item in items:
        reason = xfails.get(_test_id(item))
        if reason is not None:
            item.add_marker(pytest.mark.xfail(reason=reason, strict=False))


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: Any, call: Any) -> Iterator[None]:
    """Collect garbage before a failure is formatted.

    A test that fails leaves garbage behind (LiteLLM's coroutines that were never awaited, for
    one); when the collector happens to run inside pytest's ``ast`` parsing of the failing
    source, their finalizers' warnings break CPython 3.11's AST constructor ("recursion depth
    mismatch", an INTERNALERROR that ends the file's run). Collecting here runs them first.
    """
    if call.excinfo is not None:
        gc.collect()
    yield


def pytest_runtest_logreport(report: Any) -> None:
    path = os.environ.get("DSPY_CONFORMANCE_REPORT")
    if not path:
        return
    outcome = None
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        outcome = "xfailed" if hasattr(report, "wasxfail") and report.outcome == "skipped" else report.outcome
        if hasattr(report, "wasxfail") and report.outcome == "passed":
            outcome = "passed"
    elif report.when == "teardown" and report.outcome == "failed":
        outcome = "failed"
    if outcome is not None:
        with open(path, "a") as fh:
            fh.write(json.dumps({"test": "tests/" + report.nodeid, "outcome": outcome}) + "\n")
