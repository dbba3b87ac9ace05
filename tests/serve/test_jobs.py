"""Supervised jobs: the JobManager, its worker subprocesses, resume, and the HTTP router (issue 18)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

import pytest

import elixirml as em
from elixirml.serve._jobs import JobManager, jobs_router

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from jobs_fixture_lib import Doubler, make_lm, rows

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METRIC = {"metric": "exact_match", "field": "answer", "inputs": ["question"]}


def worker_env(**extra):
    path = os.pathsep.join([TESTS, *filter(None, [os.environ.get("PYTHONPATH")])])
    return {"PYTHONPATH": path, **extra}


@pytest.fixture
def store(tmp_path):
    store = em.Store(f"sqlite:///{tmp_path / 'jobs.db'}")
    store.save(Doubler(), "doubler")
    store.save(Doubler().with_variables(style="careful"), "doubler")
    yield store
    store.close()


def manager_for(store, **kwargs):
    kwargs.setdefault("lm", "jobs_fixture_lib:make_lm")
    kwargs.setdefault("allow_modules", ["jobs_fixture_lib"])
    kwargs.setdefault("backoff", 0.05)
    return JobManager(store, **kwargs)


def run(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def until(condition, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await asyncio.to_thread(condition)
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_evaluation_job_scores_the_stored_version(store):
    async def main():
        async with manager_for(store) as manager:
            v1 = await manager.submit({"kind": "evaluate", "program": "doubler@1", "rows": rows(), **METRIC})
            v2 = await manager.submit({"kind": "evaluate", "program": "doubler", "rows": rows(), **METRIC})
            assert v1["state"] in ("queued", "running") and v2["version"] == 2
            first, latest = await manager.wait(v1["id"], 20), await manager.wait(v2["id"], 20)
        assert first["state"] == "succeeded" and first["best_score"] == 0.0 and first["progress"] == 1.0
        assert latest["state"] == "succeeded" and latest["best_score"] == 100.0
        assert latest["result"]["n"] == 6 and latest["result"]["errors"] == 0
        assert sorted(e["score"] for e in store.evaluations(program="doubler")) == [0.0, 100.0]

    run(main())


def test_optimization_worker_sigkilled_twice_still_finishes_with_the_right_result(store, tmp_path):
    optuna = pytest.importorskip("optuna")

    async def main():
        env = worker_env(JOBS_TEST_LM_DELAY="0.02")
        async with manager_for(store, worker_env=env, max_restarts=3, window=120) as manager:
            job = await manager.submit(
                {
                    "kind": "optimize",
                    "program": "doubler@1",
                    "rows": rows(),
                    **METRIC,
                    "optimizer": "mipro",
                    "settings": {"num_trials": 6, "num_candidates": 2},
                    "save_as": "doubler-opt",
                }
            )
            job_id, seen = job["id"], 0
            for kill in range(2):
                live = await until(
                    lambda seen=seen, kill=kill: (
                        (j := manager.get(job_id))["trials"] > seen and j["attempts"] == kill + 1 and j.get("pid") and j
                    ),
                    what=f"trials of attempt {kill + 1}",
                )
                seen = live["trials"]
                os.kill(live["pid"], signal.SIGKILL)
            final = await manager.wait(job_id, 90)
        assert final["state"] == "succeeded", final["error"]
        assert final["attempts"] == 3 and final["restarts"] == 2
        assert final["best_score"] == 100.0 and final["result"]["best_score"] == 100.0
        assert final["result"]["best_configuration"]["style"] == "careful"
        study = optuna.load_study(study_name=f"elixirml-mipro-job-{job_id}", storage=store.url)
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        assert len(complete) >= 6  # the search ran to its end across three workers
        assert store.run(f"job-{job_id}")["status"] == "finished"
        em.configure(lm=make_lm())
        saved = store.load("doubler-opt", final["result"]["version"])
        examples = [em.Example(r).with_inputs("question") for r in rows()]
        scored = em.evaluate(saved, examples, em.metrics.ExactMatch(field="answer"), display_progress=False)
        assert scored.score == 100.0  # the saved program really is the best one

    run(main(), timeout=150)


def test_restart_intensity_exceeded_fails_the_job_with_the_reason(store):
    async def main():
        # the worker's LM factory raises: every attempt crashes the worker process
        env = worker_env()
        async with manager_for(store, lm="jobs_fixture_lib:crashing_lm", max_restarts=1, worker_env=env) as manager:
            request = {"kind": "optimize", "program": "doubler", "rows": rows(), **METRIC, "optimizer": "labeled"}
            final = await manager.wait((await manager.submit(request))["id"], 60)
        assert final["state"] == "failed" and final["attempts"] == 2
        assert "restart intensity exceeded" in final["error"] and "max_restarts=1" in final["error"]
        assert "RuntimeError: the GPU fell off the bus" in final["error"]  # the worker's own error, from its stderr

    run(main())


def test_a_mistake_no_restart_can_fix_fails_the_job_at_once(store):
    async def main():
        env = worker_env()
        async with manager_for(store, lm="jobs_fixture_lib:no_such_factory", worker_env=env) as manager:
            request = {"kind": "optimize", "program": "doubler", "rows": rows(), **METRIC, "optimizer": "labeled"}
            optimize = await manager.wait((await manager.submit(request))["id"], 60)
            evaluate = await manager.wait((await manager.submit({**request, "kind": "evaluate"}))["id"], 60)
        for final in (optimize, evaluate):
            assert final["state"] == "failed" and final["attempts"] == 1, final
            assert "no callable 'no_such_factory'" in final["error"] and "not retried" in final["error"]

    run(main())


def test_a_crashed_evaluation_restarts_from_its_checkpoint(store, tmp_path, monkeypatch):
    from jobs_fixture_lib import CrashOnce

    calls = tmp_path / "calls.txt"
    monkeypatch.setenv("JOBS_TEST_CALLS_FILE", str(calls))
    monkeypatch.setenv("JOBS_TEST_CRASH_MARKER", str(tmp_path / "crashed"))
    store.save(CrashOnce().with_variables(style="careful"), "crashy")

    async def main():
        async with manager_for(store) as manager:
            request = {"kind": "evaluate", "program": "crashy", "rows": rows(6), **METRIC, "concurrency": 1}
            return await manager.wait((await manager.submit(request))["id"], 30)

    final = run(main())
    assert final["state"] == "succeeded" and final["restarts"] == 1 and final["best_score"] == 100.0
    asked = calls.read_text().splitlines()
    assert len(asked) == 6  # items 0-2 before the crash, 3-5 after it: none asked twice
    assert len({line.split("item ")[-1] for line in asked}) == 6


def test_an_interrupted_job_is_resumed_by_a_new_manager(store, tmp_path):
    calls = tmp_path / "calls.txt"
    os.environ["JOBS_TEST_CALLS_FILE"] = str(calls)
    os.environ["JOBS_TEST_LM_DELAY"] = "0.1"
    try:

        async def first_leg():
            async with manager_for(store) as manager:
                job = await manager.submit(
                    {"kind": "evaluate", "program": "doubler", "rows": rows(12), **METRIC, "concurrency": 1}
                )
                await until(lambda: len(store.checkpoint_records(f"job-{job['id']}")) >= 3, what="3 examples")
            return job["id"]

        job_id = run(first_leg())
        interrupted = store.job(job_id)
        assert interrupted["state"] == "interrupted"
        done_before = len(store.checkpoint_records(f"job-{job_id}"))
        assert 3 <= done_before < 12
        calls_before = len(calls.read_text().splitlines())

        os.environ["JOBS_TEST_LM_DELAY"] = "0"

        async def resumed():
            manager = manager_for(store)
            claimed = await manager.start()
            assert claimed == [job_id]
            final = await manager.wait(job_id, 30)
            await manager.stop()
            return final

        final = run(resumed())
    finally:
        os.environ.pop("JOBS_TEST_CALLS_FILE", None)
        os.environ.pop("JOBS_TEST_LM_DELAY", None)
    assert final["state"] == "succeeded" and final["best_score"] == 100.0 and final["result"]["n"] == 12
    assert final["attempts"] == 2
    new_calls = len(calls.read_text().splitlines()) - calls_before
    assert new_calls <= 12 - done_before + 1  # the checkpointed examples were not asked again


def test_a_job_of_a_dead_process_is_claimed(store):
    job = store.create_job("orphan", kind="evaluate", program="doubler", version=2, spec={"rows": rows(2), **METRIC})
    dead = __import__("subprocess").run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    with store.session() as session:
        from elixirml.store._models import JobRecord

        session.get(JobRecord, job["id"]).pid = int(dead.stdout)
        session.get(JobRecord, job["id"]).state = "running"

    async def main():
        manager = manager_for(store)
        assert await manager.start() == ["orphan"]
        final = await manager.wait("orphan", 20)
        await manager.stop()
        return final

    assert run(main())["state"] == "succeeded"


def test_bad_requests_are_refused_before_anything_runs(store, tmp_path):
    async def main():
        async with manager_for(store, data_dirs=[tmp_path]) as manager:
            cases = [
                ({"kind": "evaluate", "program": "nope", "rows": rows()}, "No stored program"),
                ({"kind": "evaluate", "program": "doubler@9", "rows": rows()}, "no version 9"),
                ({"kind": "evaluate", "program": "doubler@x", "rows": rows()}, "name@N"),
                ({"kind": "evaluate", "program": "doubler"}, "needs data"),
                ({"kind": "evaluate", "program": "doubler", "dataset": "../etc/passwd"}, "No data file"),
                ({"kind": "evaluate", "program": "doubler", "rows": [{"question": "q"}]}, "Mark the input fields"),
                ({"kind": "evaluate", "program": "doubler", "rows": rows(), **METRIC, "metric": "vibes"}, "vibes"),
                ({"kind": "optimize", "program": "doubler", "rows": rows(), **METRIC, "optimizer": "x"}, "Unknown opt"),
                (
                    {"kind": "optimize", "program": "doubler", "rows": rows(), **METRIC, "options": {"max_bogus": 1}},
                    "max_bogus",
                ),
                ({"kind": "train", "program": "doubler", "rows": rows()}, "Bad job request"),
            ]
            for request, message in cases:
                with pytest.raises(em.errors.UserError, match=message):
                    await manager.submit(request)
            assert manager.jobs() == []
        strict = JobManager(store, allow_modules=[])
        async with strict:
            store.add_version("foreign", {}, class_path="somewhere.else:Program")
            with pytest.raises(em.errors.ConfigurationError, match="not allowed to be imported"):
                await strict.submit({"kind": "evaluate", "program": "foreign", "rows": rows(), **METRIC})
        with pytest.raises(em.errors.SupervisorError, match="not running"):
            await strict.submit({"kind": "evaluate", "program": "doubler", "rows": rows(), **METRIC})

    run(main())


def test_the_router_through_a_bare_fastapi_app(store):
    fastapi = pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    manager = manager_for(store)
    os.environ["JOBS_TEST_LM_DELAY"] = "0.2"

    async def token(authorization: str = fastapi.Header("")):
        if authorization != "Bearer s3cret":
            raise fastapi.HTTPException(401, "bad token")

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app):
        await manager.start()
        yield
        await manager.stop()

    app = fastapi.FastAPI(lifespan=lifespan)
    app.include_router(jobs_router(manager, dependencies=[fastapi.Depends(token)]))
    auth = {"Authorization": "Bearer s3cret"}
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            assert client.get("/jobs").status_code == 401
            body = {"kind": "evaluate", "program": "doubler@2", "rows": rows(4), **METRIC}
            created = client.post("/jobs", json=body, headers=auth)
            assert created.status_code == 201, created.text
            job_id = created.json()["id"]
            assert [j["id"] for j in client.get("/jobs", headers=auth).json()] == [job_id]
            deadline = time.monotonic() + 20
            while (job := client.get(f"/jobs/{job_id}", headers=auth).json())["state"] != "succeeded":
                assert time.monotonic() < deadline, job
                time.sleep(0.05)
            assert job["best_score"] == 100.0 and job["progress"] == 1.0
            assert client.delete(f"/jobs/{job_id}", headers=auth).status_code == 409  # already ended

            slow = client.post("/jobs", json={**body, "rows": rows(40), "concurrency": 1}, headers=auth).json()
            cancelled = client.delete(f"/jobs/{slow['id']}", headers=auth)
            assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
            assert client.get(f"/jobs/{slow['id']}", headers=auth).json()["state"] == "cancelled"

            missing = client.get("/jobs/nope", headers=auth)
            assert missing.status_code == 404 and "No job 'nope'" in missing.json()["detail"]
            assert client.delete("/jobs/nope", headers=auth).status_code == 404
            bad = client.post("/jobs", json={**body, "program": "ghost"}, headers=auth)
            assert bad.status_code == 400 and "ghost" in bad.json()["detail"]
            schema = client.post("/jobs", json={**body, "kind": "train"}, headers=auth)
            assert schema.status_code == 422
            assert client.post("/jobs", json={**body, "concurrency": 0}, headers=auth).status_code == 422
            assert client.get("/jobs?state=cancelled", headers=auth).json()[0]["id"] == slow["id"]
    finally:
        os.environ.pop("JOBS_TEST_LM_DELAY", None)


def test_job_rows_are_user_data_and_errors_lose_their_credentials(store):
    rows_with_password = [{"question": "item 1", "answer": "2", "password": "hunter2"}]
    job = store.create_job("data", kind="evaluate", program="doubler", version=2, spec={"rows": rows_with_password})
    assert store.job(job["id"])["spec"]["rows"] == rows_with_password  # a field called password is the user's data
    with pytest.raises(em.errors.ConfigurationError, match="credentials"):
        store.create_job("bad", kind="evaluate", program="doubler", version=2, spec={"settings": {"api_key": "sk-1"}})
    failed = store.update_job("data", state="failed", error="could not reach postgresql://bob:hunter2@db/x")
    assert "hunter2" not in failed["error"] and "postgresql://bob:***@db/x" in failed["error"]
    assert failed["finished_at"] is not None


def test_a_cancelled_job_stays_cancelled_whatever_its_worker_writes_after(store):
    """A worker that started as the job was cancelled wrote state=running over the cancel (seen in the suite)."""
    job = store.create_job("late", kind="evaluate", program="doubler", version=2, spec={"rows": rows()})
    cancelled = store.update_job(job["id"], state="cancelled")
    assert cancelled["state"] == "cancelled" and cancelled["finished_at"] is not None
    after = store.update_job(job["id"], state="running", attempts=1, progress=0.5)
    assert after["state"] == "cancelled" and after["attempts"] == 0 and after["progress"] == cancelled["progress"]
    assert store.job(job["id"])["state"] == "cancelled"


def test_a_restarted_job_of_an_optimizer_that_cannot_resume_starts_a_new_run(store):
    from elixirml.serve._jobs import run_optimization

    manager = manager_for(store)
    job = manager._create({"kind": "optimize", "program": "doubler", "rows": rows(), **METRIC, "optimizer": "labeled"})
    # the first attempt's worker died mid-run: its run is left interrupted, the job counts one attempt
    store.create_run(f"job-{job['id']}", "LabeledFewShot", {})
    store.finish_run(
        f"job-{job['id']}", status="interrupted", best_score=None, best_version_id=None, lm_calls=0, tokens=0, cost=0.0
    )
    store.update_job(job["id"], attempts=1)
    outcome = run_optimization(store, job["id"], lm="jobs_fixture_lib:make_lm", allow_modules=["jobs_fixture_lib"])
    assert outcome["run_id"] == f"job-{job['id']}-2"  # LabeledFewShot keeps no state to resume: a new run
    assert store.run(f"job-{job['id']}-2")["status"] == "finished"
    assert store.run(f"job-{job['id']}")["status"] == "interrupted"


def test_a_job_names_only_what_the_server_has_and_every_field_is_checked_before_recording(store):
    """Issue 34 items 1 and 9: no setting makes the server connect anywhere; bad fields are 400s naming them."""
    fastapi = pytest.importorskip("fastapi")
    import socket
    import threading

    from fastapi.testclient import TestClient

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    port, connections, done = listener.getsockname()[1], [], threading.Event()

    def accept():
        while not done.is_set():
            try:
                connections.append(listener.accept()[0])
            except OSError:
                continue

    watcher = threading.Thread(target=accept, daemon=True)
    watcher.start()
    manager = manager_for(store, lms={"proposer": "jobs_fixture_lib:proposer_lm"})
    app = fastapi.FastAPI()
    app.include_router(jobs_router(manager))
    optimize = {"kind": "optimize", "program": "doubler", "rows": rows(), **METRIC, "optimizer": "mipro"}
    evaluate = {"kind": "evaluate", "program": "doubler", "rows": rows(), **METRIC}
    cases = [
        ({**optimize, "settings": {"storage": f"postgresql+psycopg://127.0.0.1:{port}/x"}}, "settings.storage"),
        ({**optimize, "settings": {"storage": f"sqlite:///{store.url}-other.db"}}, "settings.storage"),
        ({**optimize, "settings": {"executor": "ray"}}, "settings.executor"),
        ({**optimize, "settings": {"n_workers": 4}}, "settings.n_workers"),
        ({**optimize, "settings": {"teacher": {"class": "os:system"}}}, "settings.teacher"),
        ({**optimize, "settings": {"proposer_lm": "boom"}}, "settings.proposer_lm"),
        ({**optimize, "settings": {"proposer_lm": f"openai/x@127.0.0.1:{port}"}}, "settings.proposer_lm"),
        ({**optimize, "settings": {"num_trials": "8"}}, "settings.num_trials"),
        ({**optimize, "settings": {"num_trials": 10**30}}, "settings.num_trials"),
        ({**optimize, "settings": {"auto": "extreme"}}, "settings.auto"),
        ({**optimize, "settings": {"display_progress": "yes"}}, "settings.display_progress"),
        ({**optimize, "settings": {"max_lm_calls": -5}}, "settings.max_lm_calls"),
        ({**optimize, "options": {"timeout": "abc"}}, "options.timeout"),
        ({**optimize, "options": {"max_lm_calls": -5}}, "options.max_lm_calls"),
        ({**optimize, "options": {"max_lm_calls": True}}, "options.max_lm_calls"),
        ({**optimize, "options": {"max_cost": 0}}, "options.max_cost"),
        ({**optimize, "settings": {"seed": 10**400}}, "settings.seed"),
        ({**optimize, "options": {"storage": "sqlite:///x.db"}}, "options.storage"),
        ({**optimize, "optimizer": "labeled", "options": {"num_trials": 3}}, "options.num_trials"),
        ({**optimize, "optimizer": "labeled", "settings": {"k": -1}}, "settings.k"),
        ({**evaluate, "settings": {"seed": 1}}, "settings"),
        ({**evaluate, "program": "doubler@99999999999999999999999"}, "program"),
        ({**evaluate, "program": "doubler@2147483648"}, "program"),
        ({**evaluate, "program": "doubler@\u0661"}, "name@N"),  # an Arabic-Indic digit is not a version number
    ]
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            client.portal.call(manager.start)
            for body, field in cases:
                answer = client.post("/jobs", json=body)
                assert answer.status_code == 400, (body, answer.status_code, answer.text)
                assert field in answer.json()["detail"], (field, answer.json())
            huge = client.post("/jobs", json={**evaluate, "limit": 10**30})
            assert huge.status_code == 422 and "limit" in huge.text
            assert store.jobs() == []  # nothing was recorded
            client.portal.call(manager.stop)
    finally:
        done.set()
        watcher.join(5)
        listener.close()
    assert connections == []  # the server never opened a connection a client named


def test_an_optimization_uses_the_server_lm_a_job_names(store, tmp_path, monkeypatch):
    proposed = tmp_path / "proposed.txt"
    env = worker_env(JOBS_TEST_PROPOSER_FILE=str(proposed))

    async def main():
        lms = {"proposer": "jobs_fixture_lib:proposer_lm"}
        async with manager_for(store, lms=lms, worker_env=env) as manager:
            request = {
                "kind": "optimize",
                "program": "doubler@1",
                "rows": rows(),
                **METRIC,
                "optimizer": "mipro",
                "settings": {"proposer_lm": "proposer", "num_trials": 2, "num_candidates": 2},
            }
            return await manager.wait((await manager.submit(request))["id"], 90)

    final = run(main(), timeout=120)
    assert final["state"] == "succeeded", final["error"]
    assert proposed.read_text().splitlines()  # the named LM, built in the worker from the server's own list


def test_two_managers_on_one_store_run_an_interrupted_job_exactly_once(store, tmp_path, monkeypatch):
    """Issue 34 item 9: both managers resumed the same interrupted job; the claim is a compare-and-set now."""
    calls = tmp_path / "calls.txt"
    monkeypatch.setenv("JOBS_TEST_CALLS_FILE", str(calls))
    monkeypatch.setenv("JOBS_TEST_LM_DELAY", "0.1")

    async def first_leg():
        async with manager_for(store) as manager:
            job = await manager.submit(
                {"kind": "evaluate", "program": "doubler", "rows": rows(12), **METRIC, "concurrency": 1}
            )
            await until(lambda: len(store.checkpoint_records(f"job-{job['id']}")) >= 3, what="3 examples")
        return job["id"]

    job_id = run(first_leg())
    assert store.job(job_id)["state"] == "interrupted" and store.job(job_id)["owner"] == ""  # released
    calls_before = len(calls.read_text().splitlines())
    monkeypatch.setenv("JOBS_TEST_LM_DELAY", "0.02")

    async def two_at_once():
        first, second = manager_for(store), manager_for(store)
        claimed = await asyncio.gather(first.start(), second.start())
        try:
            winner = first if claimed[0] else second
            final = await winner.wait(job_id, 30)
            await asyncio.sleep(0.3)  # the loser's lease rounds see a finished job and take nothing
            return claimed, final, winner.owner
        finally:
            await asyncio.gather(first.stop(), second.stop())

    claimed, final, winner = run(two_at_once())
    assert sorted(claimed) == [[], [job_id]]  # exactly one manager took it
    assert final["state"] == "succeeded" and final["attempts"] == 2 and final["result"]["n"] == 12
    asked = calls.read_text().splitlines()[calls_before:]
    assert len(asked) == len(set(asked)) <= 12  # no example asked by both managers
    assert store.job(job_id)["owner"] == ""  # the winner released it when it ended
    assert winner != manager_for(store).owner  # managers of one process are told apart


def test_a_job_is_taken_over_only_when_its_lease_has_expired(store, monkeypatch):
    """A running job keeps its lease (renewed); another host's job is taken once its lease expires."""
    monkeypatch.setenv("JOBS_TEST_LM_DELAY", "0.2")
    spec = {"rows": rows(2), **METRIC}
    store.create_job(
        "elsewhere-live", kind="evaluate", program="doubler", version=2, spec=spec, owner="b:1:x", lease=60
    )
    store.create_job(
        "elsewhere-dead", kind="evaluate", program="doubler", version=2, spec=spec, owner="b:1:y", lease=-1
    )
    with store.session() as session:  # both were recorded by a manager on another host
        from elixirml.store._models import JobRecord

        for job_id in ("elsewhere-live", "elsewhere-dead"):
            session.get(JobRecord, job_id).host = "another-host"

    async def main():
        owner = manager_for(store, lease=1.5)
        assert await owner.start() == ["elsewhere-dead"]  # expired lease: taken over; the live one is left
        slow = await owner.submit(
            {"kind": "evaluate", "program": "doubler", "rows": rows(18), **METRIC, "concurrency": 1}
        )
        await asyncio.sleep(2.5)  # well past one lease: the running manager has renewed it
        other = manager_for(store, lease=1.5)
        try:
            assert await other.start() == []
            await asyncio.sleep(0.8)  # the other manager's rounds keep leaving it alone
            assert not other._watchers
            final = await owner.wait(slow["id"], 30)
        finally:
            await other.stop()
            await owner.stop()
        return final, await asyncio.to_thread(store.job, "elsewhere-dead")

    final, taken = run(main())
    assert final["state"] == "succeeded" and final["attempts"] == 1
    assert taken["state"] == "succeeded" and taken["attempts"] == 1
    assert store.job("elsewhere-live")["state"] == "queued" and store.job("elsewhere-live")["owner"] == "b:1:x"


