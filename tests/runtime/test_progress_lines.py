"""Long work prints progress lines when stderr is not a terminal: its projection, lines, its end."""

import io

import elixirml as em
from elixirml.runtime import ProgressDisplay, ProgressLines


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_lines_come_at_most_every_ten_percent_or_thirty_seconds():
    out, clock = io.StringIO(), Clock()
    lines = ProgressLines("work", 100, unit="rows", stream=out, clock=clock)
    printed = [lines.update(done) for done in range(1, 101)]
    assert sum(printed) == 10  # one per 10 rows, not one per row
    assert "work: 10/100 rows (10%) after 0s" in out.getvalue()
    clock.now = 10.0
    assert not lines.update(100)  # nothing new and not 30 s since the last line
    clock.now = 45.0
    assert lines.update(100)  # 30 s passed: a line even without progress
    slow = ProgressLines("slow", None, stream=io.StringIO(), clock=clock)
    assert not slow.update(5)
    clock.now += 31
    assert slow.update(6)  # unknown total: every 30 s


def rows(n):
    return [em.Example(question=f"item {i}", answer=str(2 * i)).with_inputs("question") for i in range(n)]


def doubling_lm():
    def answer(messages, settings):
        import re

        i = int(re.search(r"item (\d+)", messages[-1]["content"]).group(1))
        return {"answer": str(2 * i)}

    return em.FunctionLM(answer)


def test_evaluate_prints_its_count_progress_and_end_without_a_terminal(capsys):
    em.configure(lm=doubling_lm())
    em.evaluate(em.Predict("question -> answer"), rows(20), em.metrics.exact_match, concurrency=1)
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "evaluate: 20 examples to run"
    progress = [line for line in err if "/20 examples" in line]
    assert 5 <= len(progress) <= 10 and "score 100.0%" in progress[-1]
    assert err[-1].startswith("evaluate: done in") and "20 examples; score 100.0%" in err[-1]
    em.evaluate(em.Predict("question -> answer"), rows(5), em.metrics.exact_match, display_progress=False)
    assert capsys.readouterr().err == ""


def test_optimizer_prints_its_projection_and_end_without_a_terminal(capsys):
    em.configure(lm=doubling_lm())
    optimizer = em.optimizers.BootstrapFewShot(em.metrics.exact_match, max_bootstrapped_demos=2)
    optimizer.compile(em.Predict("question -> answer"), trainset=rows(8))
    err = capsys.readouterr().err
    assert "BootstrapFewShot: projected" in err and "LM calls" in err
    assert "BootstrapFewShot: done in" in err.splitlines()[-1]
    optimizer = em.optimizers.BootstrapFewShot(em.metrics.exact_match, display_progress=False)
    optimizer.compile(em.Predict("question -> answer"), trainset=rows(4))
    assert "BootstrapFewShot" not in capsys.readouterr().err


def test_one_progress_display_is_lines_a_bar_or_nothing(capsys):
    plain = ProgressDisplay("work", None, unit="rows")
    assert plain.plain  # stderr is not a terminal under capsys
    plain.set_total(10)  # known later (an optimizer's projection): the lines count against it
    plain.note("work: 10 rows to run")
    for done in range(1, 11):
        plain.update(done, "fine")
    plain.close()
    err = capsys.readouterr().err
    assert err.startswith("work: 10 rows to run\n") and "work: 10/10 rows (100%) after 0s; fine" in err
    silent = ProgressDisplay("quiet", False, total=10)
    silent.note("not shown")
    silent.update(5, "not shown")
    silent.close()
    assert capsys.readouterr() == ("", "")
    for total in (4, None):  # a bar counting to a known total, else a spinner
        bar = ProgressDisplay("bar", True, total=total, label="barring")
        assert not bar.plain
        bar.update(4, "all good")
        bar.close()
        bar.close()  # closing twice is harmless
        shown = capsys.readouterr()
        assert "barring" in shown.out and "all good" in shown.out and shown.err == ""
        assert ("4/4" in shown.out) is (total == 4)


def test_mipro_prints_its_projection_before_its_first_lm_call(monkeypatch):
    err = io.StringIO()  # not a terminal
    monkeypatch.setattr("sys.stderr", err)
    seen_at_first_call = []
    answer = doubling_lm().fn

    def first_watching(messages, settings):
        if not seen_at_first_call:
            seen_at_first_call.append(err.getvalue())
        system = messages[0]["content"]
        if "Summarize what these examples" in system:
            return {"summary": "Numbers and their doubles."}
        if "Propose a better instruction" in system:
            return {"proposed_instruction": "Answer with twice the item's number."}
        return answer(messages, settings)

    em.configure(lm=em.FunctionLM(first_watching))
    optimizer = em.optimizers.MIPRO(em.metrics.exact_match, num_trials=2, num_candidates=3)
    optimizer.compile(em.Predict("question -> answer"), trainset=rows(8), valset=rows(6))
    assert seen_at_first_call, "MIPRO made no LM call"
    assert "MIPRO: projected" in seen_at_first_call[0]  # before the baseline, bootstrapping and proposals
    assert "MIPRO: done in" in err.getvalue().splitlines()[-1]
