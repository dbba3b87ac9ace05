"""Evaluation under provider faults: 1,000 examples against a loopback server that fails.

Three runs per framework, each against a fresh server process (100 ms per answer):
  fault-free  no faults;
  mixed 35%   35% of requests fail: 503, 429 with Retry-After, timeouts, connection resets,
              malformed JSON bodies and answers cut off at the token limit, in equal shares;
  outage 3 s  every request gets 503 for the first 3 seconds, then the server is healthy.
For each: results returned (examples with a prediction), score, wall time, and extra requests
(requests the server received beyond one per example). ElixirML runs with its default retry
policy and circuit breaker; DSPy (bench/.venv-dspy) with its defaults. Both use the same
per-attempt timeout and 32 examples in flight.

Usage: python bench/faults.py [N] [CONCURRENCY]
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from _common import DSPY_PY, HERE
from _fault_server import value

import elixirml as em
from elixirml.evaluation import aevaluate

LATENCY = 0.1
TIMEOUT = 1.0  # the client's per-attempt timeout
TIMEOUT_DELAY = 2.0  # a "timeout" fault answers this late: past the client's timeout
RETRY_AFTER = "0.5"
MIXED = "503,429,timeout,reset,malformed,truncated"
OUTAGE = 3.0
SCENARIOS = {
    "fault-free": (0.0, 0.0),
    "mixed 35%": (0.35, 0.0),
    "outage 3 s": (0.0, OUTAGE),
}


class FaultServer:
    """bench/_fault_server.py in a child process."""

    def __init__(self, rate: float, seed: int = 0) -> None:
        args = [str(LATENCY), str(rate), MIXED, str(TIMEOUT_DELAY), RETRY_AFTER, str(seed)]
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "_fault_server.py"), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        self.root = self.url.removesuffix("/v1")

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.root}/_control/stats", timeout=10) as response:
            data: dict[str, Any] = json.loads(response.read())
            return data

    def __enter__(self) -> FaultServer:
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def devset(n: int) -> list[em.Example]:
    return [em.Example(question=f"question {i}", answer=value(i)).with_inputs("question") for i in range(n)]


def start_outage(root: str, seconds: float) -> None:
    request = urllib.request.Request(f"{root}/_control/outage?seconds={seconds}", method="POST")
    urllib.request.urlopen(request, timeout=10).read()


async def elixirml_run(url: str, n: int, concurrency: int, outage: float) -> dict[str, Any]:
    lm = em.LM(
        "openai/fake", base_url=url, api_key="not-a-key", cache=False, timeout=TIMEOUT, max_concurrency=concurrency
    )
    program = em.Predict("question -> answer", lm=lm, max_tokens=64)
    start = time.perf_counter()
    if outage:
        start_outage(url.removesuffix("/v1"), outage)
    result = await aevaluate(
        program, devset(n), em.metrics.exact_match, concurrency=concurrency, display_progress=False, record=False
    )
    elapsed = time.perf_counter() - start
    await lm.aclose()
    returned = sum(1 for r in result.results if r.error is None)
    errors = sorted({type(r.error).__name__ for r in result.results if r.error is not None})
    return {"returned": returned, "score": result.score, "seconds": elapsed, "errors": errors}


def dspy_run(url: str, n: int, concurrency: int, outage: float) -> dict[str, Any] | None:
    python = Path(os.environ.get("DSPY_PYTHON", DSPY_PY))  # the DSPy environment (make bench-env)
    if not python.exists():
        return None
    args = [str(python), str(HERE / "_dspy_faults.py"), url, str(n), str(concurrency), str(TIMEOUT), str(outage)]
    out = subprocess.run(args, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        print(out.stderr[-3000:], file=sys.stderr)
        return None
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    concurrency = int(sys.argv[2]) if len(sys.argv) > 2 else 32
    rows: list[tuple[str, str, dict[str, Any]]] = []
    for framework in ("ElixirML", "DSPy"):
        for name, (rate, outage) in SCENARIOS.items():
            with FaultServer(rate, seed=1) as server:
                if framework == "ElixirML":
                    measured: dict[str, Any] | None = asyncio.run(elixirml_run(server.url, n, concurrency, outage))
                else:
                    measured = dspy_run(server.url, n, concurrency, outage)
                if measured is None:
                    print("DSPy environment missing or failed: run `make bench-env`", file=sys.stderr)
                    break
                stats = server.stats()
                measured["extra_requests"] = stats["requests"] - n
                measured["faults"] = stats["faults"]
                rows.append((framework, name, measured))
                print(framework, name, json.dumps(measured), file=sys.stderr, flush=True)
    print(f"{n} examples, {concurrency} in flight, server latency {LATENCY * 1000:.0f} ms, client timeout {TIMEOUT} s")
    print(f"{'':9} {'scenario':11} {'returned':>8} {'score':>6} {'wall s':>7} {'x clean':>7} {'extra req':>9}  errors")
    clean: dict[str, float] = {}
    for framework, name, m in rows:
        if name == "fault-free":
            clean[framework] = m["seconds"]
        ratio = m["seconds"] / clean[framework] if framework in clean else float("nan")
        print(
            f"{framework:9} {name:11} {m['returned']:>8} {m['score']:>6.1f} {m['seconds']:>7.2f} {ratio:>7.2f} "
            f"{m['extra_requests']:>9}  {', '.join(m['errors']) or '-'}"
        )
    Path(HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "faults.json").write_text(
        json.dumps([{"framework": f, "scenario": s, **m} for f, s, m in rows], indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
