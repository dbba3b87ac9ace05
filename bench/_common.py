"""Helpers shared by the benchmarks: a fake LM server in its own process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DSPY_PY = HERE / ".venv-dspy" / "bin" / "python"
CHAT_ANSWER = "[[ ## answer ## ]]\nx\n\n[[ ## completed ## ]]"


class ServerProcess:
    """Run ``python -m elixirml.testing`` in a child process; ``url`` is its base URL."""

    def __init__(self, latency: float, answer: str = CHAT_ANSWER) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "elixirml.testing", "--latency", str(latency), "--answer-json", answer],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=10)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_dspy(script: str, *args: str) -> dict[str, Any] | None:
    """Run ``bench/<script>`` in the DSPy environment; its last stdout line is JSON. None if unavailable."""
    if not DSPY_PY.exists():
        print("DSPy environment missing: run `make bench-env`", file=sys.stderr)
        return None
    out = subprocess.run([str(DSPY_PY), str(HERE / script), *args], capture_output=True, text=True)
    if out.returncode != 0:
        print(out.stderr[-3000:], file=sys.stderr)
        return None
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result
