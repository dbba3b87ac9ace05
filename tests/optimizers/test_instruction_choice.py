"""A proposed instruction replaces the original only when it wins a paired comparison on the validation rows."""

from __future__ import annotations

import re

import pytest

import elixirml as em
from elixirml.optimizers import COPRO, GEPA, MIPRO, SIMBA
from elixirml.optimizers._choice import sign_test


def data(n, offset=0):
    return [
        em.Example(question=f"echo w{i}", answer=f"W{i}").with_inputs("question") for i in range(offset, offset + n)
    ]


def exact(example, prediction, trace=None):
    return float(prediction.answer == example.answer)


def word_of(user):
    return re.search(r"echo (w\d+)", user).group(1)


def task_answer(system, user):
    """Right on every row with 'capitals' in the instruction; with 'lucky', right on w0 only (a tie elsewhere)."""
    word = word_of(user)
    if "capitals" in system or ("lucky" in system and word == "w0"):
        return {"answer": word.upper()}
    return {"answer": word}


def test_the_sign_test_is_exact_and_one_sided():
    assert sign_test(0, 0) == 1.0
    assert sign_test(1, 0) == 0.5
    assert sign_test(4, 0) == 1 / 16
    assert sign_test(5, 0) == 1 / 32
    assert sign_test(5, 1) == pytest.approx(7 / 64)
    assert sign_test(0, 3) == 1.0


def copro_lm(proposal):
    def answer(messages, settings):
        system, user = messages[0]["content"], messages[-1]["content"]
        if "instruction optimizer" in system:
            return {"proposed_instruction": f"Echo the word in the question, {proposal} {settings.get('rollout_id')}."}
        return task_answer(system, user)

    return em.FunctionLM(answer)


def test_copro_keeps_the_original_when_a_proposal_wins_by_one_row():
    em.configure(lm=copro_lm("lucky"))
    program = em.Predict("question -> answer")
    copro = COPRO(exact, breadth=2, depth=0)
    compiled = copro.compile(program, trainset=data(6))
    result = copro.last_result
    # the lucky instruction scored highest (1 row of 6 better, 5 equal), yet that is noise
    assert max(t.score for t in result.trials) > result.trials[0].score
    assert compiled.signature.instructions == program.signature.instructions
    choice = result.details["instruction_choice"]
    assert choice["kept"] == "original" and (choice["wins"], choice["losses"], choice["ties"]) == (1, 0, 5)
    assert choice["p_value"] == 0.5 and "noise" in choice["reason"]
    assert result.best_score == result.trials[0].score == 0.0  # the score reported is the returned program's
    outcomes = {e["instruction"]: e for e in result.details["proposals"]}
    assert all(e["chosen"] is False for e in outcomes.values())
    lucky = [e for e in outcomes.values() if e["outcome"].startswith("in the best configuration")]
    assert len(lucky) == 1 and "noise" in lucky[0]["outcome"]
    assert all("outcome" in e for e in outcomes.values())


def test_copro_keeps_a_proposal_that_wins_on_enough_rows():
    em.configure(lm=copro_lm("in capitals"))
    copro = COPRO(exact, breadth=2, depth=0)
    compiled = copro.compile(em.Predict("question -> answer"), trainset=data(6))
    choice = copro.last_result.details["instruction_choice"]
    assert "capitals" in compiled.signature.instructions
    assert choice["kept"] == "proposed" and choice["wins"] == 6 and choice["p_value"] == pytest.approx(1 / 64, abs=1e-4)
    chosen = [e for e in copro.last_result.details["proposals"] if e["chosen"]]
    assert len(chosen) == 1 and chosen[0]["outcome"].startswith("chosen: better than the original on 6")


def test_mipro_does_not_present_a_lucky_proposal_as_its_result():
    pytest.importorskip("optuna")

    def answer(messages, settings):
        system, user = messages[0]["content"], messages[-1]["content"]
        if "Summarize what these examples" in system:
            return {"summary": "Questions that ask to echo a word."}
        if "Propose a better instruction" in system:
            return {"proposed_instruction": f"Echo the word of the question, lucky {settings.get('rollout_id')}."}
        return task_answer(system, user)

    em.configure(lm=em.FunctionLM(answer))
    program = em.Predict("question -> answer")
    mipro = MIPRO(exact, auto="light", num_trials=6, storage="sqlite:///:memory:", seed=0)
    compiled = mipro.compile(program, trainset=data(8), valset=data(8, offset=20))
    details = mipro.last_result.details
    assert compiled.signature.instructions == program.signature.instructions
    assert details["instruction_choice"]["kept"] == "original"
    assert all("chosen" in e and "outcome" in e for e in details["proposals"])


