"""Load test of `elixirml serve`: a stored program over the loopback fake LM server (50 ms).

1. 5,000 requests at concurrency 200 through the server: throughput, p50, p99, errors.
2. The same with three deploys and a rollback during the run: every request must succeed and
   be answered by a version that was live at some moment while it was in flight.
3. The same load on a bare FastAPI endpoint calling the same program and LM directly: the
   per-request overhead of the server (target: p50 within 1.3x).

Each server runs in its own process (uvicorn, one worker); so does the fake LM server.
Usage: python bench/serve.py [N] [CONCURRENCY] [LATENCY]; writes bench/results/serve.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from _common import HERE, ServerProcess

import elixirml as em


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(command: list[str], env: dict[str, str], ready_url: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    import urllib.request

    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
        try:
            with urllib.request.urlopen(ready_url, timeout=1):
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start")


async def load(
    url: str, n: int, concurrency: int, deploys: list[tuple[str, dict[str, Any] | None]] | None = None
) -> dict[str, Any]:
    """Send ``n`` requests with ``concurrency`` in flight; run ``deploys`` (path, body) spread over the run."""
    sem = asyncio.Semaphore(concurrency)
    records: list[tuple[float, float, int, int | None]] = []  # sent, answered, status, version
    changes: list[tuple[float, float, int]] = []  # deploy sent, deploy answered, live version after
    done = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency + 8)) as session:

        async def one(i: int) -> None:
            nonlocal done
            async with sem:
                sent = time.perf_counter()
                try:
                    async with session.post(url, json={"question": f"question {i}"}) as response:
                        data = await response.json()
                        status = response.status
                        version = data.get("version")
                except aiohttp.ClientError:
                    status, version = 0, None
                records.append((sent, time.perf_counter(), status, version))
                done += 1

        async def operator() -> None:
            base = url.rsplit("/programs/", 1)[0]
            for k, (path, body) in enumerate(deploys or []):
                while done < n * (k + 1) / (len(deploys or []) + 1):
                    await asyncio.sleep(0.01)
                sent = time.perf_counter()
                async with session.post(base + path, json=body if body is not None else {}) as response:
                    data = await response.json()
                    assert response.status == 200, data
                changes.append((sent, time.perf_counter(), int(data["live"])))

        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)), operator())
        elapsed = time.perf_counter() - start
    latencies = sorted(b - a for a, b, _, _ in records)
    failed = sum(1 for _, _, status, _ in records if status != 200)
    result: dict[str, Any] = {
        "requests": n,
        "concurrency": concurrency,
        "seconds": round(elapsed, 3),
        "throughput_rps": round(n / elapsed, 1),
        "p50_ms": round(1000 * latencies[len(latencies) // 2], 1),
        "p99_ms": round(1000 * latencies[int(len(latencies) * 0.99)], 1),
        "mean_ms": round(1000 * statistics.fmean(latencies), 1),
        "failed": failed,
    }
    if deploys is not None:
        result["deploys"] = [{"live_after": v, "took_ms": round(1000 * (b - a), 1)} for a, b, v in changes]
        result["wrong_version"] = sum(1 for r in records if r[3] not in possible_versions(r[0], r[1], changes))
        result["answered_by"] = {str(v): sum(1 for r in records if r[3] == v) for v in sorted({r[3] for r in records})}
    return result


def possible_versions(sent: float, answered: float, changes: list[tuple[float, float, int]]) -> set[int]:
    """Versions live at some moment between ``sent`` and ``answered`` (a deploy takes effect during its call)."""
    live = {3}  # the latest stored version (v3) is live when the server starts
    for began, ended, after in changes:  # deploys run one after another
        if ended <= sent:
            live = {after}
        elif began < answered:
            live.add(after)
    return live


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    concurrency = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    latency = float(sys.argv[3]) if len(sys.argv) > 3 else 0.05
    workdir = Path(tempfile.mkdtemp(prefix="elixirml-bench-serve-"))
    store_url = f"sqlite:///{workdir / 'store.db'}"
    store = em.Store(store_url)
    store.save(em.Predict("question -> answer"), "qa")  # v1
    store.save(em.Predict("question -> answer", config={"temperature": 0.0}), "qa")  # v2
    store.save(em.Predict("question -> answer", config={"temperature": 0.1}), "qa")  # v3
    store.close()
    results: dict[str, Any] = {"latency_ms": latency * 1000}
    with ServerProcess(latency) as lm_server:
        env = {
            **os.environ,
            "OPENAI_BASE_URL": lm_server.url,
            "OPENAI_API_KEY": "fake",
            "ELIXIRML_CACHE": "false",
            "HOME": str(workdir),
            "XDG_DATA_HOME": str(workdir),
        }
        port = free_port()
        serve = [sys.executable, "-m", "elixirml", "--store", store_url, "--lm", "openai/fake", "serve"]
        serve += ["--port", str(port), "--max-concurrency", str(concurrency * 2), "--log-level", "warning"]
        proc = start(serve, env, f"http://127.0.0.1:{port}/readyz")
        try:
            url = f"http://127.0.0.1:{port}/programs/qa/run"
            asyncio.run(load(url, 200, 50))  # warm up
            results["serve"] = asyncio.run(load(url, n, concurrency))
            operations: list[tuple[str, dict[str, Any] | None]] = [
                ("/programs/qa/deploy", {"version": 1}),
                ("/programs/qa/deploy", {"version": 2}),
                ("/programs/qa/deploy", {"version": 3}),
                ("/programs/qa/rollback", None),
            ]
            results["serve_with_deploys"] = asyncio.run(load(url, n, concurrency, operations))
        finally:
            proc.terminate()
            proc.wait(30)
        port = free_port()
        proc = start([sys.executable, str(HERE / "_bare_serve.py"), str(port)], env, f"http://127.0.0.1:{port}/docs")
        try:
            url = f"http://127.0.0.1:{port}/run"
            asyncio.run(load(url, 200, 50))
            results["bare_fastapi"] = asyncio.run(load(url, n, concurrency))
        finally:
            proc.terminate()
            proc.wait(30)
    results["p50_ratio_serve_vs_bare"] = round(results["serve"]["p50_ms"] / results["bare_fastapi"]["p50_ms"], 3)
    print(json.dumps(results, indent=2))
    out = HERE / "results" / "serve.json"
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
