"""Distributed execution on a real local Ray cluster (127.0.0.1), with LM test doubles."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

import elixirml as em
from _dist_programs import (
    Echo,
    EchoPipeline,
    Tunable,
    calls_by_process,
    cold_upper,
    exact,
    failing,
    knows_instructions,
    stamped,
    upper,
    upper_killing_once,
)
from elixirml.errors import CircuitOpenError, ConfigurationError, LoadError, ProviderError
from elixirml.runtime import CircuitBreaker, RateLimiter


def _devset(n: int) -> list[em.Example]:
    questions = [f"question {i}" + ("?" if i % 3 == 0 else "") for i in range(n)]
    return [em.Example(question=q, answer=q.upper()).with_inputs("question") for q in questions]


def _runner(lm: em.LM, **options) -> em.RayExecutor:
    # a quarter CPU each: the module's executor and a test's own fit on the 2-CPU test cluster
    return em.RayExecutor(num_workers=2, resources_per_worker={"CPU": 0.25}, lm=lm, start_timeout=60, **options)


@pytest.fixture(scope="module")
def executor(ray_cluster):
    runner = _runner(em.FunctionLM(upper))
    yield runner
    runner.shutdown()


def _scores(result: em.EvaluationResult) -> list[tuple[int, float]]:
    return [(r.index, r.score) for r in result.results]


def test_evaluate_on_ray_equals_the_local_run(executor):
    devset = _devset(30)
    with em.context(lm=em.FunctionLM(upper)):
        local = em.evaluate(Echo(), devset, exact, record=False)
    distributed = em.evaluate(Echo(), devset, exact, executor=executor, record=False)
    assert _scores(distributed) == _scores(local)
    assert distributed.score == local.score == pytest.approx(100 * 20 / 30)
    assert [r.prediction.answer for r in distributed.results] == [r.prediction.answer for r in local.results]
    assert all(r.usage["calls"] == 1 for r in distributed.results if "calls" in r.usage)


def test_run_returns_predictions_in_input_order(executor):
    devset = _devset(25)
    predictions = em.distributed.run(Echo(), devset, executor=executor)
    assert [p.answer for p in predictions] == [
        "WRONG" if e.question.endswith("?") else e.question.upper() for e in devset
    ]


def test_workers_rebuild_the_program_from_its_state(executor):
    program = Echo()
    program.answer.signature = program.answer.signature.with_instructions("Shout the question back.")
    # the instructions travel in the JSON state; the workers' prompts carry them
    runner = _runner(em.FunctionLM(knows_instructions))
    try:
        predictions = em.distributed.run(program, _devset(4), executor=runner)
    finally:
        runner.shutdown()
    assert [p.answer for p in predictions] == ["yes"] * 4
    with em.context(lm=em.FunctionLM(knows_instructions)):
        assert Echo()(question="q").answer == "no"  # the class alone does not carry them


def test_a_worker_killed_mid_run_loses_nothing_and_scores_once(executor, tmp_path):
    devset = _devset(24)
    devset[5] = em.Example(question="kill me", answer="KILL ME").with_inputs("question")
    with em.context(lm=em.FunctionLM(upper)):
        local = em.evaluate(Echo(), devset, exact, record=False)
    marker = tmp_path / "killed"
    runner = _runner(em.FunctionLM(functools.partial(upper_killing_once, str(marker))))
    seen: list[int] = []
    checkpoint = tmp_path / "run.jsonl"
    try:
        result = em.evaluate(
            Echo(),
            devset,
            exact,
            executor=runner,
            checkpoint=checkpoint,
            on_result=lambda r: seen.append(r.index),
            concurrency=4,
            record=False,
        )
    finally:
        runner.shutdown()
    assert marker.exists(), "no worker was killed: the test did not test anything"
    assert sorted(seen) == list(range(24))  # each example's result taken once
    assert _scores(result) == _scores(local)
    keys = [json.loads(line)["key"] for line in checkpoint.read_text().splitlines()]
    assert len(keys) == len(set(keys)) == 24


def test_a_killed_driver_resumes_from_the_checkpoint(executor, tmp_path):
    devset = _devset(12)
    checkpoint = tmp_path / "run.jsonl"
    with pytest.raises(KeyboardInterrupt):

        def stop_after_five(result: em.evaluate.__class__ | object) -> None:
            if len(seen) == 5:
                raise KeyboardInterrupt
            seen.append(1)

        seen: list[int] = []
        em.evaluate(
            Echo(), devset, exact, executor=executor, checkpoint=checkpoint, on_result=stop_after_five, record=False
        )
    written = len(checkpoint.read_text().splitlines())
    assert 5 <= written < 12
    resumed = em.evaluate(Echo(), devset, exact, executor=executor, checkpoint=checkpoint, record=False)
    assert sum(r.resumed for r in resumed.results) == written
    assert len(resumed.results) == 12
    assert resumed.score == pytest.approx(100 * 8 / 12)


def test_a_worker_that_cannot_import_the_module_names_it(executor, tmp_path, monkeypatch):
    (tmp_path / "driver_only_programs.py").write_text(
        "import elixirml as em\n"
        "class OnlyHere(em.Program):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.answer = em.Predict('question -> answer')\n"
        "    def forward(self, question):\n"
        "        return self.answer(question=question)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    from driver_only_programs import OnlyHere  # type: ignore[import-not-found]

    with pytest.raises(LoadError, match="driver_only_programs"):
        em.distributed.run(OnlyHere(), _devset(3), executor=executor)
    sys.modules.pop("driver_only_programs", None)


def test_the_rate_limit_holds_across_workers(ray_cluster):
    lm = em.FunctionLM(stamped)
    lm.rate_limiter = RateLimiter(rpm=4, window=1.0)  # 4 requests per second, for all workers together
    runner = _runner(lm)
    try:
        predictions = em.distributed.run(Echo(), _devset(12), executor=runner, concurrency=8)
    finally:
        runner.shutdown()
    times = sorted(float(p.answer) for p in predictions)
    # the limiter counts a request when it is let through; allow the LM call's own latency
    for i in range(len(times) - 4):
        assert times[i + 4] - times[i] >= 0.9, times
    assert times[-1] - times[0] >= 1.9


def test_the_circuit_breaker_is_shared_by_the_workers(ray_cluster):
    lm = em.FunctionLM(failing, circuit_breaker=CircuitBreaker("flaky", failure_threshold=2, reset_timeout=60))
    runner = _runner(lm)
    try:
        result = em.evaluate(Echo(), _devset(10), exact, executor=runner, concurrency=2, record=False)
    finally:
        runner.shutdown()
    reached = [r for r in result.results if type(r.error) is ProviderError]
    refused = [r for r in result.results if type(r.error) is CircuitOpenError]
    assert len(reached) + len(refused) == 10
    # two failures open the circuit for everyone (one more may already be in flight on the other
    # worker); circuits of their own would have let each worker fail twice
    assert len(reached) <= 3


def test_pipeline_run_batch_distributed(executor):
    inputs = [{"question": f"q{i}"} for i in range(6)]
    results = EchoPipeline().run_batch(inputs, strategy="distributed", executor=executor)
    assert [r.answer for r in results] == [f"Q{i}" for i in range(6)]


def test_an_inline_pipeline_is_refused_for_distributed_batches():
    pipeline = em.Pipeline(em.stage.predict("question -> answer"))
    with pytest.raises(ConfigurationError, match="subclass"):
        pipeline.run_batch([{"question": "q"}], strategy="distributed", executor="ray")


def test_executor_by_name(ray_cluster):
    with em.context(lm=em.FunctionLM(upper)):
        result = em.evaluate(Echo(), _devset(6), exact, executor="ray", record=False)
    assert result.score == pytest.approx(100 * 4 / 6)


def test_unknown_executor_name():
    with pytest.raises(ConfigurationError, match="Unknown executor"):
        em.evaluate(Echo(), _devset(1), exact, executor="dask", record=False)


def test_bad_address():
    with pytest.raises(ConfigurationError, match="address"):
        em.RayExecutor("localhost:6379")


def test_workers_that_cannot_be_placed_raise_instead_of_hanging(ray_cluster):
    runner = em.RayExecutor(num_workers=1, resources_per_worker={"CPU": 64}, lm=em.FunctionLM(upper), start_timeout=2)
    began = time.monotonic()
    try:
        with pytest.raises(em.errors.DistributedError, match="did not start"):
            em.distributed.run(Echo(), _devset(2), executor=runner)
    finally:
        runner.shutdown()
    assert time.monotonic() - began < 30


def test_a_predictor_with_its_own_lm_is_refused(executor):
    program = Echo()
    program.answer.set_lm(em.FunctionLM(upper))
    with pytest.raises(ConfigurationError, match="answer"):
        em.distributed.run(program, _devset(2), executor=executor)


# ---------------------------------------------------------------------------- parallel optimization
class Watching:
    """An executor around another that records how many runs overlap (an optimizer's parallel trials)."""

    def __init__(self, inner: em.RayExecutor) -> None:
        self.inner, self.active, self.peak, self.runs = inner, 0, 0, 0

    async def stream(self, program, work, items, *, concurrency):
        self.active += 1
        self.runs += 1
        self.peak = max(self.peak, self.active)
        try:
            async for outcome in self.inner.stream(program, work, items, concurrency=concurrency):
                yield outcome
        finally:
            self.active -= 1


def _tunable_data(n: int, offset: int = 0) -> list[em.Example]:
    return [
        em.Example(question=f"item {i}", answer=f"ITEM {i}").with_inputs("question") for i in range(offset, offset + n)
    ]


@pytest.fixture
def cold(ray_cluster, tmp_path):
    """The call log of the parallel-optimization tests' LM, and an executor with 2 workers on that LM."""
    log = tmp_path / "calls"
    log.mkdir()
    lm = em.FunctionLM(functools.partial(cold_upper, str(log)))
    runner = _runner(lm)
    with em.context(lm=lm):
        yield str(log), runner
    runner.shutdown()


def _worker_calls(log: str, runner: em.RayExecutor) -> int:
    counts = calls_by_process(log)
    return sum(n for pid, n in counts.items() if pid != os.getpid())


def test_random_search_runs_its_trials_on_workers_in_parallel_with_the_local_result(cold):
    log, runner = cold
    train, val = _tunable_data(6), _tunable_data(8, offset=10)
    local = em.optimizers.RandomSearch(exact, num_candidates=6, max_bootstrapped_demos=1, seed=3)
    local.compile(Tunable(), trainset=train, valset=val)
    for name in os.listdir(log):
        os.remove(os.path.join(log, name))
    watching = Watching(runner)
    parallel = em.optimizers.RandomSearch(
        exact, num_candidates=6, max_bootstrapped_demos=1, seed=3, n_workers=2, executor=watching
    )
    compiled = parallel.compile(Tunable(), trainset=train, valset=val)
    assert watching.peak == 2  # two trials in flight at once
    assert [t.score for t in parallel.last_result.trials] == [t.score for t in local.last_result.trials]
    assert compiled.temperature == local.last_result.best_configuration["temperature"]
    assert parallel.last_result.best_score == local.last_result.best_score == 100.0
    # every trial evaluation ran on the workers, and their calls are counted in the run's usage
    assert _worker_calls(log, runner) >= 6 * len(val)
    assert parallel.last_result.lm_calls == sum(calls_by_process(log).values())


def test_max_lm_calls_holds_across_workers(cold):
    log, runner = cold
    optimizer = em.optimizers.RandomSearch(
        exact, num_candidates=20, max_bootstrapped_demos=0, n_workers=2, executor=runner, search_variables=True
    )
    optimizer.compile(Tunable(), trainset=_tunable_data(4), valset=_tunable_data(10, offset=10), max_lm_calls=37)
    made = sum(calls_by_process(log).values())
    assert made <= 37
    assert optimizer.last_result.stopped == "max_lm_calls"
    assert optimizer.last_result.lm_calls == made  # the workers' calls came back into the run's count
    assert _worker_calls(log, runner) > 0


def test_max_trials_holds_across_workers(cold):
    _, runner = cold
    optimizer = em.optimizers.RandomSearch(
        exact, num_candidates=8, max_bootstrapped_demos=0, n_workers=2, executor=runner
    )
    optimizer.compile(Tunable(), trainset=_tunable_data(4), valset=_tunable_data(6, offset=10), max_trials=3)
    assert len(optimizer.last_result.trials) == 3
    assert optimizer.last_result.stopped == "max_trials"


def test_mipro_asks_trials_of_one_study_in_parallel_and_resumes(cold, tmp_path):
    optuna = pytest.importorskip("optuna")
    _, runner = cold
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    train, val = _tunable_data(6), _tunable_data(30, offset=10)

    def mipro(executor):
        return em.optimizers.MIPRO(
            exact, num_trials=6, num_candidates=2, minibatch_size=5, storage=storage, n_workers=2, executor=executor
        )

    watching = Watching(runner)
    first = mipro(watching)
    first.compile(Tunable(), trainset=train, valset=val, resume="parallel", max_trials=4)
    assert first.last_result.stopped == "max_trials"
    study = optuna.load_study(study_name="elixirml-mipro-parallel", storage=storage)
    done = {t.number: t.params for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE}
    assert done and all(t.state != optuna.trial.TrialState.RUNNING for t in study.trials)

    second = mipro(watching)
    second.compile(Tunable(), trainset=train, valset=val, resume="parallel")
    assert watching.peak == 2
    study = optuna.load_study(study_name="elixirml-mipro-parallel", storage=storage)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 6  # one study across the workers and the legs: 6 trials in all
    assert all(study.trials[n].params == params for n, params in done.items())  # kept, not run again
    numbers = [t.number for t in second.last_result.trials]
    assert len(numbers) == len(set(numbers))
    assert second.last_result.run_id == "parallel"


def test_variable_search_runs_trials_in_parallel(cold):
    log, runner = cold
    watching = Watching(runner)
    optimizer = em.optimizers.VariableSearch([exact, "latency"], n_trials=4, n_workers=2, executor=watching)
    optimizer.compile(Tunable(), trainset=_tunable_data(4), valset=_tunable_data(6, offset=10))
    assert watching.peak == 2
    assert len(optimizer.last_result.trials) == 4
    assert optimizer.last_result.pareto_front
    assert _worker_calls(log, runner) >= 4 * 6


def test_n_workers_without_an_executor_starts_ray_with_that_many_workers(monkeypatch):
    from elixirml.runtime import _executor

    made = []

    class Recorded:
        def __init__(self, ephemeral, num_workers=None):
            made.append((ephemeral, num_workers))
            self.closed = False

        async def stream(self, program, work, items, *, concurrency):
            yield  # pragma: no cover - never run

        def shutdown(self):
            self.closed = True

    monkeypatch.setitem(
        _executor._FACTORIES, "ray", lambda *, ephemeral=True, **options: Recorded(ephemeral, **options)
    )
    with em.optimizers.MIPRO(exact, n_workers=3)._open_executor() as runner:
        assert made == [(False, 3)]  # kept for every trial of the run, not stopped after each
    assert runner.closed
    with pytest.raises(ConfigurationError, match="n_workers"):
        em.optimizers.RandomSearch(exact, n_workers=0)


# ---------------------------------------------------------------------------- address mode
AUTO_DRIVER = textwrap.dedent(
    """
    import json, os
    import ray
    import elixirml as em
    from _dist_programs import exact, upper
    from shipped import Shout  # only in this driver's folder: the workers get it through working_dir

    executor = em.RayExecutor(
        address=os.environ["TEST_RAY_ADDRESS"],
        num_workers=2,
        resources_per_worker={"CPU": 0.25},
        lm=em.FunctionLM(upper),
        start_timeout=60,
        runtime_env={"working_dir": "."},
        init_options={"log_to_driver": False, "runtime_env": {"env_vars": {"PYTHONPATH": os.environ["PYTHONPATH"]}}},
    )
    devset = [em.Example(question=f"q{i}" + ("?" if i % 2 else ""), answer=f"Q{i}").with_inputs("question")
              for i in range(10)]
    result = em.evaluate(Shout(), devset, exact, executor=executor, record=False)
    print(json.dumps({
        "score": result.score,
        "gcs": ray.get_runtime_context().gcs_address,
        "nodes": [node["NodeManagerAddress"] for node in ray.nodes()],
        "workers": executor.worker_pids(),
        "client": ray.util.client.ray.is_connected(),
    }))
    executor.shutdown()
    """
)

SHIPPED = textwrap.dedent(
    """
    import elixirml as em

    class Shout(em.Program):
        def __init__(self):
            super().__init__()
            self.answer = em.Predict("question -> answer")

        def forward(self, question):
            return self.answer(question=question)
    """
)


@pytest.mark.parametrize("mode", ["auto", "client"])
def test_a_driver_joins_the_running_cluster_by_address(ray_cluster_process, tmp_path, mode):
    """``address="auto"`` (a driver on a cluster node) and ``"ray://host:port"`` (Ray Client, from anywhere)."""
    (tmp_path / "shipped.py").write_text(SHIPPED)
    address = "auto" if mode == "auto" else ray_cluster_process.client_address
    env = {
        **os.environ,
        "PYTHONPATH": ray_cluster_process.env["PYTHONPATH"],
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "TEST_RAY_ADDRESS": address,
    }
    env.pop("RAY_ADDRESS", None)  # "auto" finds the running `ray start` cluster as a user on a node does
    done = subprocess.run(
        [sys.executable, "-c", AUTO_DRIVER], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-3000:] + "\n" + ray_cluster_process.log_tails("ray_client_server*")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["gcs"] == ray_cluster_process.address  # the session's cluster, not a new one
    assert report["nodes"] and all(address.startswith("127.") for address in report["nodes"])
    assert report["score"] == pytest.approx(50.0)
    assert len(set(report["workers"])) == 2
    assert report["client"] == (mode == "client")


def test_local_paths_in_runtime_env_after_ray_started_are_refused(ray_cluster):
    runner = em.RayExecutor(
        num_workers=1, resources_per_worker={"CPU": 0.25}, lm=em.FunctionLM(upper), runtime_env={"working_dir": "."}
    )
    with pytest.raises(ConfigurationError, match="working_dir"):
        em.distributed.run(Echo(), _devset(2), executor=runner)


# ---------------------------------------------------------------------------- Ray Client start-up
CLIENT_SERVER_DIED = (
    "Initialization failure from server:\nTraceback (most recent call last):\n  ...\nRuntimeError: Starting Ray "
    "client server failed. See ray_client_server_23000.err for detailed logs."
)


class _FakeRay:
    """A ``ray`` module whose ``init`` raises the given errors in turn, then connects."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls: list[tuple[str | None, dict]] = []
        self.connected = False

    def is_initialized(self) -> bool:
        return self.connected

    def init(self, address: str | None = None, **options: object) -> None:
        self.calls.append((address, options))
        if self.errors:
            raise self.errors.pop(0)
        self.connected = True


def test_a_ray_client_server_that_dies_as_it_starts_is_asked_for_again(monkeypatch, caplog):
    """Ray Client starts a server process per driver; one that dies at start (seen: a gRPC poller
    error in that process) is a fresh process on the next try, so the executor connects."""
    from elixirml.distributed import _ray

    fake = _FakeRay(ConnectionAbortedError(CLIENT_SERVER_DIED))
    monkeypatch.setattr(_ray, "ray_module", lambda: fake)
    runner = em.RayExecutor(address="ray://127.0.0.1:10001", runtime_env={"env_vars": {"A": "1"}})
    with caplog.at_level("WARNING", logger="elixirml"):
        assert runner._ray() is fake
    assert [address for address, _ in fake.calls] == ["ray://127.0.0.1:10001"] * 2
    assert fake.calls[0][1] == fake.calls[1][1] == {"runtime_env": {"env_vars": {"A": "1"}}}
    assert "ray://127.0.0.1:10001" in caplog.text and "again" in caplog.text


def test_a_ray_client_server_that_keeps_dying_says_where_its_log_is(monkeypatch):
    from elixirml.distributed import _ray

    fake = _FakeRay(*[ConnectionAbortedError(CLIENT_SERVER_DIED) for _ in range(5)])
    monkeypatch.setattr(_ray, "ray_module", lambda: fake)
    runner = em.RayExecutor(address="ray://10.0.0.5:10001")
    with pytest.raises(em.errors.DistributedError, match=r"ray://10\.0\.0\.5:10001.*3 tries.*ray_client_server"):
        runner._ray()
    assert len(fake.calls) == 3


def test_any_other_ray_client_init_failure_is_raised_at_once(monkeypatch):
    """A runtime_env that cannot be built, for one, would fail the same way again: not retried."""
    from elixirml.distributed import _ray

    error = ConnectionAbortedError("Initialization failure from server:\nFailed to create runtime_env: no such package")
    fake = _FakeRay(error)
    monkeypatch.setattr(_ray, "ray_module", lambda: fake)
    with pytest.raises(ConnectionAbortedError, match="runtime_env"):
        em.RayExecutor(address="ray://127.0.0.1:10001")._ray()
    assert len(fake.calls) == 1


# ---------------------------------------------------------------------------- predictors with their own LMs
def _server_answer(name: str, body: dict) -> str:
    user = [m["content"] for m in body["messages"] if m["role"] == "user"][-1]
    question = user.split("[[ ## question ## ]]", 1)[1].strip().splitlines()[0]
    said = f"{name}:{body['model']}:{question}:t={body.get('temperature')}:m={body.get('max_tokens')}"
    return f"[[ ## answer ## ]]\n{said}\n\n[[ ## completed ## ]]"


@pytest.fixture
def two_servers(monkeypatch):
    from elixirml.testing import FakeLMServer

    with (
        FakeLMServer(functools.partial(_server_answer, "A")) as cheap,
        FakeLMServer(functools.partial(_server_answer, "B")) as strong,
    ):
        monkeypatch.setenv("TEST_CHEAP_LM_URL", cheap.base_url)
        monkeypatch.setenv("TEST_STRONG_LM_URL", strong.base_url)
        yield cheap, strong


def test_predictors_with_their_own_lms_run_on_ray_as_locally(ray_cluster, two_servers):
    from _dist_programs import TwoModels

    cheap, strong = two_servers
    devset = _devset(8)
    local = [TwoModels()(question=e.question).answer for e in devset]
    assert local[1] == "A:cheap:question 1:t=0.3:m=512 | B:strong:question 1:t=None:m=77"
    runner = em.RayExecutor(num_workers=2, resources_per_worker={"CPU": 0.25}, start_timeout=60)
    try:
        predictions = em.distributed.run(TwoModels(), devset, executor=runner)
    finally:
        runner.shutdown()
    assert [p.answer for p in predictions] == local  # each predictor used its own LM on the workers
    assert len(cheap.requests) == len(strong.requests) == 16


def test_an_lm_description_never_holds_a_key():
    import pickle

    program = Echo()
    program.answer.set_lm(
        em.LM("openai/x", base_url="http://127.0.0.1:9/v1", api_key="sk-SECRET-42", headers={"X-Key": "SECRET-h"})
    )
    spec = em.distributed.ProgramSpec.of(program)
    assert spec.lms[0]["predictors"] == ["answer"]
    travelling = pickle.dumps(spec) + json.dumps(spec.lms).encode() + repr(spec).encode()
    assert b"SECRET" not in travelling
    assert pickle.loads(pickle.dumps(spec)).secrets == ()
    rebuilt = em.LM.from_description(spec.lms[0]["lm"], spec.secrets[0])
    assert rebuilt._api_key == "sk-SECRET-42" and rebuilt.base_url == "http://127.0.0.1:9/v1"


def test_a_predictor_lm_that_is_not_data_is_refused_with_its_name():
    program = Echo()
    program.answer.set_lm(em.DummyLM([{"answer": "x"}]))
    with pytest.raises(ConfigurationError, match=r"'answer'.*DummyLM.*RayExecutor\(lm="):
        em.distributed.ProgramSpec.of(program)


def test_a_predictor_lms_rate_limit_holds_across_workers(ray_cluster, two_servers):
    from _dist_programs import TwoModels

    cheap, _ = two_servers
    times: list[float] = []
    answer = cheap.answer
    cheap.answer = lambda body: (times.append(time.time()), answer(body))[1]
    program = TwoModels()
    program.draft.lm.rate_limiter = RateLimiter(rpm=4, window=1.0)  # the cheap LM: 4 a second, all workers together
    runner = em.RayExecutor(num_workers=2, resources_per_worker={"CPU": 0.25}, start_timeout=60)
    try:
        em.distributed.run(program, _devset(10), executor=runner, concurrency=8)
    finally:
        runner.shutdown()
    times.sort()
    assert len(times) == 10
    # one shared limit: 4 + 4 + 2 requests over three windows (two apart); a limit per worker lets
    # 8 through in the first window and the last 2 one window later (times are the server's, after
    # the connection's own latency, so a window is measured with slack)
    assert times[-1] - times[0] >= 1.7, times
