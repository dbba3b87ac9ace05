"""What an optimization run's LM call budget costs per call, with and without its count written ahead to a store.

An optimizer counts its LM calls in a ``CallLedger`` (``elixirml/optimizers/_run.py``): a lock
around the cap check, and with a store a write of the run state before a call past the calls
already reserved. Rows: one ``take()`` of the plain ``CallBudget`` (what ``em.spending_limit``
uses), of a ledger without a store, and of a ledger writing to a SQLite store while calls come
fast (its lease grows, so few writes) or slower than its ``INTERVAL`` (a write per call); one
store write of a run state; and a ``Predict`` call on ``DummyLM`` under each budget.

Usage: python bench/call_ledger.py [N]
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import elixirml as em
from elixirml.lm import CallBudget, limit_calls
from elixirml.optimizers._run import CallLedger


def per_call(action: Callable[[], object], n: int, repeats: int = 5) -> float:
    """Best of ``repeats`` runs of ``n`` calls, in seconds per call."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n):
            action()
        best = min(best, (time.perf_counter() - start) / n)
    return best


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    with tempfile.TemporaryDirectory() as folder:
        store = em.Store(f"sqlite:///{Path(folder) / 'store.db'}")
        store.create_run("bench", "RandomSearch", {})
        payload = {"format": 1, "fingerprint": "f" * 40, "best": None, "search": {"scored": list(range(30))}}
        writes = [0]

        def write(mark: int) -> None:
            writes[0] += 1
            store.set_run_state("bench", "RandomSearch", {**payload, "spent": {"lm_calls": mark}})

        rows: list[tuple[str, float, str]] = []
        rows.append(("CallBudget.take", per_call(CallBudget(None).take, n), ""))
        rows.append(("CallLedger.take, no store", per_call(CallLedger(None).take, n), ""))
        fast = CallLedger(None, write=write)
        rows.append(("CallLedger.take, store, fast calls", per_call(fast.take, n), f"{writes[0]} writes"))
        one = per_call(lambda: write(0), 200)
        rows.append(("store write of a run state", one, ""))

        lm = em.DummyLM([{"answer": "x"}] * (n * 20))
        predict = em.Predict("question -> answer", lm=lm)
        counter = [0]

        def call() -> None:
            counter[0] += 1
            predict(question=f"question {counter[0]}")

        calls = max(200, n // 20)
        budgets = [
            ("Predict, CallBudget", CallBudget(None)),
            ("Predict, CallLedger, no store", CallLedger(None)),
            ("Predict, CallLedger, store", CallLedger(None, write=write)),
        ]
        best = {label: float("inf") for label, _ in budgets}
        writes[0] = 0
        for _ in range(5):  # interleaved, best of five: the least-disturbed run of each on a shared machine
            for label, budget in budgets:
                with limit_calls(budget):
                    best[label] = min(best[label], per_call(call, calls, repeats=1))
        for label, _ in budgets:
            note = f"{writes[0]} writes in {5 * calls} calls" if label.endswith(", store") else ""
            rows.append((label, best[label], note))
        store.close()
    slow = one / CallLedger.INTERVAL
    print(f"{'':40} {'us/call':>9}")
    for label, seconds, note in rows:
        print(f"{label:40} {seconds * 1e6:9.2f}  {note}")
    print(
        f"calls slower than every {CallLedger.INTERVAL * 1000:.0f} ms write once each: "
        f"at most {slow:.1%} of the time between two calls"
    )


if __name__ == "__main__":
    main()
