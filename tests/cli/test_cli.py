import json
import re
import shlex
import sys
import textwrap
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import elixirml as em
from elixirml.cli import app

runner = CliRunner()

PROGRAM = textwrap.dedent(
    """
    import elixirml as em

    class QA(em.Program):
        temperature = em.Variable.float(default=0.5, low=0.0, high=1.0)

        def __init__(self):
            super().__init__()
            self.answer = em.Predict("question -> answer")

        def forward(self, question):
            return self.answer(question=question, config={"temperature": self.temperature})
    """
)


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    monkeypatch.setenv("ELIXIRML_STORE", f"sqlite:///{tmp_path / 'cli.db'}")
    (tmp_path / "prog.py").write_text(PROGRAM)
    rows = [{"question": f"item {i}", "answer": "yes" if i % 2 else "no"} for i in range(6)]
    (tmp_path / "data.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    em.configure(
        lm=em.DummyLM(
            {"item 1": {"answer": "yes"}, "item 3": {"answer": "yes"}, "item 5": {"answer": "yes"}},
            default={"answer": "no"},
        )
    )
    return tmp_path


def test_help_lists_every_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("run", "eval", "optimize", "runs", "programs", "inspect", "demo"):
        assert command in result.output


def test_run_then_inspect(workspace):
    result = runner.invoke(app, ["run", f"{workspace / 'prog.py'}:QA", "--input", "question=item 3", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"answer": "yes"}
    shown = runner.invoke(app, ["inspect"])
    assert shown.exit_code == 0
    assert "Predict(question: str -> answer: str)" in shown.output and "item 3" in shown.output
    recorded = em.Store().last_execution()  # what the web console shows of the run
    assert [s["kind"] for s in recorded["spans"]][:2] == ["module", "module"]
    assert "yes" in recorded["trace"][0]["completion"]


def test_inspect_takes_the_numbers_its_listing_shows(workspace):
    for question in ("item 1", "item 2", "item 3"):
        assert runner.invoke(app, ["run", f"{workspace / 'prog.py'}:QA", "-i", f"question={question}"]).exit_code == 0
    listed = runner.invoke(app, ["inspect", "--list"])
    assert listed.exit_code == 0, listed.output
    numbers = re.findall(r"^#(\d+)\s.*question': '(item \d)'", listed.output, re.MULTILINE)
    assert [q for _, q in numbers] == ["item 3", "item 2", "item 1"]  # newest first
    assert "`elixirml inspect N` shows run #N" in listed.output
    for number, question in numbers:
        shown = runner.invoke(app, ["inspect", number])
        assert shown.exit_code == 0, shown.output
        assert shown.output.startswith(f"run #{number} of ") and f"'question': '{question}'" in shown.output
    last = runner.invoke(app, ["inspect"])
    assert last.output.startswith(f"run #{numbers[0][0]} of ")  # the last run, numbered as the listing shows it
    missing = runner.invoke(app, ["inspect", "999"])
    assert missing.exit_code == 2
    assert "No traced run #999" in missing.output and "elixirml inspect --list" in missing.output


def test_run_prints_only_the_result_and_inspect_reads_the_same_default_store(tmp_path, monkeypatch):
    monkeypatch.delenv("ELIXIRML_STORE", raising=False)  # no store named anywhere: every command uses the default
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    (tmp_path / "guarded.py").write_text(
        PROGRAM + '\nif __name__ == "__main__":\n    print("THE DEMO RAN")\n    print(QA()(question="item 1"))\n'
    )
    em.configure(lm=em.DummyLM({"item 3": {"answer": "yes, it is"}}, default={"answer": "no"}))
    result = runner.invoke(app, ["run", f"{tmp_path / 'guarded.py'}:QA", "-i", "question=item 3"])
    assert result.exit_code == 0, result.output
    assert result.output == "answer: yes, it is\n"
    shown = runner.invoke(app, ["inspect"])
    assert shown.exit_code == 0 and "item 3" in shown.output and "no traced runs" not in shown.output
    assert (tmp_path / "data" / "elixirml" / "store.db").is_file()


def test_eval_prints_the_summary(workspace):
    result = runner.invoke(
        app, ["eval", f"{workspace / 'prog.py'}:QA", str(workspace / "data.jsonl"), "--inputs", "question"]
    )
    assert result.exit_code == 0, result.output
    assert "score=100.0%" in result.output


def test_optimize_runs_and_programs(workspace):
    prog = f"{workspace / 'prog.py'}:QA"
    data = str(workspace / "data.jsonl")
    first = runner.invoke(
        app, ["optimize", prog, data, "--inputs", "question", "--optimizer", "bootstrap", "--save", "qa"]
    )
    assert first.exit_code == 0, first.output
    assert "BootstrapFewShot: best score" in first.output
    run_id = first.output.strip().splitlines()[-1].split()[-1]
    second = runner.invoke(
        app,
        [
            "optimize",
            prog,
            data,
            "--inputs",
            "question",
            "--optimizer",
            "random",
            "--budget",
            "max_trials=2",
            "--save",
            "qa",
        ],
    )
    assert second.exit_code == 0, second.output
    listed = runner.invoke(app, ["runs", "list"])
    assert run_id in listed.output and "RandomSearch" in listed.output
    shown = runner.invoke(app, ["runs", "show", run_id])
    assert shown.exit_code == 0 and f"run {run_id}: BootstrapFewShot on qa" in shown.output
    programs = runner.invoke(app, ["programs", "list"])
    assert "qa" in programs.output and "(2 versions)" in programs.output
    detail = runner.invoke(app, ["programs", "show", "qa", "--version", "1"])
    assert detail.exit_code == 0 and "qa v1" in detail.output
    diff = runner.invoke(app, ["programs", "diff", "qa", "1", "2"])
    assert diff.exit_code == 0


def test_errors_are_one_line_with_exit_code_unless_debug(workspace):
    result = runner.invoke(app, ["run", "nope.py:QA"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: No such file: nope.py"
    missing = runner.invoke(app, ["run", "not-stored"])
    assert missing.exit_code == 2 and "No stored program named 'not-stored'" in missing.output
    bad = runner.invoke(
        app,
        [
            "eval",
            f"{workspace / 'prog.py'}:QA",
            str(workspace / "data.jsonl"),
            "--metric",
            "bleu",
            "--inputs",
            "question",
        ],
    )
    assert bad.exit_code == 2 and "Unknown metric 'bleu'" in bad.output
    debug = runner.invoke(app, ["--debug", "run", "nope.py:QA"])
    assert debug.exit_code == 1 and isinstance(debug.exception, em.errors.LoadError)


def test_demo_quick_on_a_scripted_lm(workspace):
    def answer(messages, settings):
        system = messages[0]["content"]
        if "Summarize what these examples" in system:
            return {"summary": "Movie review sentences."}
        if "Propose a better instruction" in system:
            return {"proposed_instruction": "Decide if the review is positive or negative."}
        text = messages[-1]["content"].lower()
        label = "negative" if any(w in text for w in ("bad", "dull", "worst", "boring", "mess")) else "positive"
        return {"reasoning": "r", "sentiment": label}

    em.configure(lm=em.FunctionLM(answer))
    result = runner.invoke(app, ["demo", "--quick", "--out", str(workspace)])
    assert result.exit_code == 0, result.output
    assert "Before / after on held-out SST-2 sentences" in result.output
    assert "MIPRO light" in result.output and "Saved as sst2-sentiment v" in result.output
    png = workspace / "elixirml-demo-trials.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------- the CLI lines the docs show
ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# where else a user reads `elixirml ...`: docstrings, help and error messages, the console's pages
PACKAGE = ROOT / "src" / "elixirml"
SOURCES = sorted([*PACKAGE.rglob("*.py"), *PACKAGE.rglob("*.html"), *ROOT.glob("examples/*.py")])
INLINE = re.compile(r"`+elixirml ([^`]+?)`+")
# outside backticks, a command followed by options is a command line too ("or: elixirml serve --port 8001")
_OPTION = r"--[\w-]+(?:[ =](?!-)[^\s`'\"),]+)?"
PLAIN = re.compile(rf"(?<![\w./`-])elixirml ([a-z][\w-]*(?: [a-z][\w-]*)? {_OPTION}(?: {_OPTION})*)")


def _inline(where: str, text: str) -> list[tuple[str, list[str]]]:
    """(where, argv) for each inline `elixirml ...` span (`elixirml run / eval` names several commands),
    and for each plain ``elixirml command --option ...`` outside backticks."""
    spans = [piece for span in INLINE.findall(text) for piece in " ".join(span.split()).split(" / ")]
    spans += PLAIN.findall(INLINE.sub("", text))
    return [(where, span.split()) for span in spans]


def _doc_command_lines():
    """(where, argv) for each `elixirml ...` line in a code block, and (where, argv) for each inline mention.

    Inline mentions are read from whole paragraphs (a mention may wrap onto the next line), in the
    docs and in the package's own text (docstrings, messages, templates) and the examples.
    """
    blocks, inline = [], []
    for doc in DOCS:
        fenced, paragraph, start = False, [], 1
        lines = doc.read_text().splitlines()
        for number, line in enumerate([*lines, ""], 1):
            where = f"{doc.name}:{number}"
            if not fenced and (not line.strip() or line.lstrip().startswith("```")):
                inline += _inline(f"{doc.name}:{start}", "\n".join(paragraph))
                paragraph, start = [], number + 1
            elif not fenced:
                paragraph.append(line)
            if line.lstrip().startswith("```"):
                fenced = not fenced
                continue
            if fenced:
                text = re.sub(r"^\s*\$\s*", "", line)
                text = re.sub(r"^(\w+=\S+\s+)+", "", text)  # VAR=value elixirml ...
                if not text.startswith("elixirml "):
                    continue
                text = re.split(r"\s+#", text)[0]
                pieces = [p.strip() for p in text[len("elixirml ") :].split(" | ")]
                blocks += [(where, shlex.split(piece)) for piece in pieces]
    for source in SOURCES:
        inline += _inline(str(source.relative_to(ROOT)), source.read_text())
    return blocks, inline


def _parse(argv):
    """Parse argv with the CLI's own parser (typer's click), without running anything; raises its UsageError."""
    command = typer.main.get_command(app)
    ctx = command.make_context("elixirml", list(argv))
    while hasattr(command, "resolve_command"):  # a group (typer vendors click: its classes are its own)
        rest = [*ctx._protected_args, *ctx.args]
        name, command, rest = command.resolve_command(ctx, rest)
        ctx = command.make_context(name, rest, parent=ctx)
    return ctx


def _parse_mention(argv):
    """As :func:`_parse`, but a mention may leave out required arguments (`elixirml optimize file.py:Class`)
    or name a command group alone (`elixirml runs`); every command and option it names must exist."""
    # placeholders: NAME, N, MODEL and an option's `...` stand for a value (any value parses as "1"); any
    # other `...` leaves the rest out
    argv = [
        "1" if re.fullmatch(r"[A-Z][A-Z_]*", word) or (word == "..." and i and argv[i - 1].startswith("-")) else word
        for i, word in enumerate(argv)
    ]
    argv = [word for word in argv if word != "..."]
    try:
        _parse(argv)
    except Exception as exc:
        if type(exc).__name__ not in ("MissingParameter", "NoArgsIsHelpError", "Exit"):  # Exit: `elixirml --help`
            raise


def test_every_cli_line_in_the_docs_parses():
    blocks, inline = _doc_command_lines()
    assert len(blocks) >= 15 and len(inline) >= 40  # the extraction finds the docs' lines
    assert any(where.startswith("src/") for where, _ in inline) and any(w.startswith("serving.md") for w, _ in inline)
    failures = []
    for where, argv in blocks:
        try:
            _parse(argv)
        except Exception as exc:  # typer's UsageError (and NoArgsIsHelpError) name what is wrong
            failures.append(f"{where}: elixirml {' '.join(argv)}: {type(exc).__name__}: {exc}")
    for where, argv in inline:
        try:
            _parse_mention(argv)
        except Exception as exc:
            failures.append(f"{where}: `elixirml {' '.join(argv)}`: {type(exc).__name__}: {exc}")
    assert not failures, "\n".join(failures)


def test_the_mention_check_reads_wrapped_mentions_and_catches_bad_options(tmp_path):
    assert _inline("x", "`elixirml serve\n--job-lm proposer=openai/gpt-4o`, and") == [
        ("x", ["serve", "--job-lm", "proposer=openai/gpt-4o"])
    ]
    plain = "# or: elixirml serve --store sqlite:///p.db (see the docs); elixirml versions it supports"
    assert _inline("x", plain) == [("x", ["serve", "--store", "sqlite:///p.db"])]
    _parse_mention(["optimize", "file.py:Class"])  # an argument left out: a mention, not a command line
    _parse_mention(["runs"])
    _parse_mention(["inspect", "N"])
    _parse_mention(["--lm", "MODEL", "console", "..."])
    with pytest.raises(Exception, match="No such option: --store"):
        _parse_mention(["serve", "--store", "sqlite:///programs.db"])  # --store is a global option
    with pytest.raises(Exception, match="No such command 'evaluate'"):
        _parse_mention(["evaluate", "--metric", "f1"])


def test_the_parser_check_catches_a_bad_line():
    with pytest.raises(Exception, match="No such command 'evaluate'"):
        _parse(["evaluate", "program.py:QA", "data.jsonl"])
    with pytest.raises(Exception, match="Missing parameter: data"):
        _parse(["optimize", "file.py:Class", "--save", "name"])
    with pytest.raises(Exception, match="No such option"):
        _parse(["run", "x", "--nope"])
    assert _parse(["--debug", "run", "x", "--json"]).params["as_json"] is True


def test_debug_reads_as_a_flag_in_the_help():
    shown = runner.invoke(app, ["--help"])
    assert re.search(r"^\s+--debug\s+Show tracebacks\.$", shown.output, re.MULTILINE), shown.output
    for argv in (["--help"], ["run", "--help"], ["serve", "--help"], ["programs", "diff", "--help"]):
        assert "<bool>" not in runner.invoke(app, argv).output


def test_lm_option_takes_a_factory_so_a_stored_program_runs_on_a_test_double(workspace, monkeypatch):
    # A newcomer's stored program, run from the CLI without a provider: `--lm pkg.module:factory`,
    # the form the job workers already take.
    (workspace / "newcomer_lms.py").write_text(
        "import elixirml as em\n\n"
        "def make_lm():\n"
        "    return em.FunctionLM(lambda messages, settings: {'answer': 'from factory'})\n\n"
        "def forgot_return():\n"
        "    em.FunctionLM(lambda messages, settings: {'answer': 'never used'})\n"
    )
    monkeypatch.syspath_prepend(str(workspace))
    em.Store().save(em.Predict("question -> answer"), "qa")
    result = runner.invoke(app, ["--lm", "newcomer_lms:make_lm", "run", "qa", "-i", "question=hi", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1]) == {"answer": "from factory"}
    missing = runner.invoke(app, ["--lm", "no_such_lms_module:make_lm", "run", "qa", "-i", "question=hi"])
    assert missing.exit_code == 2
    assert "cannot import 'no_such_lms_module'" in missing.output and "Traceback" not in missing.output
    not_callable = runner.invoke(app, ["--lm", "newcomer_lms:nothing", "run", "qa", "-i", "question=hi"])
    assert not_callable.exit_code == 2 and "has no callable 'nothing'" in not_callable.output
    # a factory that returns nothing is said, not replaced by the default LM
    nothing = runner.invoke(app, ["--lm", "newcomer_lms:forgot_return", "run", "qa", "-i", "question=hi"])
    assert nothing.exit_code == 2 and "forgot_return() returned None" in nothing.output, nothing.output


def test_lm_option_finds_a_factory_in_the_folder_the_command_runs_in(workspace, monkeypatch):
    # `elixirml --lm mylms:make_lm ...` from the folder that holds mylms.py, as uvicorn's module:app does
    (workspace / "folder_lms.py").write_text(
        "import elixirml as em\n\n"
        "def make_lm():\n"
        "    return em.FunctionLM(lambda messages, settings: {'answer': 'from the folder'})\n"
    )
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(workspace))])
    monkeypatch.chdir(workspace)
    em.Store().save(em.Predict("question -> answer"), "qa")
    result = runner.invoke(app, ["--lm", "folder_lms:make_lm", "run", "qa", "-i", "question=hi", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1]) == {"answer": "from the folder"}


