"""Distributed evaluation on a local Ray cluster (127.0.0.1) against the in-process run.

(a) SST-2 classifications on the embedded model: the in-process run (2 llama.cpp threads)
    against 1 and 2 Ray workers (one llama.cpp thread each).
(b) examples against the loopback fake server at 50 ms latency: local against 2 workers.

Reports wall time, scaling efficiency (speed-up / workers) and Ray's fixed cost (cluster
start and worker start-up, measured on an empty-ish warm-up run).

Usage: python bench/distributed.py [a|b|ab] [N_A] [N_B]
Run it under `flock /tmp/elixirml-heavy.lock` on a shared machine.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # keep Ray on 127.0.0.1

from _common import HERE, ServerProcess
from _dist_program import Answer, Sentiment, local_lm

import elixirml as em

SST2 = HERE.parent.parent / "shared" / "data" / "sst2" / "dev.tsv"


def start_ray() -> float:
    import ray

    began = time.perf_counter()
    path = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
    ray.init(
        num_cpus=2,
        _node_ip_address="127.0.0.1",
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        runtime_env={"env_vars": {"PYTHONPATH": path}},
    )
    nodes = {n["NodeManagerAddress"] for n in ray.nodes()}
    if not all(a.startswith("127.") for a in nodes):
        raise SystemExit(f"Ray is not on loopback ({nodes}); refusing to run")
    return time.perf_counter() - began


def sst2(n: int) -> list[em.Example]:
    path = SST2 if SST2.exists() else Path("/work/shared/data/sst2/dev.tsv")
    rows = [line.split("\t") for line in path.read_text().splitlines()[1:] if "\t" in line]
    return [em.Example(sentence=t, sentiment=label.strip() == "1").with_inputs("sentence") for t, label in rows[:n]]


def timed(label: str, fn) -> tuple[float, em.EvaluationResult]:
    began = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - began
    print(f"  {label:<34} {seconds:8.2f} s   score {result.score:5.1f}%  errors {result.errors}", flush=True)
    return seconds, result


def part_a(n: int) -> None:
    print(f"(a) {n} SST-2 classifications on the embedded model")
    data = sst2(n)
    metric = em.metrics.exact_match
    with em.context(lm=em.LM("local", n_threads=2, cache=False)):
        local, base = timed(
            "in-process, 2 threads",
            lambda: em.evaluate(Sentiment(), data, metric, concurrency=2, display_progress=False, record=False),
        )
    for workers in (1, 2):
        executor = em.RayExecutor(num_workers=workers, lm=local_lm)
        begin = time.perf_counter()
        em.distributed.run(Sentiment(), data[:workers], executor=executor, concurrency=workers)  # start + load model
        fixed = time.perf_counter() - begin
        seconds, result = timed(
            f"Ray, {workers} worker(s) x 1 thread",
            lambda executor=executor, workers=workers: em.evaluate(
                Sentiment(), data, metric, executor=executor, concurrency=workers, display_progress=False, record=False
            ),
        )
        executor.shutdown()
        same = [r.score for r in result.results] == [r.score for r in base.results]
        print(
            f"    worker start + model load {fixed:.1f} s; speed-up vs in-process {local / seconds:.2f}x; "
            f"same scores as in-process: {same}"
        )


def part_b(n: int) -> None:
    print(f"(b) {n} examples against the loopback fake server at 50 ms")
    data = [em.Example(question=f"question {i}", answer="x").with_inputs("question") for i in range(n)]
    with ServerProcess(0.05) as server:
        lm = em.LM("openai/fake", base_url=server.url, api_key="not-a-key", cache=False, max_tokens=16)
        with em.context(lm=lm):
            local, base = timed(
                "in-process, concurrency 256",
                lambda: em.evaluate(
                    Answer(), data, em.metrics.exact_match, concurrency=256, display_progress=False, record=False
                ),
            )
        executor = em.RayExecutor(num_workers=2, lm=lm)
        begin = time.perf_counter()
        em.distributed.run(Answer(), data[:2], executor=executor, concurrency=2)
        fixed = time.perf_counter() - begin
        seconds, result = timed(
            "Ray, 2 workers, concurrency 256",
            lambda: em.evaluate(
                Answer(),
                data,
                em.metrics.exact_match,
                executor=executor,
                concurrency=256,
                display_progress=False,
                record=False,
            ),
        )
        executor.shutdown()
    same = [r.score for r in result.results] == [r.score for r in base.results]
    print(
        f"    worker start {fixed:.1f} s; speed-up {local / seconds:.2f}x, scaling efficiency "
        f"{local / seconds / 2:.0%}; same scores: {same}"
    )


def main() -> None:
    parts = sys.argv[1] if len(sys.argv) > 1 else "ab"
    n_a = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    n_b = int(sys.argv[3]) if len(sys.argv) > 3 else 20000
    print(f"Ray cluster start (2 CPUs, loopback): {start_ray():.1f} s")
    if "b" in parts:
        part_b(n_b)
    if "a" in parts:
        part_a(n_a)


if __name__ == "__main__":
    main()
