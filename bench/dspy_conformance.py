"""DSPy's own tests as a conformance count: how many of the tests DSPy 3.4.1 passes pass on ElixirML.

Runs each vendored file of tests/dspy_conformance/ in its own pytest process, with ``dspy``
mapped onto ``elixirml.dspy``, and prints per file: the tests DSPy passes
(tests/dspy_conformance/baseline_dspy_3.4.1.tsv), how many of them pass here, how many are
marked expected-to-fail (xfail.tsv, with the reason) and how many fail.

    PYTHONPATH=src python bench/dspy_conformance.py [-v] [--json out.json] [FILE ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from dspy_conformance import run

if __name__ == "__main__":
    sys.exit(run.main())