def test_optimize_says_which_version_it_saved(workspace):
    # The help says the result is saved as a new version: the output names it, so the next command is obvious.
    prog = f"{workspace / 'prog.py'}:QA"
    data = str(workspace / "data.jsonl")
    first = runner.invoke(
        app, ["optimize", prog, data, "--inputs", "question", "--optimizer", "labeled", "--save", "qa"]
    )
    assert first.exit_code == 0, first.output
    assert "saved as qa v1: `elixirml run qa` runs it" in first.output
    again = runner.invoke(app, ["optimize", "qa", data, "--inputs", "question", "--optimizer", "labeled"])
    assert again.exit_code == 0, again.output
    assert "saved as qa v2" in again.output
    assert [v["number"] for v in em.Store().versions("qa")] == [1, 2]


def test_programs_list_and_show_read_as_plain_words(workspace):
    em.Store().save(em.Predict("question -> answer"), "qa")
    listed = runner.invoke(app, ["programs", "list"])
    assert listed.exit_code == 0 and "(1 version)" in listed.output, listed.output
    shown = runner.invoke(app, ["programs", "show", "qa"])
    assert shown.exit_code == 0 and "qa v1 (no parent)" in shown.output and "vNone" not in shown.output, shown.output


# ---------------------------------------------------------------- serve on a port in use
def test_serve_on_a_port_in_use_says_so_before_building_the_app(workspace, monkeypatch):
    import socket

    import elixirml.serve

    def never(*args, **kwargs):
        raise AssertionError("the app was built although the port is taken")

    monkeypatch.setattr(elixirml.serve, "create_app", never)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(app, ["serve", "--port", str(port)])
    assert result.exit_code == 2, result.output
    assert f"Port {port} on 127.0.0.1 is already in use" in result.output
    assert "--port" in result.output.split("already in use", 1)[1]
    assert "Traceback" not in result.output and "Errno" not in result.output


def test_listen_names_the_address_it_cannot_bind():
    with pytest.raises(em.errors.ConfigurationError, match=r"Cannot listen on 192\.0\.2\.1:8000: .*--host"):
        em.serve.listen("192.0.2.1", 8000)  # TEST-NET-1: never an address of this machine
    sock = em.serve.listen("127.0.0.1", 0)
    try:
        assert sock.getsockname()[1] > 0
    finally:
        sock.close()


def test_a_reader_that_stops_early_ends_the_command_quietly(workspace):
    import subprocess
    import sys

    for question in ("item 1", "item 2"):
        assert runner.invoke(app, ["run", f"{workspace / 'prog.py'}:QA", "-i", f"question={question}"]).exit_code == 0
    # `elixirml inspect | head -1`: the reader is gone before the command writes
    proc = subprocess.Popen(
        [sys.executable, "-m", "elixirml", "inspect"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    proc.stdout.close()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 141, err.decode()
    assert err.decode() == ""  # no "error: [Errno 32] Broken pipe", no "Exception ignored"