def test_a_store_from_before_leases_upgrades_and_its_jobs_still_resume(tmp_path):
    old = em.Store(f"sqlite:///{tmp_path / 'old.db'}")
    old.save(Doubler().with_variables(style="careful"), "doubler")
    old.downgrade("0007")
    old.close()
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    with engine.begin() as connection:  # a job as the previous release recorded it, left interrupted
        connection.execute(
            sa.text(
                "INSERT INTO em_jobs (id, kind, program, version, spec, state, progress, trials, attempts, result, "
                "error, host, pid, created_at, updated_at) VALUES ('old', 'evaluate', 'doubler', 1, :spec, "
                "'interrupted', 0, 0, 1, '{}', '', 'h', 1, '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
            ),
            {"spec": __import__("json").dumps({"rows": rows(3), **METRIC})},
        )
    engine.dispose()
    store = em.Store(f"sqlite:///{tmp_path / 'old.db'}")  # opening it upgrades it
    try:
        assert store.job("old")["owner"] is None

        async def main():
            manager = manager_for(store)
            assert await manager.start() == ["old"]
            final = await manager.wait("old", 20)
            await manager.stop()
            return final

        final = run(main())
        assert final["state"] == "succeeded" and final["best_score"] == 100.0 and final["attempts"] == 2
    finally:
        store.close()


