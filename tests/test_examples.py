"""The examples run on test doubles: the seed's QA program whole, and RAG on its bundled data."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import elixirml as em

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def qa_program():
    yield _load("qa_program")
    sys.modules.pop("qa_program", None)


CITIES = ("Paris", "Rome", "London", "Japan", "Vienna")


class Reader:
    """Answers QA from the last prompt's context; as a ReAct agent, looks the place up, then finishes."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    def __call__(self, messages: list[dict[str, Any]], settings: dict[str, Any]) -> dict[str, Any]:
        system, user = str(messages[0]["content"]), str(messages[-1]["content"])
        self.requests.append({"system": system, "user": user, "settings": settings})
        if "next_tool_name" in system:
            if "(no steps yet)" in user:
                step = {"next_thought": "Look it up.", "next_tool_name": "lookup"}
                return {**step, "next_tool_args": {"term": "Big Ben"}}
            return {"next_thought": "Enough.", "next_tool_name": "finish", "next_tool_args": {}}
        found = [city for city in CITIES if city in user.rsplit("[[ ## context ## ]]", 1)[-1]]
        answer = {"answer": f" {found[0] if found else 'unknown'}.", "confidence": 0.9}
        return {"reasoning": "The context says so.", **answer} if "reasoning" in system else answer


def test_the_seeds_qa_program_runs_each_strategy_optimizes_and_runs_distributed(qa_program, capsys):
    reader = Reader()
    best = qa_program.main(em.FunctionLM(reader, supports_json_schema=True), budget=200)
    out = capsys.readouterr().out
    # the stages: preprocess tidied the question, postprocess trimmed the answer
    assert "Prediction({'answer': 'Paris', 'confidence': 0.9})" in out
    assert "Where is the Eiffel Tower?" in reader.requests[0]["user"]  # asked without its question mark
    for name in ("temperature: float = 0.7", "reasoning_strategy: module = cot  {direct, cot, react}", "adapter"):
        assert name in out
    assert "direct: Predict -> 'London' (0.9)" in out and "cot: ChainOfThought -> 'London' (0.9)" in out
    assert "react: ReAct -> 'London' (0.9)" in out and "original still ChainOfThought json 0.7" in out
    # the react variant called its tool: the encyclopedia's entry reached the next prompt
    assert any("great bell of the clock tower" in r["user"] for r in reader.requests)
    # the adapter variable reached the requests of every strategy: the default asks for JSON, the variants not
    assert reader.requests[0]["settings"].get("response_format")
    react_steps = [r for r in reader.requests if "next_tool_name" in r["system"]]
    assert any(not r["settings"].get("response_format") for r in react_steps)
    assert any(not r["settings"].get("response_format") for r in reader.requests if r not in react_steps)
    assert isinstance(best, qa_program.QAProgram) and "best configuration:" in out
    for question, answer in (("Where is the Louvre?", "Paris"), ("Name a city on the Danube.", "Vienna")):
        assert f"{question} -> {answer!r}" in out


def test_the_seeds_qa_program_is_importable_without_running(qa_program, capsys):
    program = qa_program.QAProgram()  # `elixirml run examples/qa_program.py:QAProgram` builds it so
    assert capsys.readouterr().out == ""
    assert set(program.variable_space()) >= {"temperature", "reasoning_strategy", "adapter"}
    agent = program.with_variables(reasoning_strategy="react")
    assert type(agent.predict) is em.ReAct
    # the program's adapter variable owns the format: no predictor's implicit one competes with it
    for space in (program.variable_space(), agent.variable_space()):
        assert [name for name in space if name.endswith("adapter")] == ["adapter"]


def test_the_bundled_squad_article_loads_without_a_path():
    passages, questions = em.data.squad()
    assert len(passages) == 55 and len(questions) == 269
    assert passages[0]["id"] == "University_of_Notre_Dame-0" and questions.name == "squad-notre-dame"
    assert all(q.passage_id.startswith("University_of_Notre_Dame-") for q in questions.to_list()[:10])


def test_the_rag_example_reads_the_bundled_data(capsys):
    rag = _load("rag")
    try:

        def reader(messages, settings):  # answers with the first words of the passages it was given
            context = str(messages[-1]["content"]).split("[[ ## context ## ]]", 1)[-1].split()
            return {"reasoning": "From the passages.", "answer": " ".join(context[:3])}

        rag.main(["--questions", "2"], lm=em.FunctionLM(reader))
    finally:
        sys.modules.pop("rag", None)
    out = capsys.readouterr().out
    assert out.count("Q: ") == 2 and out.count("retrieved ['University_of_Notre_Dame-") == 2
    assert "retrieve.k: int = 3" in out
