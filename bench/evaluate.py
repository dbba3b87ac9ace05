"""A 1,000-example evaluation at 100 ms server latency and concurrency 256, versus DSPy.

ElixirML's ``em.evaluate`` (async tasks) and DSPy's ``Evaluate(num_threads=256)`` (in
bench/.venv-dspy) score the same Predict program on the same loopback server, which runs in
its own process.

Usage: python bench/evaluate.py [N] [CONCURRENCY] [LATENCY]
"""

from __future__ import annotations

import sys

from _common import ServerProcess, run_dspy

import elixirml as em


def ours(url: str, n: int, concurrency: int) -> em.EvaluationResult:
    lm = em.LM("openai/fake", base_url=url, api_key="not-a-key", cache=False, max_concurrency=concurrency)
    program = em.Predict("question -> answer", lm=lm, max_tokens=64)
    devset = [em.Example(question=f"question {i}", answer="x").with_inputs("question") for i in range(n)]
    return em.evaluate(program, devset, em.metrics.exact_match, concurrency=concurrency, display_progress=False)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    concurrency = int(sys.argv[2]) if len(sys.argv) > 2 else 256
    latency = float(sys.argv[3]) if len(sys.argv) > 3 else 0.1
    with ServerProcess(latency) as server:
        ours(server.url, 50, concurrency)  # warm up
        runs = [ours(server.url, n, concurrency) for _ in range(3)]
        best = min(runs, key=lambda r: r.wall_time)
        dspy = run_dspy("_dspy_concurrency.py", server.url, str(n), str(concurrency))
    floor = -(-n // concurrency) * latency
    print(f"{n} examples, concurrency {concurrency}, server latency {latency * 1000:.0f} ms (floor {floor:.2f} s)")
    print(f"ElixirML evaluate   {best.wall_time:7.2f} s   score {best.score:.1f}%  errors {best.errors}")
    if dspy:
        print(f"DSPy Evaluate       {dspy['seconds']:7.2f} s   score {dspy['score']:.1f}%  (DSPy {dspy['version']})")
        print(f"ElixirML is {dspy['seconds'] / best.wall_time:.1f}x faster than DSPy")


if __name__ == "__main__":
    main()
