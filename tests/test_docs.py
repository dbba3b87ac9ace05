"""Every Python code block in README.md and docs/*.md runs.

Each block runs as a script (``__main__``) in a temporary folder, after the blocks before it on
the same page (a page's blocks build on each other), from a file in which every block line
keeps its line number in the Markdown file, so a traceback points at the page. Names that a
page's fragments take as given (``program``, ``devset``, ``metric``, ...) come from
``PAGE_GIVENS`` below, and ``em.LM("local")`` answers from a test double (``DocLM``) instead of
loading the embedded model. A block that needs what the suite does not have (a real provider,
a cluster, a server it cannot start) is marked in the page, on the line before its fence::

    <!-- docs-test: skip needs an OpenAI API key -->

and is reported as skipped with that reason.
"""

from __future__ import annotations

import json
import re
import runpy
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest

import elixirml as em
from elixirml.extensions import Extension

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(\s*)```(\w*)\s*$")
SKIP = re.compile(r"^\s*<!--\s*docs-test:\s*skip\s+(.+?)\s*-->\s*$")
SETUP = re.compile(r"^\s*<!--\s*docs-test:\s*setup\s+(.+?)\s*-->\s*$")


@dataclass
class Block:
    page: Path
    line: int  # the fence's line, 1-based
    indent: str
    body: list[str]
    skip: str | None
    setup: str | None  # one line of code run first, in place of what the page says was done

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks_of(page: Path) -> list[Block]:
    lines = page.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if re.match(r"^\s*```\s*$", lines[j]))
        if match.group(2) == "python":
            mark = SKIP.match(lines[i - 1]) if i else None
            setup = SETUP.match(lines[i - 1]) if i else None
            found.append(
                Block(
                    page,
                    i + 1,
                    match.group(1),
                    lines[i + 1 : end],
                    mark.group(1) if mark else None,
                    setup.group(1) if setup else None,
                )
            )
        i = end + 1
    return found


BLOCKS = [block for page in PAGES for block in blocks_of(page)]


# ---------------------------------------------------------------- the LM the pages' em.LM("local") gets
_OUTPUTS = re.compile(r"Your output fields are:\n((?:\d+\. `\w+`.*\n?)+)")
_FIELD = re.compile(r"\d+\. `(\w+)` \((.+?)\)")


def _value(name: str, kind: str) -> Any:
    if "Literal[" in kind:
        options = re.findall(r"'([^']*)'", kind)
        return "finish" if "finish" in options else options[0]
    if kind.startswith(("float", "number")) or name in ("confidence", "score"):
        return 0.9
    if kind.startswith(("int", "integer")):
        return 4
    if kind.startswith(("bool", "boolean")):
        return True
    if kind.startswith(("list", "array")):
        return ["Paris"]
    if kind.startswith(("dict", "object")):
        return {}
    if kind.startswith("ToolCalls"):
        return {"tool_calls": [{"name": "search", "args": {"query": "weather in Paris"}}]}
    if kind.startswith("Code"):
        return "SELECT * FROM customers WHERE city = 'Paris'"
    return "Paris"


def doc_answer(messages: list[dict[str, Any]], settings: dict[str, Any]) -> Any:
    """Any signature's outputs, by field type: text 'Paris', numbers 0.9 / 4, a Literal's first option."""
    schema = (settings.get("response_format") or {}).get("json_schema", {}).get("schema")
    if schema:
        props = schema.get("properties", {})
        return {
            name: (
                _value(name, "Literal['" + "', '".join(spec["enum"]) + "']")
                if "enum" in spec
                else _value(name, str(spec.get("type", "string")))
            )
            for name, spec in props.items()
        }
    system = str(messages[0].get("content", "")) if messages else ""
    match = _OUTPUTS.search(system)
    if match:
        return {name: _value(name, kind) for name, kind in _FIELD.findall(match.group(1))}
    fields = re.findall(r"^(\w+): \.\.\.$", system, re.MULTILINE)  # the plain format's "Answer with:"
    return "\n".join(f"{name}: {json.dumps(_value(name, 'str')).strip(chr(34))}" for name in fields) or "Paris"


class DocLM(em.FunctionLM):
    """What ``em.LM("local", ...)`` builds in a page: :func:`doc_answer` answers, no model is loaded."""

    def __init__(self, model: str = "local", **kwargs: Any) -> None:
        for local_only in ("model_path", "n_threads", "n_ctx", "n_gpu_layers", "seed"):
            kwargs.pop(local_only, None)
        super().__init__(doc_answer, model=model, supports_json_schema=True, **kwargs)


# ---------------------------------------------------------------- what the pages' fragments take as given
def _qa_examples() -> list[em.Example]:
    rows = [("Capital of France?", "Paris"), ("Where is the Eiffel Tower?", "Paris"), ("Capital city?", "Paris")]
    return [em.Example(question=q, answer=a).with_inputs("question") for q, a in rows]


