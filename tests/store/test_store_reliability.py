"""The store under concurrent writers, crashes, resumes and many versions (reliability issue items 6 and 11)."""

import os
import sqlite3
import subprocess
import sys
import textwrap
import warnings

import pytest
import sqlalchemy as sa

import elixirml as em
from elixirml.errors import StoreError

WAIT = """
import os, sys, time
go = sys.argv[1]
while not os.path.exists(go):
    time.sleep(0.005)
"""

SAVER = WAIT + textwrap.dedent(
    """
    import elixirml as em
    url, saves = sys.argv[2], int(sys.argv[3])
    store = em.Store(url)
    program = em.Predict("question -> answer")
    for i in range(saves):
        program.instructions = f"Answer {os.getpid()} {i}."
        store.save(program, "shared")
    store.close()
    """
)

CHECKPOINTER = WAIT + textwrap.dedent(
    """
    import elixirml as em
    url = sys.argv[2]
    store = em.Store(url)
    for i in range(40):
        store.add_checkpoint_record("ckpt", f"key-{i}", {"key": f"key-{i}", "by": os.getpid()})
    store.close()
    """
)


def start_together(tmp_path, script, *args, processes=3):
    """Run ``processes`` copies of ``script`` that all start their work at the same moment."""
    go = tmp_path / "go"
    children = [
        subprocess.Popen([sys.executable, "-c", script, str(go), *args], stderr=subprocess.PIPE, text=True)
        for _ in range(processes)
    ]
    go.touch()
    outcomes = [(child.wait(timeout=120), child.stderr.read()) for child in children]
    assert [code for code, _ in outcomes] == [0] * processes, [err[-1500:] for _, err in outcomes]


