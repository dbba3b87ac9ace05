import os
import re
import signal
import subprocess
import sys
import textwrap

import pytest

import elixirml as em
from elixirml.optimizers import MIPRO, BootstrapFewShot, LabeledFewShot, Optimizer, RandomSearch, VariableSearch

optuna = pytest.importorskip("optuna")


def trainset(n=12, offset=0):
    return [
        em.Example(question=f"item {i}", answer=str(2 * i)).with_inputs("question") for i in range(offset, offset + n)
    ]


class Task(em.Program):
    temperature = em.Variable.float(default=1.0, low=0.0, high=2.0)
    strategy = em.Variable.module({"direct": em.Predict, "cot": em.ChainOfThought}, default="direct")

    def __init__(self):
        super().__init__()
        self.solve = self.strategy("question -> answer")

    def forward(self, question):
        return self.solve(question=question, config={"temperature": self.temperature})


def conditions(messages, settings, demo_credit):
    system = messages[0]["content"]
    met = int(settings.get("temperature", 1.0) < 0.3) + int("`reasoning`" in system) + int("meticulously" in system)
    if demo_credit and any(m["role"] == "assistant" for m in messages):
        met += 1
    return met


def task_lm(counter=None, demo_credit=False, **kwargs):
    def answer(messages, settings):
        if counter is not None:
            counter.append(1)
        system, user = messages[0]["content"], messages[-1]["content"]
        if "Summarize what these examples" in system:
            return {"summary": "Questions asking to double a number."}
        if "Propose a better instruction" in system:
            if "Be concise" in user:
                return {"proposed_instruction": "Double the number meticulously."}
            return {"proposed_instruction": "Answer the question. " + user.split("[[ ## tip ## ]]")[-1].strip()[:40]}
        number = int(re.search(r"item (\d+)", user).group(1))
        met = conditions(messages, settings, demo_credit)
        right = number % 3 < met
        return {"reasoning": "double it", "answer": str(2 * number if right else 2 * number + 1)}

    return em.FunctionLM(answer, **kwargs)


metric = em.metrics.ExactMatch(field="answer")


def test_labeled_few_shot_sets_demos_without_lm_calls():
    calls = []
    em.configure(lm=task_lm(calls))
    program = Task()
    compiled = LabeledFewShot(k=3).compile(program, trainset=trainset())
    assert len(compiled.solve.demos) == 3 and program.solve.demos == []
    assert calls == []


def test_bootstrap_few_shot_uses_only_passing_traces():
    em.configure(lm=task_lm(demo_credit=False))
    program = Task().with_variables(temperature=0.1)  # met=1: items with i % 3 == 0 are right
    optimizer = BootstrapFewShot(metric, max_bootstrapped_demos=3, max_labeled_demos=5)
    compiled = optimizer.compile(program, trainset=trainset())
    demos = compiled.solve.demos
    assert [d.question for d in demos[:3]] == ["item 0", "item 3", "item 6"]  # bootstrapped: passing runs only
    assert len(demos) == 5  # filled up with labelled examples
    assert all(d.question not in ("item 0", "item 3", "item 6") for d in demos[3:])
    assert program.solve.demos == []  # the input is untouched


def test_bootstrap_skips_runs_that_fail_a_hard_assertion():
    class Guarded(Task):
        def forward(self, question):
            pred = super().forward(question)
            em.assert_output(question != "item 3", "item 3 is not allowed", retries=0)
            return pred

    em.configure(lm=task_lm())
    program = Guarded().with_variables(temperature=0.1)
    compiled = BootstrapFewShot(metric, max_bootstrapped_demos=3, max_labeled_demos=3).compile(
        program, trainset=trainset()
    )
    assert [d.question for d in compiled.solve.demos] == ["item 0", "item 6", "item 9"]


class Flaky(Task):
    def forward(self, question):
        if question in ("item 1", "item 2"):
            raise RuntimeError(f"teacher broke on {question}")
        return super().forward(question)