def test_elixirml_serve_names_the_lms_jobs_may_use(monkeypatch):
    from typer.testing import CliRunner

    import elixirml.serve
    from elixirml.cli import app

    seen = {}
    monkeypatch.setattr(elixirml.serve, "create_app", lambda **kwargs: seen.update(kwargs) or "app")
    monkeypatch.setattr(elixirml.serve, "run", lambda app, **kwargs: seen.update(served=app))
    runner = CliRunner()
    given = ["serve", "--job-lm", "proposer=jobs_fixture_lib:proposer_lm", "--job-lm", "big=openai/gpt-4o"]
    assert runner.invoke(app, given).exit_code == 0
    assert seen["job_lms"] == {"proposer": "jobs_fixture_lib:proposer_lm", "big": "openai/gpt-4o"}
    assert seen["served"] == "app"
    bad = runner.invoke(app, ["serve", "--job-lm", "openai/gpt-4o"])
    assert bad.exit_code == 2 and "NAME=MODEL" in bad.output


def test_a_manager_whose_job_was_taken_over_stops_working_on_it(store, tmp_path, monkeypatch):
    """A manager stalled past its lease finds the job held by another one: it stops its worker and writes nothing."""
    import datetime as dt

    from elixirml.store._models import JobRecord

    calls = tmp_path / "calls.txt"
    monkeypatch.setenv("JOBS_TEST_CALLS_FILE", str(calls))
    monkeypatch.setenv("JOBS_TEST_LM_DELAY", "0.1")

    async def main():
        async with manager_for(store, lease=0.9) as manager:
            job = await manager.submit(
                {"kind": "evaluate", "program": "doubler", "rows": rows(40), **METRIC, "concurrency": 1}
            )
            await until(lambda: calls.exists() and calls.read_text().count("\n") >= 2, what="2 calls")
            with store.session() as session:  # as a manager that saw the lease expire would have taken it
                record = session.get(JobRecord, job["id"])
                record.owner = "elsewhere:1:z"
                record.lease_expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=60)
            await until(lambda: not manager._watchers, timeout=10, what="the worker to stop")
            await asyncio.sleep(0.3)  # an LM call in flight when it stopped may still finish
            asked = calls.read_text().count("\n")
            await asyncio.sleep(0.5)
            assert calls.read_text().count("\n") == asked  # no more calls for a job it no longer holds
            return job["id"]

    job_id = run(main())
    taken = store.job(job_id)
    assert taken["owner"] == "elsewhere:1:z" and taken["state"] not in ("interrupted", "succeeded", "cancelled")


