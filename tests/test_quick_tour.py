"""The README quick tour, run verbatim as a script on the embedded model."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def quick_tour() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick tour", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None
    return match.group(1)


@pytest.mark.local_model
def test_readme_quick_tour_runs_as_a_script(tmp_path):
    script = tmp_path / "tour.py"
    script.write_text(quick_tour())
    env = {
        **os.environ,
        "ELIXIRML_CACHE": "off",  # every run asks the model again
        "ELIXIRML_STORE": f"sqlite:///{tmp_path / 'store.db'}",
        "PYTHONPATH": str(ROOT / "src"),
    }
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    first = done.stdout.splitlines()[0]
    assert "Prediction(" in first and "'confidence': " in first
    confidence = float(re.search(r"'confidence': ([0-9.]+)", first).group(1))  # type: ignore[union-attr]
    assert 0.5 <= confidence <= 1.0
    assert "temperature" in done.stdout and "strategy" in done.stdout
