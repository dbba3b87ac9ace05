"""Per-call framework overhead of Predict and ChainOfThought on a scripted LM, versus DSPy.

Sync rows call ``module(...)`` (ElixirML's sync facade over asyncio); async rows await
``module.acall(...)`` in a running loop. ElixirML runs in this interpreter and DSPy in
bench/.venv-dspy (``make bench-env``), each on its own DummyLM with distinct inputs per call
(no cache), and prints a table. Also times ``import elixirml`` and ``import dspy`` in fresh
interpreters, and ``elixirml --help``, from bytecode as installed packages run (not recompiled each time).

Usage: python bench/overhead.py [N]
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import elixirml as em

HERE = Path(__file__).resolve().parent
DSPY_PY = HERE / ".venv-dspy" / "bin" / "python"


def ours(module_cls: type, answer: dict[str, str], n: int, repeats: int = 5) -> float:
    """Best of ``repeats`` runs of ``n`` calls: the least-disturbed run on a shared machine."""
    lm = em.DummyLM([answer] * (n * repeats + 50))
    module = module_cls("question -> answer", lm=lm)
    for i in range(50):
        module(question=f"warm {i}")
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(n):
            module(question=f"question {i}")
        best = min(best, (time.perf_counter() - start) / n)
    return best


def ours_async(module_cls: type, answer: dict[str, str], n: int, repeats: int = 5) -> float:
    """The async path: ``await module.acall(...)`` inside a running event loop (no sync bridge)."""
    lm = em.DummyLM([answer] * (n * repeats + 50))
    module = module_cls("question -> answer", lm=lm)

    async def main() -> float:
        for i in range(50):
            await module.acall(question=f"warm {i}")
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            for i in range(n):
                await module.acall(question=f"question {i}")
            best = min(best, (time.perf_counter() - start) / n)
        return best

    return asyncio.run(main())


def _as_installed() -> dict[str, str]:
    """The environment of a fresh interpreter that runs from bytecode, as an installed package does.

    pip writes ``.pyc`` files at install time (and DSPy's venv has them); a source checkout run with
    ``PYTHONDONTWRITEBYTECODE`` would time the compiler instead. The caches go to a temporary folder.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = _PYCACHE.name
    return env


_PYCACHE = tempfile.TemporaryDirectory(prefix="elixirml-bench-pyc-")


def command_time(argv: list[str], runs: int = 5) -> float:
    """Median wall time of a whole command (interpreter start included), after one run that writes the bytecode."""
    env = _as_installed()
    subprocess.run(argv, capture_output=True, check=True, env=env)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True, env=env)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def import_time(python: str, code: str, runs: int = 5, *, bytecode: bool = True) -> float:
    """Median time of ``code`` (which prints its own timing) in fresh interpreters.

    With ``bytecode`` (as installed) a first run writes the bytecode; without, every run compiles
    the sources that have no bytecode beside them (a checkout run with ``PYTHONDONTWRITEBYTECODE``).
    """
    env = _as_installed() if bytecode else {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    subprocess.run([python, "-c", code], capture_output=True, check=True, env=env)
    times = []
    for _ in range(runs):
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
        times.append(float(out.strip().splitlines()[-1]))
    return statistics.median(times)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    rows = {
        "Predict": ours(em.Predict, {"answer": "x"}, n),
        "ChainOfThought": ours(em.ChainOfThought, {"reasoning": "r", "answer": "x"}, n),
        "Predict async": ours_async(em.Predict, {"answer": "x"}, n),
        "ChainOfThought async": ours_async(em.ChainOfThought, {"reasoning": "r", "answer": "x"}, n),
    }
    timed_import = "import time; s=time.perf_counter(); import elixirml; print(time.perf_counter()-s)"
    em_import = import_time(sys.executable, timed_import)
    em_import_compiled = import_time(sys.executable, timed_import, bytecode=False)
    help_time = command_time([sys.executable, "-m", "elixirml", "--help"])
    dspy = None
    if DSPY_PY.exists():
        out = subprocess.run([str(DSPY_PY), str(HERE / "_dspy_overhead.py"), str(n)], capture_output=True, text=True)
        if out.returncode == 0:
            dspy = json.loads(out.stdout.strip().splitlines()[-1])
        else:
            print(out.stderr[-2000:], file=sys.stderr)
        dspy_import = import_time(str(DSPY_PY), (HERE / "_dspy_import.py").read_text(), runs=3)
    print(f"calls per measurement: {n}")
    print(f"{'module':<22}{'ElixirML us/call':>18}{'DSPy us/call':>15}{'ratio':>9}")
    keys = (
        ("Predict", "predict_s"),
        ("ChainOfThought", "cot_s"),
        ("Predict async", "predict_async_s"),
        ("ChainOfThought async", "cot_async_s"),
    )
    for name, key in keys:
        theirs = dspy[key] * 1e6 if dspy else float("nan")
        print(f"{name:<22}{rows[name] * 1e6:>18.1f}{theirs:>15.1f}{theirs / (rows[name] * 1e6):>8.1f}x")
    print(f"{'import':<22}{em_import:>17.3f}s" + (f"{dspy_import:>14.3f}s" if dspy else ""))
    print(f"{'import, no .pyc':<22}{em_import_compiled:>17.3f}s   (a checkout that compiles its sources each time)")
    print(f"{'elixirml --help':<22}{help_time:>17.3f}s")
    if dspy:
        print(f"(DSPy {dspy['version']})")


if __name__ == "__main__":
    main()