def test_bootstrap_max_errors_stops_on_the_teacher_failure_that_reaches_it_and_marks_the_result_compiled():
    def exact(example, prediction, trace=None):
        return example.answer == prediction.answer

    em.configure(lm=task_lm())
    program = Flaky().with_variables(temperature=0.1)
    optimizer = BootstrapFewShot(exact, max_bootstrapped_demos=2, max_labeled_demos=2, max_errors=2)
    assert optimizer.metric == exact and optimizer.metric != metric  # the wrapper is equal to the function
    with pytest.raises(RuntimeError, match="teacher broke on item 2"):  # the second failure
        optimizer.compile(program, trainset=trainset(4))
    tolerant = BootstrapFewShot(exact, max_bootstrapped_demos=2, max_labeled_demos=2)  # default: never stops
    compiled = tolerant.compile(program, trainset=trainset(4))
    assert [d.question for d in compiled.solve.demos][:1] == ["item 0"]
    assert compiled._compiled and not program._compiled
    holder = em.Module()
    holder.part, holder.fresh = compiled, Task()
    assert [name for name, _ in holder.named_parameters()] == ["fresh.solve"]  # DSPy skips a compiled part


def test_random_search_with_demos_beats_zero_shot():
    em.configure(lm=task_lm(demo_credit=True))
    optimizer = RandomSearch(
        metric, num_candidates=5, max_bootstrapped_demos=2, max_labeled_demos=2, search_variables=False
    )
    compiled = optimizer.compile(Task(), trainset=trainset(), valset=trainset(12, offset=20))
    result = optimizer.last_result
    zero_shot = result.trials[0].score
    assert zero_shot == 0.0 and result.best_score > zero_shot
    assert len(result.trials) == 5 and compiled.solve.demos


def test_random_search_restrict_tries_only_the_named_candidates():
    from elixirml.errors import OptionError

    em.configure(lm=task_lm(demo_credit=True))
    optimizer = RandomSearch(
        metric, num_candidates=5, max_bootstrapped_demos=2, max_labeled_demos=2, search_variables=False
    )
    optimizer.compile(Task(), trainset=trainset(), valset=trainset(4, offset=20), restrict=iter([0, 3]))
    trials = optimizer.last_result.trials
    assert len(trials) == 2 and not trials[0].configuration["solve.demos"]  # zero-shot, then candidate 3
    assert trials[1].configuration["solve.demos"] and optimizer.restrict is None  # a per-run option
    with pytest.raises(OptionError, match=r"restrict=\[7\] names no candidate; the candidates are numbered 0 to 4"):
        optimizer.compile(Task(), trainset=trainset(), restrict=[7])
    dspy_named = em.BootstrapFewShotWithRandomSearch(metric, 2, 2, num_candidate_programs=5, search_variables=False)
    dspy_named.compile(Task(), trainset=trainset(), valset=trainset(4, offset=20), restrict=[-3])  # DSPy's seeds
    assert len(dspy_named.last_result.trials) == 1
    with pytest.raises(ValueError, match="numbered -3 to 1"):
        dspy_named.compile(Task(), trainset=trainset(), restrict=[5])


def test_mipro_finds_the_only_right_configuration():
    em.configure(lm=task_lm())
    optimizer = MIPRO(metric, auto="light", seed=0, storage="sqlite:///:memory:")
    # 24 rows: the right instruction is better on 8 of them, enough for the paired comparison to keep it
    compiled = optimizer.compile(Task(), trainset=trainset(), valset=trainset(24, offset=30))
    result = optimizer.last_result
    assert result.best_score == 100.0, result.summary()
    assert result.details["instruction_choice"]["kept"] == "proposed"
    assert compiled.temperature < 0.3 and type(compiled.solve) is em.ChainOfThought
    assert "meticulously" in compiled.solve.instructions
    assert em.evaluate(compiled, trainset(12, offset=60), metric, display_progress=False).score == 100.0
    assert result.lm_calls > 0 and result.trials and all(t.lm_calls >= 0 for t in result.trials)


