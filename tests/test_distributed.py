"""Distributed execution on a real local Ray cluster (127.0.0.1), with LM test doubles."""

from __future__ import annotations

import functools
import json
import sys
import time

import pytest

import elixirml as em
from _dist_programs import Echo, EchoPipeline, exact, failing, knows_instructions, stamped, upper, upper_killing_once
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