def test_simba_rules_go_through_the_same_comparison():
    def answer(messages, settings):
        system, user = messages[0]["content"], messages[-1]["content"]
        if "Write one short rule" in system:
            return {"rule": "Write the word of the answer, lucky."}
        cold = settings.get("temperature", 1.0) < 0.5
        word = word_of(user)
        return {"answer": word.upper()} if cold and word == "w0" else task_answer(system, user)

    em.configure(lm=em.FunctionLM(answer))
    program = em.Predict("question -> answer")
    simba = SIMBA(exact, bsize=4, num_candidates=3, max_steps=2, max_demos=0, seed=0)
    compiled = simba.compile(program, trainset=data(8), valset=data(6))
    choice = simba.last_result.details["instruction_choice"]
    assert "lucky" not in compiled.signature.instructions
    assert choice["kept"] == "original"


def test_gepa_drops_code_and_off_topic_reflections_before_they_cost_a_trial():
    pytest.importorskip("gepa")
    task_calls = []

    def answer(messages, settings):
        user = messages[-1]["content"]
        if len(messages) == 1 and "```" in user:  # gepa's reflection prompt
            return "```\ndef solve(question): return question.upper()\n```"
        task_calls.append(user)
        return task_answer(messages[0]["content"], user)

    lm = em.FunctionLM(answer)
    em.configure(lm=lm)
    gepa = GEPA(exact, max_metric_calls=30, reflection_lm=lm, seed=0)
    program = em.Predict("question -> answer")
    compiled = gepa.compile(program, trainset=data(4), valset=data(6, offset=10))
    result = gepa.last_result
    assert compiled.signature.instructions == program.signature.instructions
    proposals = result.details["proposals"]
    assert proposals and all(not e["kept"] and e["reason"] == "looks like code" for e in proposals)
    assert all(e["outcome"].startswith("dropped before any trial") for e in proposals)
    # every trial ran the original instruction: no evaluation was spent on code
    original = program.signature.instructions
    assert result.trials and all(t.configuration["instructions"] == original for t in result.trials)


class TryInstructions(em.optimizers.Optimizer):
    """The docs' own optimizer (docs/optimizers.md), proposing texts: it scores no baseline."""

    def __init__(self, metric, candidates, **budget):
        super().__init__(metric, **budget)
        self.candidates = list(candidates)

    def text_originals(self, state):
        return em.optimizers.instruction_originals(state.program)

    def initialize(self, state):
        state.search = list(self.candidates)
        for text in self.candidates:
            state.proposal_log.append({"predictor": "self", "instruction": text, "kept": True, "reason": "given"})

    def optimize_step(self, state):
        if not state.search:
            return False
        configuration = {"instructions": state.search.pop(0)}
        candidate = state.program.with_configuration(configuration)
        self.record_trial(state, configuration, self.evaluate(candidate, state.valset), candidate)
        return bool(state.search)  # done with the last candidate: the run ends without another budget check


def test_an_original_kept_unscored_does_not_report_the_proposals_score():
    em.configure(
        lm=em.FunctionLM(lambda messages, settings: task_answer(messages[0]["content"], messages[-1]["content"]))
    )
    program = em.Predict("question -> answer")
    optimizer = TryInstructions(exact, ["Echo it in capitals."], display_progress=False)
    # the budget pays for the one candidate, not for scoring the original afterwards
    compiled = optimizer.compile(program, trainset=data(6), max_lm_calls=6)
    result = optimizer.last_result
    assert result.trials[0].score == 100.0
    assert (
        result.details["instruction_choice"]["kept"] == "original"
        and "budget" in result.details["instruction_choice"]["reason"]
    )
    assert compiled.signature.instructions == program.signature.instructions
    assert result.best_configuration == {"instructions": program.signature.instructions}
    assert result.best_score == 0.0  # nothing scored the returned program: not the proposal's 100
    assert result.details["proposals"][0]["chosen"] is False
    assert result.optimizer == "TryInstructions"  # its class name: no `name = ...` needed


def test_a_budget_that_cuts_the_final_comparison_short_is_why_the_run_stopped():
    em.configure(
        lm=em.FunctionLM(lambda messages, settings: task_answer(messages[0]["content"], messages[-1]["content"]))
    )
    optimizer = TryInstructions(exact, ["Echo it in capitals."], display_progress=False)
    optimizer.compile(em.Predict("question -> answer"), trainset=data(6), max_lm_calls=9)
    result = optimizer.last_result
    # the search finished; scoring the original on the validation set ran out of LM calls half way
    assert [t.status for t in result.trials] == ["complete", "budget"]
    assert "budget" in result.details["instruction_choice"]["reason"]
    assert result.stopped == "max_lm_calls"
    store = em.Store()
    try:
        assert store.run(result.run_id)["status"] == "stopped"
    finally:
        store.close()
