"""DSPy's own tests (tests/dspy_conformance/, vendored unmodified) run against ``elixirml.dspy``.

Each vendored file runs in its own pytest process, as DSPy's README asks (the files leave
settings behind). A test DSPy 3.4.1 passes and that passes here is recorded in
``tests/dspy_conformance/passing.txt``; this test fails when one of them no longer passes.
The count per file, against DSPy's: ``python tests/dspy_conformance/run.py`` (or
``bench/dspy_conformance.py``).
"""

from __future__ import annotations

import pytest

from dspy_conformance import run

FILES = run.files()


def test_every_vendored_file_is_listed_with_its_baseline():
    base = run.baseline()
    for file in FILES:
        assert (run.HERE / file.removeprefix("tests/")).exists(), file
        assert any(test.startswith(file + "::") for test in base), file
    assert sum(1 for outcome in base.values() if outcome == "passed") == 311


def test_recorded_passes_are_tests_dspy_passes():
    base = run.baseline()
    for test in run.recorded_passing():
        assert base.get(test) == "passed", test


def test_xfails_name_a_reason_and_a_vendored_test():
    base = run.baseline()
    for test, reason in run.xfails().items():
        assert test in base, test
        assert len(reason) > 20, test


@pytest.mark.timeout(600)
@pytest.mark.parametrize("file", FILES)
def test_dspy_file_keeps_passing(file):
    result = run.run_file(file)
    expected = {t for t in run.recorded_passing() if t.startswith(file + "::")}
    lost = sorted(t for t in expected if result.outcomes.get(t) != "passed")
    assert not lost, (
        f"{len(lost)} DSPy test(s) that passed here now fail:\n" + "\n".join(lost) + "\n" + result.output[-4000:]
    )
