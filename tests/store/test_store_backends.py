"""The store, evaluation checkpoints and Optuna storage on SQLite and on a real PostgreSQL server.

Every test runs twice: on a SQLite file and on a fresh database of the session's PostgreSQL
server (started on 127.0.0.1 by tests/_postgres.py; skipped with the reason where PostgreSQL
cannot be had).
"""

from __future__ import annotations

import warnings

import pytest
from test_store_reliability import CHECKPOINTER, SAVER, Task, data, number_lm, start_together

import elixirml as em


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install 'elixirml[postgres]')")
    value = request.getfixturevalue("postgres_url")
    assert value.startswith("postgresql+psycopg://")
    return value


def test_programs_and_versions(url):
    store = em.Store(url)
    program = Task().with_variables(temperature=0.2)
    first = store.save(program, "task")
    program.solve.instructions = "Copy the number."
    second = store.save(program, "task")
    assert [v["number"] for v in store.versions("task")] == [1, 2]
    loaded = store.load("task", cls=Task)
    assert loaded.solve.instructions == "Copy the number." and loaded.temperature == pytest.approx(0.2)
    assert store.load("task", version=1, cls=Task).solve.instructions != "Copy the number."
    assert first != second
    store.close()


def test_evaluation_checkpoint_resumes(url):
    store = em.Store(url)
    em.configure(lm=number_lm())
    program = Task().with_variables(temperature=0.1)
    seen: list[int] = []

    def stop_after_three(result):
        seen.append(result.index)
        if len(seen) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        em.evaluate(
            program,
            data(8),
            em.metrics.exact_match,
            checkpoint=(store, "ckpt"),
            concurrency=1,
            on_result=stop_after_three,
            record=False,
        )
    assert len(store.checkpoint_records("ckpt")) == 3
    result = em.evaluate(program, data(8), em.metrics.exact_match, checkpoint=(store, "ckpt"), record=False)
    assert sum(r.resumed for r in result.results) == 3
    assert result.score == 100.0 and len(result.results) == 8
    store.close()


def test_evaluations_are_recorded(url):
    em.configure(lm=number_lm(), store=url)
    em.evaluate(Task().with_variables(temperature=0.1), data(4), em.metrics.exact_match)
    store = em.Store(url)
    assert [e["score"] for e in store.evaluations()] == [100.0]
    store.close()


def test_four_processes_saving_at_once_lose_and_duplicate_nothing(url, tmp_path):
    em.Store(url).close()
    start_together(tmp_path, SAVER, url, "10", processes=4)
    store = em.Store(url)
    versions = store.versions("shared")
    assert [v["number"] for v in versions] == list(range(1, 41))
    store.close()


def test_four_processes_checkpointing_at_once(url, tmp_path):
    em.Store(url).close()
    start_together(tmp_path, CHECKPOINTER, url, processes=4)
    store = em.Store(url)
    assert sorted(store.checkpoint_records("ckpt")) == sorted(f"key-{i}" for i in range(40))
    store.close()


def test_mipro_on_the_store_database_resumes(url):
    pytest.importorskip("optuna")
    calls: list[int] = []
    em.configure(lm=number_lm(calls), store=url)

    def optimizer():
        # no storage=: the Optuna study lives in the store's database
        return em.optimizers.MIPRO(em.metrics.exact_match, num_trials=4, num_candidates=3)

    first = optimizer()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first.compile(Task(), trainset=data(), resume="legs", max_trials=3)
    assert first.last_result.stopped == "max_trials"
    second = optimizer()
    second.compile(Task(), trainset=data(), resume="legs")
    assert second.last_result.stopped is None
    store = em.Store(url)
    run = store.run("legs")
    numbers = [t["number"] for t in run["trial_list"]]
    assert len(numbers) == len(set(numbers))
    assert run["status"] == "finished" and run["lm_calls"] == len(calls)
    store.close()


def test_run_state_is_kept_replaced_and_read_back(url):
    from elixirml.errors import ConfigurationError, LoadError

    store = em.Store(url)
    assert store.run_state("nope") is None
    with pytest.raises(LoadError, match="No optimization run"):
        store.set_run_state("nope", "GEPA", {"step": 1})
    store.create_run("stateful", "GEPA", {})
    store.set_run_state("stateful", "GEPA", {"step": 1, "pool": [{"texts": {"a": "b"}, "scores": {"0": 1.0}}]})
    store.set_run_state("stateful", "GEPA", {"step": 2, "pool": []})
    kept = store.run_state("stateful")
    assert kept["optimizer"] == "GEPA" and kept["state"] == {"step": 2, "pool": []} and kept["updated_at"]
    with pytest.raises(ConfigurationError, match="must be JSON"):
        store.set_run_state("stateful", "GEPA", {"step": object()})
    with pytest.raises(ConfigurationError, match="credentials"):
        store.set_run_state("stateful", "GEPA", {"lm": {"api_key": "sk-1234567890abcdef"}})
    assert store.run_state("stateful")["state"]["step"] == 2
    store.close()
