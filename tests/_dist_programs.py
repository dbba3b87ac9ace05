"""Programs and LM functions the distributed tests run on Ray workers (importable there: the
test cluster puts this folder on the workers' PYTHONPATH)."""

from __future__ import annotations

import os
import signal
import tempfile
import time
from typing import Any

import elixirml as em
from elixirml.lm._testing import input_field_values


class Echo(em.Program):
    """Answers with the question in capitals (the LM function decides the answer)."""

    def __init__(self) -> None:
        super().__init__()
        self.answer = em.Predict("question -> answer")

    def forward(self, question: str) -> Any:
        return self.answer(question=question)


class EchoPipeline(em.Pipeline):
    """A pipeline subclass: workers rebuild it from its class."""

    def __init__(self) -> None:
        super().__init__(em.stage.predict("question -> answer"))


def _question(messages: list[dict[str, Any]]) -> str:
    return input_field_values(messages).get("question", "").split("\n\n")[0].strip()


def upper(messages: list[dict[str, Any]], settings: dict[str, Any]) -> dict[str, str]:
    """The answer is the question in capitals, except for questions ending in '?' (answered wrong)."""
    question = _question(messages)
    return {"answer": "WRONG" if question.endswith("?") else question.upper()}


def upper_killing_once(marker: str, messages: list[dict[str, Any]], settings: dict[str, Any]) -> dict[str, str]:
    """Like :func:`upper`, but the first worker to see 'kill me' SIGKILLs its own process (once)."""
    question = _question(messages)
    if question == "kill me":
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            pass
        else:
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            time.sleep(0.2)  # let the worker's other in-flight examples start
            os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.02)
    return upper(messages, settings)


def stamped(messages: list[dict[str, Any]], settings: dict[str, Any]) -> dict[str, str]:
    """Answers with the time the request reached the LM."""
    return {"answer": repr(time.time())}


def failing(messages: list[dict[str, Any]], settings: dict[str, Any]) -> dict[str, str]:
    """Every request fails as a provider error."""
    time.sleep(0.05)
    raise em.errors.ProviderError("the endpoint is down", retryable=False)


def exact(example: em.Example, prediction: Any, trace: Any = None) -> float:
    """1.0 when the answer equals the label."""
    return float(prediction.answer == example.answer)


def knows_instructions(messages: list[dict[str, Any]], settings: dict[str, Any]) -> dict[str, str]:
    """'yes' when the system prompt carries the instructions the test set on the program."""
    return {"answer": "yes" if "Shout the question back." in messages[0]["content"] else "no"}


class Tunable(em.Program):
    """A program with a temperature to search: :func:`cold_upper` answers right only when it is low."""

    temperature = em.Variable.float(default=1.0, low=0.0, high=2.0)

    def __init__(self) -> None:
        super().__init__()
        self.answer = em.Predict("question -> answer")

    def forward(self, question: str) -> Any:
        return self.answer(question=question, config={"temperature": self.temperature})


def cold_upper(log_dir: str, messages: list[dict[str, Any]], settings: dict[str, Any]) -> dict[str, str]:
    """The question in capitals when the temperature is below 0.5, else a wrong answer.

    Every call leaves a file named after the calling process in ``log_dir``, so a test counts
    the calls made in all processes (the driver's and the workers').
    """
    fd, _ = tempfile.mkstemp(prefix=f"{os.getpid()}-", dir=log_dir)
    os.write(fd, repr(time.time()).encode())
    os.close(fd)
    system = messages[0]["content"]
    if "Summarize what these examples" in system:
        return {"summary": "Questions to repeat in capitals."}
    if "Propose a better instruction" in system:
        return {"proposed_instruction": "Repeat the question in capitals."}
    time.sleep(0.01)
    question = _question(messages)
    return {"answer": question.upper() if float(settings.get("temperature", 1.0)) < 0.5 else "warm"}


def calls_by_process(log_dir: str) -> dict[int, int]:
    """How many :func:`cold_upper` calls each process made."""
    counts: dict[int, int] = {}
    for name in os.listdir(log_dir):
        pid = int(name.split("-")[0])
        counts[pid] = counts.get(pid, 0) + 1
    return counts


class TwoModels(em.Program):
    """A cheap model drafts, a strong one answers: each predictor carries its own LM, built in ``__init__``."""

    def __init__(self) -> None:
        super().__init__()
        # the servers' URLs are set in the driver's environment only: a worker knows them from the LMs' descriptions
        cheap_url = os.environ.get("TEST_CHEAP_LM_URL", "http://127.0.0.1:9/v1")
        strong_url = os.environ.get("TEST_STRONG_LM_URL", "http://127.0.0.1:9/v1")
        cheap = em.LM("openai/cheap", base_url=cheap_url, temperature=0.3, cache=False, api_key="sk-cheap-SECRET-1")
        strong = em.LM("openai/strong", base_url=strong_url, cache=False, max_tokens=77)
        self.draft = em.Predict("question -> answer", lm=cheap)
        self.final = em.Predict("question -> answer", lm=strong)

    def forward(self, question: str) -> Any:
        draft = self.draft(question=question).answer
        final = self.final(question=question).answer
        return em.Prediction(answer=f"{draft} | {final}")
