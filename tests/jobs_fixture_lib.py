"""A program and an LM that the job tests' worker subprocesses import (tests/ is on their PYTHONPATH)."""

from __future__ import annotations

import os
import re
import time

import elixirml as em


class Doubler(em.Program):
    """Doubles a number; answers right only with style='careful'."""

    style = em.Variable.choice(["sloppy", "careful"], default="sloppy")

    def __init__(self):
        super().__init__()
        self.solve = em.Predict("question -> answer")

    def forward(self, question):
        return self.solve(question=f"{question} ({self.style})")


def rows(n=6, offset=0):
    return [{"question": f"item {i}", "answer": str(2 * i)} for i in range(offset, offset + n)]


def make_lm():
    """The LM of every job worker: right iff the request says 'careful'; JOBS_TEST_LM_DELAY slows each call."""
    delay = float(os.environ.get("JOBS_TEST_LM_DELAY", "0"))
    calls_file = os.environ.get("JOBS_TEST_CALLS_FILE")

    def answer(messages, settings):
        system, user = messages[0]["content"], messages[-1]["content"]
        if "Summarize what these examples" in system:
            return {"summary": "Questions asking to double a number."}
        if "Propose a better instruction" in system:
            return {"proposed_instruction": "Double the number in the question."}
        if delay:
            time.sleep(delay)
        number = int(re.search(r"item (\d+)", user).group(1))
        if calls_file:
            with open(calls_file, "a") as f:
                f.write(f"item {number}\n")
        return {"answer": str(2 * number if "careful" in user else 2 * number + 1)}

    return em.FunctionLM(answer, cache=False)


def crashing_lm():
    """An LM factory that crashes the worker (not a user mistake: the supervisor restarts it)."""
    raise RuntimeError("the GPU fell off the bus")


class WorkerCrash(BaseException):
    """Takes a whole evaluation down (not an example's error): what a crashing worker looks like."""


class CrashOnce(Doubler):
    """A careful Doubler that crashes its worker the first time it sees 'item 3' (JOBS_TEST_CRASH_MARKER)."""

    def forward(self, question):
        marker = os.environ.get("JOBS_TEST_CRASH_MARKER")
        if question == "item 3" and marker and not os.path.exists(marker):
            open(marker, "w").close()
            raise WorkerCrash("crashed on item 3")
        return super().forward(question)


def proposer_lm():
    """A named job LM (JobManager(lms={"proposer": ...})): proposes the careful instruction; counts its calls."""
    calls_file = os.environ.get("JOBS_TEST_PROPOSER_FILE")

    def answer(messages, settings):
        if calls_file:
            with open(calls_file, "a") as f:
                f.write("proposed\n")
        if "Summarize what these examples" in messages[0]["content"]:
            return {"summary": "Questions asking to double a number."}
        return {"proposed_instruction": "Double the number in the question, carefully."}

    return em.FunctionLM(answer, cache=False)