def test_concurrent_savers_get_unique_version_numbers(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"  # a new file: the processes also race to create the schema
    start_together(tmp_path, SAVER, url, "12")
    store = em.Store(url)
    assert [v["number"] for v in store.versions("shared")] == list(range(1, 37))
    store.close()


def test_concurrent_writers_share_a_store_checkpoint(tmp_path):
    url = f"sqlite:///{tmp_path / 'ckpt.db'}"
    em.Store(url).close()
    start_together(tmp_path, CHECKPOINTER, url, processes=4)
    store = em.Store(url)
    assert sorted(store.checkpoint_records("ckpt")) == sorted(f"key-{i}" for i in range(40))
    store.close()


def test_a_checkpoint_row_written_meanwhile_by_another_writer_is_not_a_crash(tmp_path):
    from sqlalchemy.orm import Session

    url = f"sqlite:///{tmp_path / 'race.db'}"
    store, other = em.Store(url), em.Store(url)
    raced = []

    def competitor(session, context, instances):
        if not raced:  # between this writer's read and its insert, another one writes the same key
            raced.append(True)
            other.add_checkpoint_record("ckpt", "k", {"by": "other"})

    sa.event.listen(Session, "before_flush", competitor)
    try:
        store.add_checkpoint_record("ckpt", "k", {"by": "me"})
    finally:
        sa.event.remove(Session, "before_flush", competitor)
    assert raced and store.checkpoint_records("ckpt") == {"k": {"by": "me"}}
    store.close()
    other.close()


def test_database_failures_are_store_errors_never_raw(tmp_path):
    store = em.Store(f"sqlite:///{tmp_path / 'gone.db'}")
    store.save(em.Predict("q -> a"), "p")
    with store.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
        conn.exec_driver_sql("DROP TABLE em_state_blobs")
        conn.commit()
    with pytest.raises(StoreError, match="Saving a version of 'p'.*no such table"):
        store.save(em.Predict("q -> a"), "p")
    store.close()


class Task(em.Program):
    temperature = em.Variable.float(default=1.0, low=0.0, high=2.0)

    def __init__(self):
        super().__init__()
        self.solve = em.Predict("question -> answer")

    def forward(self, question):
        return self.solve(question=question, config={"temperature": self.temperature})


def data(n=6):
    return [em.Example(question=f"item {i}", answer=str(i)).with_inputs("question") for i in range(n)]


def number_lm(calls=None):
    def answer(messages, settings):
        if calls is not None:
            calls.append(1)
        words = messages[-1]["content"].rsplit("item ", 1)[-1].split()
        number = words[0] if words else ""
        right = settings.get("temperature", 1.0) < 0.5
        return {"answer": number if right else "?", "summary": "Numbers.", "proposed_instruction": "Copy the number."}

    return em.FunctionLM(answer, cache=False)


def test_compile_returns_the_program_when_saving_fails(tmp_path):
    store = em.Store(f"sqlite:///{tmp_path / 'refusing.db'}")

    def refuse(kind, record):
        raise StoreError("the disk is full")

    store.on("before_save", refuse)
    em.configure(lm=number_lm(), store=store)
    optimizer = em.optimizers.RandomSearch(em.metrics.exact_match, num_candidates=3, seed=1)
    with pytest.warns(RuntimeWarning, match="could not save the result as 'kept'.*disk is full"):
        compiled = optimizer.compile(Task(), trainset=data(), save_as="kept")
    assert isinstance(compiled, Task)
    assert isinstance(optimizer.last_result.save_error, StoreError)
    assert optimizer.last_result.version is None
    run = store.run(optimizer.last_result.run_id)
    assert run["status"] == "save_failed" and run["trials"] == 3


def test_a_failed_optimization_does_not_leave_its_run_running(tmp_path):
    url = f"sqlite:///{tmp_path / 'failing.db'}"

    class Exploding(em.optimizers.RandomSearch):
        def optimize_step(self, state):
            if state.trials:
                raise RuntimeError("boom")
            return super().optimize_step(state)

    em.configure(lm=number_lm(), store=url)
    optimizer = Exploding(em.metrics.exact_match, num_candidates=3, search_variables=False)
    with pytest.raises(RuntimeError, match="boom"):
        optimizer.compile(Task(), trainset=data(), save_as="exploding")
    store = em.Store(url)
    [run] = store.runs()
    assert run["status"] == "failed" and run["trials"] == 1
    store.close()


DIES = textwrap.dedent(
    """
    import os, sys
    import elixirml as em
    store = em.Store(sys.argv[1])
    store.create_run("doomed", "RandomSearch", {})
    os._exit(9)  # as a SIGKILL would: nothing after this line runs
    """
)


def test_a_run_whose_process_ended_is_reported_interrupted(tmp_path):
    url = f"sqlite:///{tmp_path / 'killed.db'}"
    assert subprocess.run([sys.executable, "-c", DIES, url], timeout=120).returncode == 9
    store = em.Store(url)
    store.create_run("alive", "RandomSearch", {})  # this process's own run is still running
    statuses = {run["id"]: run["status"] for run in store.runs()}
    assert statuses == {"doomed": "interrupted", "alive": "running"}
    assert store.run("doomed")["status"] == "interrupted"
    store.close()


def test_identical_states_are_stored_once(tmp_path):
    store = em.Store(f"sqlite:///{tmp_path / 'dedup.db'}")
    program = em.Predict("question -> answer")
    program.demos = [em.Example(question="q" * 1000, answer=str(i)) for i in range(20)]

    def blobs():
        with store.engine.connect() as conn:
            return conn.execute(sa.text("SELECT COUNT(*) FROM em_state_blobs")).scalar()

    store.save(program, "big")
    once = blobs()  # the state and the configuration (it holds the demos too)
    for _ in range(9):
        store.save(program, "big")
    assert blobs() == once
    program.instructions = "Something else."
    store.save(program, "big")
    assert blobs() <= 2 * once
    assert len(store.versions("big")) == 11
    assert store.load("big", version=3).dump_state() != program.dump_state()
    assert store.load("big").dump_state() == program.dump_state()
    store.close()


def test_save_and_load_touch_no_other_versions(tmp_path):
    from elixirml.store._models import ProgramVersion

    store = em.Store(f"sqlite:///{tmp_path / 'many.db'}")
    program = em.Predict("question -> answer")
    loaded = []
    record = lambda target, context: loaded.append(type(target).__name__)  # noqa: E731
    sa.event.listen(ProgramVersion, "load", record)
    try:

        def cost_of_save_and_load(i):
            program.instructions = f"Version {i}."
            loaded.clear()
            store.save(program, "p")
            store.load("p")
            store.load("p", version=1)
            return sorted(loaded)

        store.save(program, "p")
        early = cost_of_save_and_load(0)
        for i in range(1, 25):
            program.instructions = f"Filler {i}."
            store.save(program, "p")
        late = cost_of_save_and_load(99)
    finally:
        sa.event.remove(ProgramVersion, "load", record)
    assert late == early  # the same rows read whether the program has 1 version or 26
    store.close()


def test_migrating_an_old_store_moves_states_into_blobs(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    store = em.Store(url, migrate=False)
    store.upgrade("0002")
    with store.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO em_programs (id, name, signature_summary, class_path, created_at) "
                "VALUES (1, 'old', '', 'elixirml.program._predict:Predict', '2024-01-01')"
            )
        )
        state = em.Predict("question -> answer").dump_state()
        import json

        for number in (1, 2):
            conn.execute(
                sa.text(
                    "INSERT INTO em_program_versions (program_id, number, state, configuration, tags, message, "
                    "content_hash, created_at) VALUES (1, :n, :s, '{}', '[]', '', 'h', '2024-01-01')"
                ),
                {"n": number, "s": json.dumps(state)},
            )
    store.upgrade()
    assert store.load("old", version=2).dump_state() == em.Predict("question -> answer").dump_state()
    with store.engine.connect() as conn:  # one state and one (empty) configuration for both versions
        assert conn.execute(sa.text("SELECT COUNT(*) FROM em_state_blobs")).scalar() == 2
    store.downgrade("0002")
    store.upgrade()
    assert store.load("old", version=1).dump_state() == em.Predict("question -> answer").dump_state()
    store.close()