def test_mipro_is_deterministic_under_a_seed(tmp_path):
    em.configure(lm=task_lm(cache=tmp_path / "cache.sqlite"))
    configs = []
    for _ in range(2):
        optimizer = MIPRO(metric, auto="light", seed=3, num_trials=8, storage="sqlite:///:memory:")
        optimizer.compile(Task(), trainset=trainset(), valset=trainset(12, offset=30))
        configs.append(optimizer.last_result.best_configuration)
    assert configs[0] == configs[1]


def test_mipro_scores_the_best_mean_configuration_on_the_full_set_once():
    import random

    import optuna

    from elixirml.optimizers._base import OptimizationState
    from elixirml.optimizers._search import MIPROState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    dist = {"x": optuna.distributions.CategoricalDistribution(["lucky", "steady", "bad"])}
    # "lucky" has the best single minibatch, "steady" the best mean
    for x, value in [("lucky", 90.0), ("steady", 70.0), ("lucky", 10.0), ("steady", 60.0), ("bad", 5.0)]:
        study.add_trial(optuna.trial.create_trial(params={"x": x}, distributions=dist, value=value))
    em.configure(lm=em.DummyLM([{"answer": "x"}] * 50))
    optimizer = MIPRO(metric, num_trials=5, storage="sqlite:///:memory:")
    evaluated = []
    optimizer._config_from_params = lambda state, params: evaluated.append(params["x"]) or {}
    state = OptimizationState(em.Predict("question -> answer"), [], trainset(2), random.Random(0))
    state.search = MIPROState(
        study=study, instructions={}, demo_sets={}, space=em.Predict("q -> a").variable_space(), others=[]
    )
    for _ in range(4):
        optimizer._full_eval_best(state)
    assert evaluated == ["steady", "lucky", "bad"]  # by mean, each once; then nothing is left
    assert sorted(state.search.full) == ["0", "1", "4"]  # keyed by each configuration's first trial


def test_variable_search_multi_objective_pareto_front():
    em.configure(lm=task_lm())
    optimizer = VariableSearch(metrics={"accuracy": metric, "tokens": "tokens"}, instruction_candidates=4, seed=0)
    compiled = optimizer.compile(Task(), trainset=trainset(), valset=trainset(12, offset=30))
    result = optimizer.last_result
    assert result.pareto_front
    assert max(t.scores["accuracy"] for t in result.pareto_front) == 1.0, result.summary()
    best = result.select()  # best accuracy on the front
    assert em.evaluate(best, trainset(12, offset=60), metric, display_progress=False).score == 100.0
    cheapest_tokens = min(t.scores["tokens"] for t in result.pareto_front)
    cheap = result.select(max_tokens=cheapest_tokens)
    assert isinstance(cheap, Task)
    assert isinstance(compiled, Task)


def test_max_lm_calls_is_a_hard_cap():
    calls = []
    em.configure(lm=task_lm(calls))
    optimizer = MIPRO(metric, auto="light", storage="sqlite:///:memory:")
    compiled = optimizer.compile(Task(), trainset=trainset(), valset=trainset(12, offset=30), max_lm_calls=50)
    assert len(calls) <= 50
    assert optimizer.last_result.stopped == "max_lm_calls"
    assert optimizer.last_result.lm_calls <= 50
    assert isinstance(compiled, Task)


