"""Per-call framework overhead of Predict and ChainOfThought on a scripted LM, versus DSPy.

Sync rows call ``module(...)`` (ElixirML's sync facade over asyncio); async rows await
``module.acall(...)`` in a running loop. ElixirML runs in this interpreter and DSPy in
bench/.venv-dspy (``make bench-env``), each on its own DummyLM with distinct inputs per call
(no cache), and prints a table. Also times ``import elixirml`` and ``import dspy`` in fresh
interpreters, and ``elixirml --help``, from bytecode as installed packages run (not recompiled each time).

Usage: python bench/overhead.py [N] [--against TREE ...] [--rounds R]

``--against TREE`` (a checkout or export holding ``src/elixirml``, e.g. ``git worktree add
/tmp/before <commit>``) times the four ElixirML rows of each tree beside this one: every round
runs each tree in its own fresh interpreter, in turn, and each row keeps its best; the load
average is printed with the table (the machine is shared, so before and after are interleaved).
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


ROWS = ("Predict", "ChainOfThought", "Predict async", "ChainOfThought async")


def measure_rows(n: int) -> dict[str, float]:
    """Seconds per call of the four ElixirML rows, in this interpreter."""
    return {
        "Predict": ours(em.Predict, {"answer": "x"}, n),
        "ChainOfThought": ours(em.ChainOfThought, {"reasoning": "r", "answer": "x"}, n),
        "Predict async": ours_async(em.Predict, {"answer": "x"}, n),
        "ChainOfThought async": ours_async(em.ChainOfThought, {"reasoning": "r", "answer": "x"}, n),
    }


def tree_rows(tree: Path | None, n: int) -> dict[str, float]:
    """:func:`measure_rows` in a fresh interpreter that imports ElixirML from ``tree/src`` (None: this tree)."""
    src = (tree / "src") if tree is not None else HERE.parent / "src"
    if not (src / "elixirml").is_dir():
        raise SystemExit(f"--against {tree}: no src/elixirml there")
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), str(n), "--rows-json"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    rows: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return rows


def compare(n: int, trees: list[Path], rounds: int) -> None:
    """This tree's rows beside each of ``trees``, interleaved over ``rounds``, best of each."""
    names = ["this tree", *(str(t) for t in trees)]
    best = {name: dict.fromkeys(ROWS, float("inf")) for name in names}
    load_before = os.getloadavg()
    for _ in range(rounds):
        for name, tree in zip(names, [None, *trees]):
            for row, value in tree_rows(tree, n).items():
                best[name][row] = min(best[name][row], value)
    load_after = os.getloadavg()
    print(f"calls per measurement: {n}, {rounds} rounds interleaved, best of each (us/call)")
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    print(f"{'module':<22}" + "".join(f"{name[-20:]:>22}" for name in names))
    for row in ROWS:
        print(f"{row:<22}" + "".join(f"{best[name][row] * 1e6:>22.1f}" for name in names))


def main() -> None:
    args = sys.argv[1:]
    n = int(args[0]) if args and args[0].isdigit() else 1000
    if "--rows-json" in args:
        print(json.dumps(measure_rows(n)))
        return
    trees = [Path(args[i + 1]) for i, a in enumerate(args) if a == "--against" and i + 1 < len(args)]
    if trees:
        rounds = int(args[args.index("--rounds") + 1]) if "--rounds" in args else 4
        compare(n, trees, rounds)
        return
    rows = measure_rows(n)
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
