import json

import pytest
import sqlalchemy as sa

import elixirml as em
from elixirml.errors import ConfigurationError, LoadError, VariableError


class Pipeline(em.Program):
    temperature = em.Variable.float(default=0.7, low=0.0, high=2.0)
    strategy = em.Variable.module({"direct": em.Predict, "cot": em.ChainOfThought}, default="cot")

    def __init__(self):
        super().__init__()
        self.answer = self.strategy("question -> answer")

    def forward(self, question):
        return self.answer(question=question, config={"temperature": self.temperature})


@pytest.fixture
def store(tmp_path):
    s = em.Store(f"sqlite:///{tmp_path / 'store.db'}")
    yield s
    s.close()


def test_save_load_round_trip_and_version_chain(store):
    program = Pipeline().with_variables(strategy="direct", temperature=0.2)
    program.answer.demos = [em.Example(question="q", answer="a").with_inputs("question")]
    v1 = store.save(program, "qa", tags=["baseline"])
    loaded = store.load("qa")
    assert type(loaded) is Pipeline and loaded.dump_state() == program.dump_state()
    assert type(loaded.answer) is em.Predict and loaded.temperature == 0.2
    program.answer.instructions = "Answer briefly."
    v2 = store.save(program, "qa", message="shorter")
    v3 = store.save(program.with_variables(temperature=0.9), "qa", parent=1)
    assert (v1["number"], v2["number"], v3["number"]) == (1, 2, 3)
    assert v2["parent"] == 1 and v3["parent"] == 1 and v1["parent"] is None
    assert store.load("qa", version=1).answer.instructions != "Answer briefly."
    assert store.load("qa", version=f"#{v2['id']}").answer.instructions == "Answer briefly."
    assert [v["number"] for v in store.versions("qa")] == [1, 2, 3]
    assert store.programs()[0]["name"] == "qa" and store.programs()[0]["versions"] == 3
    changes = store.diff("qa", 1, 3)
    assert changes["configuration"]["temperature"] == {"from": 0.2, "to": 0.9}
    assert changes["predictors"]["answer"]["instructions"]["to"] == "Answer briefly."
    assert v1["content_hash"] != v2["content_hash"]


def test_configuration_outside_the_space_is_refused(store):
    store.save(Pipeline(), "qa")
    state = Pipeline().dump_state()
    with pytest.raises(VariableError, match=r"temperature.*out of range"):
        store.add_version("qa", state, configuration={"temperature": 5.0})
    with pytest.raises(VariableError, match="strategy.*not one of"):
        store.add_version("qa", state, configuration={"strategy": "tree"})
    with pytest.raises(VariableError, match="unknown variable 'bogus'"):
        store.add_version("qa", state, configuration={"bogus": 1})
    assert len(store.versions("qa")) == 1


def test_missing_programs_and_versions_are_clear(store):
    with pytest.raises(LoadError, match="No stored program named 'nope'"):
        store.load("nope")
    store.save(Pipeline(), "qa")
    with pytest.raises(LoadError, match="no version 7"):
        store.load("qa", version=7)


def test_tampered_rows_never_execute_code(store, tmp_path):
    marker = tmp_path / "pwned"
    store.save(em.Predict("question -> answer"), "p")
    with store.engine.begin() as conn:  # states are kept once each, in em_state_blobs
        row = conn.execute(
            sa.text("SELECT hash, state FROM em_state_blobs WHERE hash = (SELECT state_hash FROM em_program_versions)")
        ).one()
        state = json.loads(row.state) if isinstance(row.state, str) else row.state
        state["signature"]["fields"][0]["type"] = f"__import__('os').system('touch {marker}')"
        conn.execute(
            sa.text("UPDATE em_state_blobs SET state = :s WHERE hash = :h"), {"s": json.dumps(state), "h": row.hash}
        )
    with pytest.raises(LoadError):
        store.load("p")
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE em_programs SET class_path = 'os:system'"))
        conn.execute(sa.text("UPDATE em_program_versions SET class_path = 'os:system'"))
    with pytest.raises(LoadError, match="not a program class"):
        store.load("p")
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE em_program_versions SET class_path = 'elixirml_no_such_module:X'"))
    with pytest.raises(LoadError, match="Cannot import module 'elixirml_no_such_module'"):
        store.load("p")
    with pytest.raises(LoadError, match="never imports"):
        store.load("p", import_code=False)
    assert not marker.exists()


