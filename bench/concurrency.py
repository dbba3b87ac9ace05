"""1,000 Predict.acall at max_concurrency=256 against a 100 ms loopback server.

Side by side in one run: (a) a bare aiohttp client doing the same 1,000 POSTs with 256 in
flight, (b) ElixirML, (c) DSPy's Evaluate with 256 threads (in bench/.venv-dspy). The server
runs in its own process so it does not share the client's interpreter.

Usage: python bench/concurrency.py [N] [CONCURRENCY] [LATENCY]
"""

from __future__ import annotations

import asyncio
import sys
import time

from _common import ServerProcess, run_dspy

import elixirml as em


async def bare_aiohttp(url: str, n: int, concurrency: int) -> float:
    import aiohttp

    sem = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def one(i: int) -> str:
            async with sem:
                body = {"model": "fake", "messages": [{"role": "user", "content": f"question {i}"}], "max_tokens": 64}
                async with session.post(f"{url}/chat/completions", json=body) as response:
                    data = await response.json()
                    return str(data["choices"][0]["message"]["content"])

        start = time.perf_counter()
        results = await asyncio.gather(*(one(i) for i in range(n)))
        elapsed = time.perf_counter() - start
    assert len(results) == n
    return elapsed


async def elixirml_run(url: str, n: int, concurrency: int) -> float:
    lm = em.LM("openai/fake", base_url=url, api_key="not-a-key", cache=False, max_concurrency=concurrency)
    predict = em.Predict("question -> answer", lm=lm, max_tokens=64)
    start = time.perf_counter()
    results = await asyncio.gather(*(predict.acall(question=f"question {i}") for i in range(n)))
    elapsed = time.perf_counter() - start
    assert [r.answer for r in results] == ["x"] * n
    await lm.aclose()
    return elapsed


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    concurrency = int(sys.argv[2]) if len(sys.argv) > 2 else 256
    latency = float(sys.argv[3]) if len(sys.argv) > 3 else 0.1
    with ServerProcess(latency) as server:
        asyncio.run(bare_aiohttp(server.url, 50, concurrency))  # warm the server
        bare = min(asyncio.run(bare_aiohttp(server.url, n, concurrency)) for _ in range(3))
        ours = min(asyncio.run(elixirml_run(server.url, n, concurrency)) for _ in range(3))
        dspy = run_dspy("_dspy_concurrency.py", server.url, str(n), str(concurrency))
    print(f"{n} requests, concurrency {concurrency}, server latency {latency * 1000:.0f} ms")
    print(f"bare aiohttp      {bare:7.2f} s")
    print(f"ElixirML          {ours:7.2f} s   ({ours / bare:.2f}x bare)")
    if dspy:
        print(f"DSPy Evaluate     {dspy['seconds']:7.2f} s   (DSPy {dspy['version']}, score {dspy['score']:.1f})")
        print(f"ElixirML is {dspy['seconds'] / ours:.1f}x faster than DSPy")


if __name__ == "__main__":
    main()
