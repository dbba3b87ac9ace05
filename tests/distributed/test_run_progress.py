"""em.distributed.run shows its progress where stderr is not a terminal (no Ray needed here)."""

from __future__ import annotations

import pytest

import elixirml as em
from _dist_programs import Echo, upper
from elixirml.runtime import ProgramSpec


class InProcess:
    """An executor that runs each item here, in finishing order (what the Ray executor promises)."""

    def __init__(self, program):
        self.program = program

    async def stream(self, program: ProgramSpec, work, items, *, concurrency):
        assert program.class_path.endswith(":Echo")
        for index, item in reversed(items):  # finishing order is not input order
            yield index, await work(self.program, index, item)


def _rows(n):
    return [em.Example(question=f"question {i}").with_inputs("question") for i in range(n)]


@pytest.mark.parametrize("executor", ["local", "in-process"])
def test_a_distributed_run_prints_its_count_progress_and_end_without_a_terminal(executor, capsys):
    em.configure(lm=em.FunctionLM(upper))
    program = Echo()
    runner = "local" if executor == "local" else InProcess(program)
    predictions = em.distributed.run(program, _rows(20), executor=runner, concurrency=2)
    assert [p.answer for p in predictions] == [f"QUESTION {i}" for i in range(20)]
    err = capsys.readouterr().err.splitlines()
    where = "here" if executor == "local" else "on InProcess"
    assert err[0] == f"distributed run: 20 examples to run {where}"
    lines = [line for line in err if "/20 examples" in line]
    assert 5 <= len(lines) <= 10 and lines[-1].startswith("distributed run: 20/20 examples (100%)")
    assert err[-1].startswith("distributed run: done in") and err[-1].endswith(": 20 of 20 examples")


def test_a_failed_distributed_run_says_how_far_it_got(capsys):
    def failing_late(messages, settings):
        if "question 3" in messages[-1]["content"]:
            raise ValueError("no answer for question 3")
        return upper(messages, settings)

    em.configure(lm=em.FunctionLM(failing_late))
    with pytest.raises(Exception, match="question 3"):
        em.distributed.run(Echo(), _rows(6), executor="local", concurrency=1)
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith("distributed run: stopped in") and last.endswith(": 3 of 6 examples")


def test_display_progress_false_prints_nothing(capsys):
    em.configure(lm=em.FunctionLM(upper))
    em.distributed.run(Echo(), _rows(3), executor="local", display_progress=False)
    assert capsys.readouterr().err == ""