def test_hooks_and_secret_refusal(store):
    seen = []
    store.on("after_save", lambda kind, record: seen.append((kind, record["number"])))

    def refuse(kind, record):
        if "blocked" in record["tags"]:
            raise ConfigurationError("blocked by policy")

    store.on("before_save", refuse)
    store.save(Pipeline(), "qa")
    with pytest.raises(ConfigurationError, match="policy"):
        store.save(Pipeline(), "qa", tags=["blocked"])
    assert seen == [("version", 1)]
    with pytest.raises(ConfigurationError, match="credentials"):
        store.add_version("x", {"lm": {"defaults": {"api_key": "sk-123"}}})
    with pytest.raises(ConfigurationError, match="Unknown store event"):
        store.on("whenever", print)


def test_alembic_upgrade_and_downgrade(tmp_path):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    store = em.Store(url, migrate=False)
    assert "em_programs" not in sa.inspect(store.engine).get_table_names()
    store.upgrade()
    tables = set(sa.inspect(store.engine).get_table_names())
    assert {
        "em_programs",
        "em_program_versions",
        "em_variable_spaces",
        "em_optimization_runs",
        "em_trials",
        "em_evaluations",
        "em_executions",
        "em_alembic_version",
    } <= tables
    store.downgrade()
    assert not [
        t for t in sa.inspect(store.engine).get_table_names() if t.startswith("em_") and t != "em_alembic_version"
    ]
    store.upgrade()
    store.save(em.Predict("q -> a"), "again")
    store.close()


def test_evaluate_and_optimizers_write_to_the_configured_store(tmp_path):
    url = f"sqlite:///{tmp_path / 'auto.db'}"
    em.configure(store=url, lm=em.DummyLM({"item": {"answer": "0"}}))
    data = [em.Example(question=f"item {i}", answer=str(i)).with_inputs("question") for i in range(4)]
    em.evaluate(em.Predict("question -> answer"), data, em.metrics.exact_match, display_progress=False)
    optimizer = em.optimizers.RandomSearch(em.metrics.exact_match, num_candidates=2, max_bootstrapped_demos=1)
    optimizer.compile(em.Predict("question -> answer"), trainset=data, save_as="counter")
    store = em.Store(url)
    evaluations = store.evaluations()
    assert len(evaluations) == 1 and evaluations[0]["score"] == 25.0 and evaluations[0]["n"] == 4
    runs = store.runs(program="counter")
    assert len(runs) == 1 and runs[0]["status"] == "finished" and runs[0]["trials"] == 2
    detail = store.run(runs[0]["id"])
    assert [t["number"] for t in detail["trial_list"]] == [0, 1]
    assert store.load("counter").signature.signature == "question: str -> answer: str"
    store.close()


def test_each_version_loads_as_the_class_it_was_saved_from(store):
    store.save(Pipeline(), "qa")  # a custom program first, then built-in modules under the same name
    store.save(em.ChainOfThought("question -> answer"), "qa")
    store.save(em.Predict("question -> answer"), "qa")
    assert type(store.load("qa", version=1)) is Pipeline
    assert type(store.load("qa", version=2)) is em.ChainOfThought
    assert type(store.load("qa", version=3)) is em.Predict
    assert [v["class_path"].rpartition(":")[2] for v in store.versions("qa")] == [
        "Pipeline",
        "ChainOfThought",
        "Predict",
    ]
    assert store.get_version("qa", 2)["class_path"].endswith(":ChainOfThought")
    changes = store.diff("qa", 2, 3)
    assert changes["class"]["from"].endswith(":ChainOfThought") and changes["class"]["to"].endswith(":Predict")
    entry = changes["predictors"]["self"]
    assert entry["type"] == {"from": "ChainOfThought", "to": "Predict"}
    assert entry["signature"] == {
        "from": "question: str -> reasoning: str, answer: str",
        "to": "question: str -> answer: str",
    }
    assert store.diff("qa", 3, 3) == {"class": None, "configuration": {}, "predictors": {}}


