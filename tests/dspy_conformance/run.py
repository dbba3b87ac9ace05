"""Run the vendored DSPy test files, one pytest process each, and count against DSPy 3.4.1.

    python tests/dspy_conformance/run.py [FILE ...] [--json out.json] [-v] [--record]

``FILE`` is a path as in ``files.txt`` (``tests/predict/test_predict.py``) or as here
(``predict/test_predict.py``); default: all of ``files.txt``. The table gives, per file, the
tests DSPy 3.4.1 passes (``baseline_dspy_3.4.1.tsv``) and how many of those pass, are marked
expected-to-fail (``xfail.tsv``) or fail here. ``-v`` lists the failing ones. ``--record``
rewrites ``passing.txt``, the tests of DSPy's passing set that pass here, which
``tests/test_dspy_conformance.py`` holds the suite to (a test in it that fails is a regression).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent.parent / "src"


def files() -> list[str]:
    """The vendored files, as ``tests/<dir>/<file>.py``."""
    return [line.strip() for line in (HERE / "files.txt").read_text().splitlines() if line.strip()]


def recorded_passing() -> set[str]:
    """The tests recorded as passing here (``passing.txt``)."""
    path = HERE / "passing.txt"
    return {line.strip() for line in path.read_text().splitlines() if line.strip()} if path.exists() else set()


def xfails() -> dict[str, str]:
    """The tests marked expected-to-fail (``xfail.tsv``), with the reason."""
    out = {}
    path = HERE / "xfail.tsv"
    for line in path.read_text().splitlines() if path.exists() else []:
        if line.strip() and not line.startswith("#"):
            test, reason = line.split("\t", 1)
            out[test] = reason
    return out


def baseline() -> dict[str, str]:
    """Each test's outcome on DSPy 3.4.1, by id (``tests/<file>::<test>``)."""
    out = {}
    for line in (HERE / "baseline_dspy_3.4.1.tsv").read_text().splitlines():
        if line.strip():
            test, outcome = line.split("\t")
            out[test] = outcome
    return out


@dataclass
class FileResult:
    """The outcome of one file's run here, next to DSPy's."""

    file: str
    outcomes: dict[str, str] = field(default_factory=dict)
    dspy: dict[str, str] = field(default_factory=dict)
    output: str = ""

    @property
    def dspy_passed(self) -> list[str]:
        return [t for t, o in self.dspy.items() if o == "passed"]

    def count(self, outcome: str) -> int:
        return sum(1 for t in self.dspy_passed if self.outcomes.get(t, "failed") == outcome)

    @property
    def failing(self) -> list[str]:
        return [t for t in self.dspy_passed if self.outcomes.get(t, "failed") not in ("passed", "xfailed")]


def run_file(file: str, timeout: float = 600) -> FileResult:
    """Run one vendored file in its own pytest process and read back each test's outcome."""
    rel = file.removeprefix("tests/")
    prefix = "tests/" + rel + "::"
    dspy = {t: o for t, o in baseline().items() if t.startswith(prefix)}
    outcomes, output, interrupted = _pytest_outcomes(rel, [rel], timeout)
    # A file whose test sends the process a real SIGINT (test_evaluate.py's cancelled-evaluation test)
    # can, on a loaded machine, stop pytest itself: the tests that never ran then run once more in a
    # fresh process. Only tests without an outcome are run again; a failure stays a failure.
    never_ran = [t.removeprefix("tests/") for t in dspy if t not in outcomes]
    if interrupted and never_ran:
        again, more, _ = _pytest_outcomes(rel, never_ran, timeout)
        outcomes.update({t: o for t, o in again.items() if t not in outcomes})
        output += "\n--- tests that never ran, run again after the interrupted run ---\n" + more
    return FileResult("tests/" + rel, outcomes, dspy, output)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _pytest_outcomes(rel: str, targets: list[str], timeout: float) -> tuple[dict[str, str], str, bool]:
    """Run ``targets`` (a file or test ids) in one pytest process: outcomes, output, whether it was interrupted."""
    with tempfile.TemporaryDirectory() as tmp:
        report = os.path.join(tmp, "report.jsonl")
        env = dict(os.environ, DSPY_CONFORMANCE_REPORT=report)
        env["PYTHONPATH"] = str(SRC) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-c", str(HERE / "pytest.ini"), "--rootdir", str(HERE), *targets],
            cwd=HERE,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            # Ctrl-C as a fresh process has it: a parent that ignores SIGINT (as the full suite's process may,
            # after Ray or a server) would pass that on, and DSPy's SIGINT test would see no KeyboardInterrupt
            preexec_fn=_default_sigint,
        )
        outcomes: dict[str, str] = {}
        if os.path.exists(report):
            for line in Path(report).read_text().splitlines():
                row = json.loads(line)
                if outcomes.get(row["test"]) != "failed":  # a failed teardown after a pass counts as failed
                    outcomes[row["test"]] = row["outcome"]
    # pytest exits 2 when interrupted (KeyboardInterrupt) and -2 when the SIGINT killed it outright.
    return outcomes, proc.stdout + proc.stderr, proc.returncode in (2, -2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="*")
    parser.add_argument("--json", help="write every test's outcome here")
    parser.add_argument("-v", "--verbose", action="store_true", help="list the failing tests")
    parser.add_argument("--record", action="store_true", help="rewrite passing.txt from this run")
    args = parser.parse_args(argv)
    chosen = ["tests/" + f.removeprefix("tests/") for f in args.files] or files()
    results = [run_file(f) for f in chosen]
    print(f"{'file':50} {'dspy':>5} {'pass':>5} {'xfail':>5} {'fail':>5}")
    totals = [0, 0, 0, 0]
    for r in results:
        row = [len(r.dspy_passed), r.count("passed"), r.count("xfailed"), len(r.failing)]
        totals = [a + b for a, b in zip(totals, row, strict=True)]
        print(f"{r.file:50} {row[0]:5} {row[1]:5} {row[2]:5} {row[3]:5}")
        if args.verbose:
            for t in r.failing:
                print("    FAIL", t.split("::", 1)[1], r.outcomes.get(t, "not run"))
    print(f"{'total':50} {totals[0]:5} {totals[1]:5} {totals[2]:5} {totals[3]:5}")
    if args.record:
        kept = {t for t in recorded_passing() if not any(t.startswith(r.file + "::") for r in results)}
        now = {t for r in results for t in r.dspy_passed if r.outcomes.get(t) == "passed"}
        (HERE / "passing.txt").write_text("".join(t + "\n" for t in sorted(kept | now)))
    if args.json:
        Path(args.json).write_text(json.dumps({r.file: r.outcomes for r in results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