def test_the_run_call_budget_is_hard_across_threads_while_it_writes_its_count_ahead():
    import threading
    import time

    from elixirml.optimizers._run import CallLedger

    marks = []

    def write(mark):  # a store write: slow, and other threads run meanwhile
        time.sleep(0.001)
        marks.append(mark)

    ledger = CallLedger(300, used=0, write=write)
    granted, refused = [], []

    def spend():
        for _ in range(50):
            try:
                ledger.take()
            except em.errors.BudgetExceededError:
                refused.append(1)
            else:
                granted.append(1)

    threads = [threading.Thread(target=spend) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (len(granted), len(refused)) == (300, 100)
    assert ledger.used == 300  # no take lost while another thread wrote the count
    assert marks == sorted(marks) and marks[-1] == 300 == ledger.reserved  # never beyond the budget


def test_the_run_call_budget_writes_ahead_once_per_lease(monkeypatch):
    import itertools

    from elixirml.optimizers import _run

    now = [0.0]
    monkeypatch.setattr(_run.time, "monotonic", lambda: now[0])
    marks = []
    ledger = _run.CallLedger(None, used=10, write=marks.append)
    for _ in range(3):  # calls further apart than INTERVAL: one write per call, each exact
        now[0] += 1.0
        ledger.take()
    assert marks == [11, 12, 13]
    for _ in range(200):  # calls close together: the lease doubles, so few writes, each ahead of its calls
        now[0] += 0.0001
        before = len(marks)
        ledger.take()
        assert ledger.reserved >= ledger.used
        if len(marks) > before:
            assert marks[-1] == ledger.reserved
    assert marks[3:] == [15, 19, 27, 43, 75, 139, 267]  # leases 2, 4, 8, ... 128
    assert ledger.used == 213
    while ledger.used < 267:
        ledger.take()
    now[0] += 1.0
    ledger.take()  # past the lease, after a pause: the lease halves
    assert marks[-1] == 268 + 64 - 1
    capped = _run.CallLedger(40, used=0, write=(kept := []).append)
    for _ in range(40):
        now[0] += 0.001
        capped.take()
    assert max(kept) == 40 and all(b - a <= 40 // 16 for a, b in itertools.pairwise(kept))  # a lease is <= budget/16
    with pytest.raises(em.errors.BudgetExceededError):
        capped.take()


def test_a_store_that_fails_to_keep_the_count_ahead_warns_once_and_the_calls_go_on():
    from elixirml.optimizers._run import CallLedger

    tries = []

    def write(mark):
        tries.append(mark)
        raise em.errors.StoreError("database is locked")

    ledger = CallLedger(10, used=0, write=write)
    with pytest.warns(RuntimeWarning, match="Could not keep the LM call count of the run in the store"):
        ledger.take()
    ledger.take()  # no second try, no second warning
    assert (ledger.used, ledger.reserved, tries) == (2, 0, [1])
    with pytest.raises(em.errors.StoreError):  # a run state kept between calls still says so
        ledger.keep()


def test_other_budgets_stop_cleanly():
    em.configure(lm=task_lm())
    optimizer = RandomSearch(metric, num_candidates=6, max_bootstrapped_demos=1, search_variables=True)
    optimizer.compile(Task(), trainset=trainset(6), max_trials=2)
    assert len(optimizer.last_result.trials) == 2 and optimizer.last_result.stopped == "max_trials"
    optimizer.compile(Task(), trainset=trainset(6), timeout=0.0)
    assert optimizer.last_result.stopped == "timeout"
    with pytest.raises(em.errors.ConfigurationError, match="max_bogus"):
        optimizer.compile(Task(), trainset=trainset(6), max_bogus=1)


def test_custom_optimizer_through_the_protocol():
    class PickTemperature(Optimizer):
        name = "PickTemperature"

        def initialize(self, state):
            state.extra["todo"] = [1.5, 0.1]

        def optimize_step(self, state):
            value = state.extra["todo"].pop(0)
            config = {"temperature": value}
            candidate = state.program.with_configuration(config)
            with em.track_usage() as usage:
                result = self.evaluate(candidate, state.valset)
            self.record_trial(state, config, result, candidate, usage=usage, wall_time=0.0)
            return bool(state.extra["todo"])

    em.configure(lm=task_lm())
    compiled = PickTemperature(metric).compile(Task(), trainset=trainset(6))
    assert compiled.temperature == 0.1


def test_a_custom_optimizer_records_trials_without_passing_usage_or_time():
    class PickTemperature(Optimizer):
        def initialize(self, state):
            state.extra["todo"], self.results = [1.5, 0.1], []

        def optimize_step(self, state):
            config = {"temperature": state.extra["todo"].pop(0)}
            candidate = state.program.with_configuration(config)
            result = self.evaluate(candidate, state.valset)
            self.results.append(result)
            self.record_trial(state, config, result, candidate)  # usage and time: the evaluation's own
            return bool(state.extra["todo"])

    em.configure(lm=task_lm())
    optimizer = PickTemperature(metric)
    optimizer.compile(Task(), trainset=trainset(6))
    trials = optimizer.last_result.trials
    assert [t.configuration["temperature"] for t in trials] == [1.5, 0.1]
    for trial, result in zip(trials, optimizer.results, strict=True):
        assert trial.lm_calls == result.usage.calls > 0 and trial.tokens == result.usage.total_tokens
        assert trial.wall_time == result.wall_time > 0


CHILD = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, sys.argv[3])
    import optuna
    import elixirml as em
    from test_optimizers import Task, task_lm, trainset, metric
    from elixirml.optimizers import MIPRO

    ask = optuna.study.Study.ask

    def ask_then_die_at_the_fourth(study, *args, **kwargs):
        trial = ask(study, *args, **kwargs)
        if sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials) >= 3:
            os.kill(os.getpid(), signal.SIGKILL)  # killed mid-run: this trial stays RUNNING in the storage
        return trial

    optuna.study.Study.ask = ask_then_die_at_the_fourth
    em.configure(lm=task_lm(cache=sys.argv[2]))
    MIPRO(metric, auto="light", storage=sys.argv[1], num_trials=10).compile(
        Task(), trainset=trainset(), valset=trainset(12, offset=30), resume="run-resume")
    """
)


def test_mipro_resumes_after_sigkill_without_repeating_trials(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    cache = str(tmp_path / "cache.sqlite")
    child = subprocess.Popen([sys.executable, "-c", CHILD, storage, cache, os.path.dirname(__file__)])
    assert child.wait(timeout=120) == -signal.SIGKILL  # it killed itself when asking for its fourth trial
    study = optuna.load_study(study_name="elixirml-mipro-run-resume", storage=storage)
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == 3 and states[-1] == optuna.trial.TrialState.RUNNING
    finished = {t.number: t.params for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE}

    calls = []
    em.configure(lm=task_lm(calls, cache=cache))
    optimizer = MIPRO(metric, auto="light", storage=storage, num_trials=10)
    optimizer.compile(Task(), trainset=trainset(), valset=trainset(12, offset=30), resume="run-resume")
    study = optuna.load_study(study_name="elixirml-mipro-run-resume", storage=storage)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 10
    assert all(study.trials[n].params == params for n, params in finished.items())  # kept, not re-run
    remaining = 10 - len(finished)
    assert len(calls) <= (remaining + 1) * 12 + 12  # no bootstrap or proposal calls; finished trials not paid again
    assert optimizer.last_result.run_id == "run-resume"


def test_degenerate_instruction_proposals_are_dropped():
    from elixirml.optimizers._propose import usable_instruction

    assert usable_instruction("Classify the sentiment of the sentence carefully.")
    assert not usable_instruction("a psychological thriller with " * 40)
    assert not usable_instruction("x" * 500)
    assert not usable_instruction("   ")


def test_mipro_never_returns_worse_than_the_starting_program():
    em.configure(lm=task_lm())
    start = Task().with_variables(temperature=0.1, strategy="cot")  # already 2 of 3 conditions
    optimizer = MIPRO(metric, auto="light", num_trials=3, storage="sqlite:///:memory:", seed=5)
    compiled = optimizer.compile(start, trainset=trainset(), valset=trainset(12, offset=30))
    baseline = optimizer.last_result.trials[0]
    assert baseline.full and baseline.configuration == {} and baseline.score == pytest.approx(200 / 3)
    assert optimizer.last_result.best_score >= baseline.score
    assert em.evaluate(compiled, trainset(12, offset=30), metric, display_progress=False).score >= baseline.score


def test_mipro_demo_sets_keep_input_marks_across_a_resume(tmp_path):
    from elixirml.program._serialize import demo_from_json

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    em.configure(lm=task_lm(cache=tmp_path / "cache.sqlite"))
    MIPRO(metric, auto="light", num_trials=2, storage=storage).compile(
        Task().with_variables(temperature=0.1), trainset=trainset(), resume="marks"
    )
    study = optuna.load_study(study_name="elixirml-mipro-marks", storage=storage)
    stored = [d for sets in study.user_attrs["demo_sets"].values() for s in sets for d in s]
    assert stored  # some demo sets are not empty
    assert all(demo_from_json(d).input_keys == frozenset({"question"}) for d in stored)
    resumed = MIPRO(metric, auto="light", num_trials=3, storage=storage)
    resumed.compile(Task().with_variables(temperature=0.1), trainset=trainset(), resume="marks")
    assert len(resumed.last_result.trials) >= 3


def test_bootstrap_stopped_by_max_lm_calls_counts_the_calls_in_flight():
    import threading
    import time

    made = []
    lock = threading.Lock()

    def slow(messages, settings):
        time.sleep(0.05)  # still answering when the sixth call is refused
        with lock:
            made.append(1)
        return {"answer": "a"}

    em.configure(lm=em.FunctionLM(slow, cache=False))
    train = [em.Example(question=f"q{i}", answer="a").with_inputs("question") for i in range(8)]
    optimizer = BootstrapFewShot(lambda e, p, trace=None: False, max_bootstrapped_demos=4, display_progress=False)
    optimizer.compile(em.Predict("question -> answer"), trainset=train, max_lm_calls=5)
    result = optimizer.last_result
    assert (len(made), result.lm_calls, result.stopped) == (5, 5, "max_lm_calls")


def test_mipro_projection_counts_every_phase(capsys):
    """The projection printed first counts the baseline, structures, probe, trials and promotions (was 25% short)."""
    em.configure(lm=task_lm())
    for rows in (12, 24):
        optimizer = MIPRO(metric, auto="light", seed=0, storage="sqlite:///:memory:", display_progress=True)
        optimizer.compile(Task(), trainset=trainset(), valset=trainset(rows, offset=30))
        projected = int(re.search(r"MIPRO: projected (\d+) LM calls", capsys.readouterr().err).group(1))
        actual = optimizer.last_result.lm_calls
        assert 0.9 * actual <= projected <= 1.3 * actual, (rows, projected, actual)


def test_bootstrap_projection_counts_whole_batches_of_teacher_runs(capsys):
    """Teacher runs go out a batch of ``concurrency`` at a time: the projection is not below what one batch makes."""
    em.configure(lm=task_lm(demo_credit=False))
    program = Task().with_variables(temperature=0.1)
    optimizer = BootstrapFewShot(metric, max_bootstrapped_demos=2, max_labeled_demos=2, display_progress=True)
    optimizer.compile(program, trainset=trainset(8))
    projected = int(re.search(r"projected (\d+) LM calls", capsys.readouterr().err).group(1))
    assert projected >= optimizer.last_result.lm_calls, (projected, optimizer.last_result.lm_calls)


def test_mipro_prints_progress_while_it_prepares_its_search(capsys):
    """Without a terminal, lines come during initialize too (baseline, structures, probe), not only after trials."""
    em.configure(lm=task_lm())
    optimizer = MIPRO(metric, auto="light", seed=0, storage="sqlite:///:memory:")
    optimizer.compile(Task(), trainset=trainset(), valset=trainset(24, offset=30))
    err = capsys.readouterr().err.splitlines()
    lines = [line for line in err if line.startswith("MIPRO: ") and "LM calls (" in line]
    assert any(line.endswith("preparing the search") for line in lines), lines
    assert lines.index(next(line for line in lines if "trials" in line)) > 0  # the first line is not after a trial