def _today_schema_store(url: str) -> None:
    """A store as the schema before 0007 wrote it: the class only on the program row."""
    from elixirml.store import ResourceStore, content_hash, state_hash

    old = ResourceStore(url, migrate=False)
    old.upgrade("0006")
    state = em.ChainOfThought("question -> answer").dump_state()
    with old.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO em_programs (id, name, signature_summary, class_path, created_at) "
                "VALUES (1, 'qa', 'self: question -> answer', 'elixirml.program._predict:ChainOfThought', "
                "CURRENT_TIMESTAMP)"
            )
        )
        for digest, content in ((state_hash(state), state), (state_hash({}), {})):
            conn.execute(
                sa.text("INSERT INTO em_state_blobs (hash, state) VALUES (:h, :s)"),
                {"h": digest, "s": json.dumps(content)},
            )
        conn.execute(
            sa.text(
                "INSERT INTO em_program_versions (program_id, number, state_hash, configuration_hash, tags, message, "
                "content_hash, created_at) VALUES (1, 1, :s, :c, '[]', '', :w, CURRENT_TIMESTAMP)"
            ),
            {"s": state_hash(state), "c": state_hash({}), "w": content_hash(state, {})},
        )
    old.close()


def test_a_store_of_the_previous_schema_keeps_loading_after_the_class_migration(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    _today_schema_store(url)
    store = em.Store(url)  # upgrades to 0007
    assert type(store.load("qa", version=1)) is em.ChainOfThought
    assert store.versions("qa")[0]["class_path"] == "elixirml.program._predict:ChainOfThought"
    store.save(em.Predict("question -> answer"), "qa")
    assert type(store.load("qa", version=1)) is em.ChainOfThought and type(store.load("qa")) is em.Predict
    store.downgrade("0006")  # and back: the old schema still holds its rows
    with store.engine.begin() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM em_program_versions")).scalar() == 2
    store.close()


def test_the_cli_and_console_show_each_versions_class(tmp_path):
    pytest.importorskip("fastapi", reason="the console needs the 'serve' extra")
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from elixirml.cli import app
    from elixirml.console import create_console_app

    url = f"sqlite:///{tmp_path / 'both.db'}"
    store = em.Store(url)
    store.save(em.ChainOfThought("question -> answer"), "qa")
    store.save(em.Predict("question -> answer"), "qa")
    store.close()
    diff = CliRunner().invoke(app, ["--store", url, "programs", "diff", "qa", "1", "2"])
    assert diff.exit_code == 0, diff.output
    assert "no differences" not in diff.output
    assert "class: elixirml.program._predict:ChainOfThought -> elixirml.program._predict:Predict" in diff.output
    assert "self.type: 'ChainOfThought' -> 'Predict'" in diff.output
    shown = CliRunner().invoke(app, ["--store", url, "programs", "show", "qa", "--version", "1"])
    assert "class elixirml.program._predict:ChainOfThought" in shown.output
    with TestClient(create_console_app(url), base_url="http://localhost") as c:
        page = c.get("/catalog/qa/diff", params={"a": 1, "b": 2}).text
        assert "are of the same class" not in page
        assert "elixirml.program._predict:ChainOfThought</code> → <code>elixirml.program._predict:Predict" in page
        listing = c.get("/catalog/qa").text
        assert ">ChainOfThought</td>" in listing and ">Predict</td>" in listing
        version = c.get("/catalog/qa/versions/1").text
        assert "elixirml.program._predict:ChainOfThought" in version


def test_a_version_saved_from_a_script_before_0007_says_how_to_load_it(store):
    store.save(Pipeline(), "old")
    with store.engine.begin() as conn:  # what saving from a script or `elixirml optimize file.py:...` recorded
        conn.execute(sa.text("UPDATE em_program_versions SET class_path = '__main__:QAProgram', class_file = NULL"))
    with pytest.raises(LoadError, match=r"before the store recorded source files.*cls=QAProgram"):
        store.load("old")
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE em_program_versions SET class_path = 'elixirml_user_prog:QA'"))
    with pytest.raises(LoadError, match=r"import the file that defines QA and pass cls=QA"):
        store.load("old")
    assert type(store.load("old", cls=Pipeline)) is Pipeline


def test_records_read_back_keep_their_fields_and_filters(store):
    """What the console, the CLI and the server read: the fields of each record, in order, and the filters."""
    first = store.add_evaluation(
        program_name="qa",
        dataset_fingerprint="d1",
        metric="em",
        score=0.5,
        n=2,
        errors=0,
        summary={"k": 1},
        results=[{"i": 0}],
        version_id=None,
    )
    store.add_evaluation(
        program_name="other", dataset_fingerprint="d2", metric="em", score=1.0, n=1, errors=0, summary={}, results=[]
    )
    listed = store.evaluations(program="qa")
    assert [e["id"] for e in listed] == [first] and store.evaluations(dataset="d2")[0]["program"] == "other"
    assert len(store.evaluations()) == 2 and store.evaluations(program="qa", dataset="d2") == []
    assert list(listed[0]) == ["id", "program", "dataset", "metric", "score", "n", "errors", "summary", "created_at"]
    one = store.evaluation(first)
    assert list(one) == [
        "id",
        "program",
        "version_id",
        "dataset",
        "metric",
        "score",
        "n",
        "errors",
        "summary",
        "results",
        "created_at",
    ]
    assert one["results"] == [{"i": 0}] and one["summary"] == {"k": 1} and one["created_at"].startswith("20")
    with pytest.raises(LoadError, match="No evaluation with id 999"):
        store.evaluation(999)

    ran = store.add_execution(
        program_name="qa",
        inputs={"q": "x"},
        outputs={"a": "y"},
        trace=[{"step": 1}, {"step": 2}],
        latency=0.25,
        tokens=7,
        spans=[{"name": "root"}],
    )
    store.add_execution(program_name="other", inputs={}, outputs={}, trace=[])
    whole = store.execution(ran)
    assert list(whole) == [
        "id",
        "program",
        "inputs",
        "outputs",
        "trace",
        "spans",
        "error",
        "latency",
        "tokens",
        "created_at",
    ]
    assert whole["spans"] == [{"name": "root"}] and whole["tokens"] == 7
    (short,) = store.executions(program="qa")
    assert list(short) == ["id", "program", "inputs", "outputs", "error", "latency", "tokens", "steps", "created_at"]
    assert short["steps"] == 2 and len(store.executions()) == 2 and len(store.executions(limit=1)) == 1
    assert store.last_execution()["program"] == "other" and store.last_execution()["spans"] == []
    with pytest.raises(LoadError, match="No traced run with id 999"):
        store.execution(999)

    store.create_job("j1", kind="evaluate", program="qa", version=None, spec={})
    store.create_job("j2", kind="evaluate", program="other", version=None, spec={})
    store.update_job("j2", state="succeeded")
    assert [j["id"] for j in store.jobs(program="qa")] == ["j1"]
    assert [j["id"] for j in store.jobs(state="succeeded")] == ["j2"] and len(store.jobs()) == 2
    assert store.job("j2")["finished_at"] is not None and store.job("j1")["lease_expires"] is None
    with pytest.raises(LoadError, match="No job 'nope'"):
        store.job("nope")
    with pytest.raises(LoadError, match="No optimization run 'nope'"):
        store.run("nope")
