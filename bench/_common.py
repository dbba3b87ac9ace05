"""Helpers shared by the benchmarks: a fake LM server in its own process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
