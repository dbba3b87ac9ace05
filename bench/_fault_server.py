"""The fake server of bench/faults.py, in its own process: answers item N with a long value.

Usage: python _fault_server.py LATENCY FAILURE_RATE FAULTS TIMEOUT_DELAY RETRY_AFTER SEED
Prints its base URL, serves until stdin closes. ``POST /_control/outage?seconds=S`` starts an
outage; ``GET /_control/stats`` counts requests and faults.
"""

from __future__ import annotations

import re
import sys
from typing import Any

from elixirml.testing import FakeLMServer


def value(n: int) -> str:
    """The gold answer of item ``n``: long enough that half of an answer is a wrong one."""
    return "-".join([str(n)] * 6)


def answer(body: dict[str, Any]) -> str:
    match = re.search(r"question (\d+)", str(body["messages"][-1]["content"]))
    n = int(match.group(1)) if match else -1
    return f"[[ ## answer ## ]]\n{value(n)}\n\n[[ ## completed ## ]]"


def main() -> None:
    latency, rate, faults, timeout_delay, retry_after, seed = sys.argv[1:7]
    server = FakeLMServer(
        answer,
        latency=float(latency),
        failure_rate=float(rate),
        faults=tuple(f for f in faults.split(",") if f),
        timeout_delay=float(timeout_delay),
        retry_after=retry_after,
        seed=int(seed),
    )
    server.start()
    print(server.base_url, flush=True)
    try:
        sys.stdin.read()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