def _givens() -> dict[str, Any]:
    train = _qa_examples()
    return {
        "program": em.ChainOfThought("question -> answer"),
        "qa": em.ChainOfThought("question -> answer"),
        "devset": train,
        "train": train,
        "trainset": train,
        "val": train,
        "metric": em.metrics.exact_match,
        "my_metric": em.metrics.exact_match,
        "inputs": [{"question": " Capital of France? "}, {"question": "Where is the Eiffel Tower?"}],
    }


def _compare_givens() -> dict[str, Any]:
    with em.context(lm=DocLM()):
        a = em.evaluate(em.Predict("question -> answer"), _qa_examples(), em.metrics.exact_match)
        b = em.evaluate(em.ChainOfThought("question -> answer"), _qa_examples(), em.metrics.exact_match)
    return {"result_a": a, "result_b": b}


class _Sentiment(em.Signature):
    """Classify the sentiment of the sentence."""

    sentence: str = em.InputField()
    sentiment: Literal["positive", "negative"] = em.OutputField()


class _RAG(em.Module):
    """The program docs/dspy.md loads a DSPy file into: one ChainOfThought, ``answer``."""

    def __init__(self) -> None:
        self.answer = em.ChainOfThought("context, question -> answer")

    def forward(self, context: str, question: str) -> em.Prediction:
        return self.answer(context=context, question=question)


def _dspy_givens() -> dict[str, Any]:
    """A file as ``dspy.Module.save`` writes it for ``_RAG`` (DSPy names the inner predictor ``.predict``)."""
    fields = [{"prefix": f"{n.title()}:", "description": "${" + n + "}"} for n in ("context", "question", "reasoning")]
    saved = {
        "answer.predict": {
            "traces": [],
            "train": [],
            "demos": [{"augmented": True, "context": "c", "question": "q", "reasoning": "r", "answer": "a"}],
            "signature": {"instructions": "Answer from the context.", "fields": [*fields, {"prefix": "Answer:"}]},
            "lm": None,
        },
        "metadata": {"dependency_versions": {"python": "3.11", "dspy": "3.4.1", "cloudpickle": "3.1"}},
    }
    Path("dspy_optimized.json").write_text(json.dumps(saved), encoding="utf-8")
    return {"RAG": _RAG}


PAGE_GIVENS: dict[str, Any] = {
    "docs/dspy.md": _dspy_givens,
    "docs/modules.md": lambda: {"Sentiment": _Sentiment},
    "docs/evaluation.md": _compare_givens,
    "docs/optimizers.md": lambda: {
        "program_a": em.Predict("question -> answer"),
        "program_b": em.ChainOfThought("question -> answer"),
        "program_c": em.Predict("question -> answer"),
        "my_embedder": em.Embedder(lambda texts: [[float(len(t)), float(t.count("a"))] for t in texts]),
    },
}


@pytest.fixture
def local_is_a_double():
    """``em.LM("local")`` in a page builds a :class:`DocLM`; after the block, the real provider is back
    and what the block registered is gone."""
    before = {kind: set(em.extensions.names(kind)) for kind in em.extensions.KINDS}
    real = em.extensions.get("lms", "local")
    em.extensions.register("lms", Extension("local", em.__version__, provides=DocLM), replace=True)
    try:
        yield
    finally:
        em.extensions.register("lms", Extension("local", em.__version__, provides=real), replace=True)
        for kind, names in before.items():
            for name in set(em.extensions.names(kind)) - names:
                em.extensions.unregister(kind, name)


def _script(block: Block) -> str:
    """The page's blocks up to ``block`` (those not skipped), each at its own line numbers."""
    lines = [""] * (block.line + len(block.body))
    for earlier in blocks_of(block.page):
        if earlier.line > block.line:
            break
        if earlier.skip is None or earlier is block:
            if earlier.setup is not None:
                lines[earlier.line - 2] = earlier.setup  # on the marker's own line
            for k, code in enumerate(textwrap.dedent("\n".join(earlier.body)).splitlines()):
                lines[earlier.line + k] = code  # body line k is line (fence + 1 + k), index fence + k
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_doc_block_runs(block: Block, tmp_path, monkeypatch, local_is_a_double):
    if block.skip is not None:
        pytest.skip(f"{block.id}: {block.skip}")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ELIXIRML_STORE", f"sqlite:///{tmp_path / 'store.db'}")
    script = tmp_path / (block.page.name + ".py")
    script.write_text(_script(block), encoding="utf-8")
    givens = {"em": em, **_givens()}
    extra = PAGE_GIVENS.get(str(block.page.relative_to(ROOT)))
    if extra is not None:
        givens.update(extra())
    em.configure(lm=DocLM())
    runpy.run_path(str(script), init_globals=givens, run_name="__main__")


def test_the_block_finder_sees_every_python_block():
    text = "\n".join(p.read_text(encoding="utf-8") for p in PAGES)
    assert len(BLOCKS) == len(re.findall(r"^\s*```python\s*$", text, re.MULTILINE)) > 40
    skipped = [b for b in BLOCKS if b.skip is not None]
    assert all(len(b.skip or "") > 10 for b in skipped)  # a reason, not a bare mark