def test_mipro_resume_numbers_trials_uniquely_sums_calls_and_is_idempotent(tmp_path):
    pytest.importorskip("optuna")
    url = f"sqlite:///{tmp_path / 'resume.db'}"
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    calls: list[int] = []
    em.configure(lm=number_lm(calls), store=url)

    def optimizer():
        return em.optimizers.MIPRO(em.metrics.exact_match, num_trials=4, num_candidates=3, storage=storage)

    first = optimizer()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first.compile(Task(), trainset=data(), resume="legs", max_trials=3)
    assert first.last_result.stopped == "max_trials"
    first_calls = len(calls)
    second = optimizer()
    program = second.compile(Task(), trainset=data(), resume="legs")
    assert second.last_result.stopped is None
    store = em.Store(url)
    run = store.run("legs")
    numbers = [t["number"] for t in run["trial_list"]]
    # leg 1: the baseline, the structures scored first, then search trials; leg 2 lists every one of them
    assert [t.number for t in second.last_result.trials[: len(first.last_result.trials)]] == [
        t.number for t in first.last_result.trials
    ]
    assert len(numbers) == len(set(numbers)) == len(second.last_result.trials)  # nothing overwritten
    assert [t.number for t in second.last_result.trials] == numbers
    assert run["lm_calls"] == len(calls) == second.last_result.lm_calls  # both legs, summed
    assert run["status"] == "finished"
    versions = len(store.versions("Task"))

    calls_before = len(calls)
    third = optimizer()
    again = third.compile(Task(), trainset=data(), resume="legs")
    assert len(calls) == calls_before  # a finished run is not run again...
    assert len(store.versions("Task")) == versions  # ...nor saved again
    assert again.dump_state() == program.dump_state()
    assert third.last_result.lm_calls == run["lm_calls"] and store.run("legs")["status"] == "finished"
    assert first_calls < len(calls)
    store.close()


# ---------------------------------------------------------------- issue 35: store edges are StoreErrors with what to do
def test_a_store_from_a_newer_schema_revision_says_to_upgrade(tmp_path):
    path = tmp_path / "newer.db"
    em.Store(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE em_alembic_version SET version_num = '9999_from_the_future'")
    with pytest.raises(StoreError, match="newer ElixirML.*'9999_from_the_future'.*pip install -U elixirml"):
        em.Store(f"sqlite:///{path}")


def test_a_file_that_is_not_sqlite_is_a_store_error(tmp_path):
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my notes, not a database\n" * 50)
    with pytest.raises(StoreError, match="not an SQLite database.*point the store at another file"):
        em.Store(f"sqlite:///{path}")
    assert path.read_bytes().startswith(b"these are my notes")  # left as it was


def _filled_store(path):
    store = em.Store(f"sqlite:///{path}")
    store.save(em.Predict("question -> answer", instructions="Be brief."), "qa")
    store.close()


def test_a_store_that_cannot_be_written_opens_for_reading(tmp_path, monkeypatch):
    path = tmp_path / "shared.db"
    _filled_store(path)
    real_access = os.access
    # what os.access says on a read-only file system (root included) or without write permission
    monkeypatch.setattr(os, "access", lambda p, mode: False if mode & os.W_OK else real_access(p, mode))
    store = em.Store(f"sqlite:///{path}")
    assert store.read_only and "read-only" in repr(store)
    assert store.load("qa").instructions == "Be brief."
    assert [p["name"] for p in store.programs()] == ["qa"] and store.runs() == []
    with pytest.raises(StoreError, match="cannot be written here.*copy the file to a writable disk"):
        store.save(em.Predict("question -> answer"), "qa")
    store.close()


def test_a_store_on_a_read_only_file_system_opens_for_reading(tmp_path):
    """The real thing, where the sandbox lets an unprivileged user mount (``unshare -rm``)."""
    import shutil

    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rm", "true"]).returncode != 0:
        pytest.skip("needs unshare -rm to mount a read-only file system")
    folder = tmp_path / "ro"
    folder.mkdir()
    _filled_store(folder / "store.db")
    script = (
        "import elixirml as em\n"
        f"store = em.Store('sqlite:///{folder / 'store.db'}')\n"
        "print(store.read_only, store.load('qa').instructions)\n"
    )
    mount = f"mount --bind {folder} {folder} && mount -o remount,ro,bind {folder}"
    result = subprocess.run(
        ["unshare", "-rm", "sh", "-c", f'{mount} && exec "$0" -c "$1"', sys.executable, script],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "True Be brief."