def test_jobs_print_their_start_progress_and_end_on_the_servers_stderr(store, capfd):
    async def main():
        async with manager_for(store, worker_env=worker_env()) as manager:
            evaluation = await manager.submit({"kind": "evaluate", "program": "doubler", "rows": rows(), **METRIC})
            optimization = await manager.submit(
                {"kind": "optimize", "program": "doubler", "rows": rows(), **METRIC, "optimizer": "bootstrap"}
            )
            for job in (evaluation, optimization):
                assert (await manager.wait(job["id"], 60))["state"] == "succeeded"
        return evaluation["id"], optimization["id"]

    evaluation, optimization = run(main(), timeout=90)
    err = capfd.readouterr().err.splitlines()
    mine = [line for line in err if line.startswith(f"job {evaluation}: ")]
    assert mine[0] == f"job {evaluation}: evaluating doubler v2 on 6 examples (attempt 1)"
    assert any(line.startswith(f"job {evaluation}: 6/6 examples (100%)") for line in mine)
    assert mine[-1].startswith(f"job {evaluation}: done in") and mine[-1].endswith("6 examples, score 100.0%")
    # the worker subprocess's lines (its start, the optimizer's projection and end) reach the server's stderr
    worker = [line for line in err if line.startswith(f"job {optimization}: ")]
    assert worker[0].startswith(f"job {optimization}: optimizing doubler v2 with BootstrapFewShot on 6 rows")
    assert any("BootstrapFewShot: projected" in line for line in worker)
    assert any("BootstrapFewShot: done in" in line for line in worker)
