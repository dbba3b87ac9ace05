"""One optimization run's own state (:class:`OptimizerRun`) and its LM calls, written ahead to the store."""

from __future__ import annotations

import dataclasses
import math
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

from ..errors import BudgetExceededError, StoreError
from ..lm import CallBudget, Usage
from ..runtime import Executor, ProgressDisplay

#: What a run has spent, as a store's run row and a run state count it.
NOTHING_SPENT: dict[str, Any] = {"lm_calls": 0, "tokens": 0, "cost": 0.0, "metric_calls": 0}


@dataclasses.dataclass
class OptimizerRun:
    """What one ``compile`` of an optimizer holds while it runs, so that the optimizer itself is not changed.

    Attributes:
        budget: the run's budgets (the optimizer's, with ``compile``'s own on top): ``max_lm_calls``,
            ``max_metric_calls``, ``max_cost``, ``max_trials``, ``timeout``.
        spent_before: what earlier legs of a resumed run spent (``NOTHING_SPENT`` keys).
        ledger: the LM call budget (None outside a run).
        usage: the LM usage of this leg (None outside a run).
        runner: the executor trials run on (None: in this process).
        started: when this leg started (``time.perf_counter()``).
        metric_calls: examples scored, earlier legs included.
        kept: the run state kept last, but for its spend.
        stopped: the budget that stopped a scoring outside a step (the final comparison of texts), or None.
        progress: the run's progress display (lines also come from evaluations inside a step, such as
            initialize's baseline and structures); status: what its next line says after the count.
    """

    budget: dict[str, Any]
    spent_before: dict[str, Any] = dataclasses.field(default_factory=lambda: dict(NOTHING_SPENT))
    ledger: CallLedger | None = None
    usage: Usage | None = None
    runner: Executor | None = None
    started: float = 0.0
    metric_calls: int = 0
    kept: dict[str, Any] = dataclasses.field(default_factory=dict)
    stopped: str | None = None
    progress: ProgressDisplay | None = None
    status: str = ""


class CallLedger(CallBudget):
    """An optimization run's LM call budget: a hard cap, and a count the store learns before the calls go out.

    :meth:`take` checks the cap and counts the call under one lock, so the threads of an
    evaluation never send more than ``max_calls`` between them. With ``write`` (a run kept in
    a store), a call past :attr:`reserved` first writes a new mark, ``used + lease - 1``, and
    only then is sent: the store's count is never below the calls made, even when the process
    is killed (SIGKILL) between two writes, and a resumed run's budget starts from it. The
    lease is one call while calls come less often than every :attr:`INTERVAL` seconds (the
    mark is then exact) and doubles, up to :attr:`MAX_LEASE` and a sixteenth of the budget,
    while they come faster, so the store sees at most about ``1 / INTERVAL`` writes a second.
    A killed run may therefore count up to ``lease - 1`` calls that were reserved and never sent;
    a run that ends in Python (finished, stopped, an exception, Ctrl-C) keeps the exact count.

    Args:
        max_calls: the cap (None: no cap).
        used: calls earlier legs of the run spent.
        write: keeps a mark (calls reserved, earlier legs included) in the store; None keeps nothing.
    """

    INTERVAL = 0.1
    MAX_LEASE = 1024

    def __init__(self, max_calls: int | None, used: int = 0, write: Callable[[int], None] | None = None) -> None:
        self.max_calls = max_calls
        self.reserved = used
        self._used = used
        self._write = write
        self._ahead = write is not None
        self._lock = threading.Lock()
        self._most = self.MAX_LEASE if max_calls is None else max(1, min(self.MAX_LEASE, max_calls // 16))
        self._lease = 1
        self._last = -math.inf

    @property
    def used(self) -> int:
        """Calls counted so far, earlier legs included."""
        return self._used

    @used.setter
    def used(self, value: int) -> None:  # calls a distributed executor's workers made, charged as they return
        with self._lock:
            self._count(value)

    def take(self) -> None:
        """Count one call, first writing a new mark to the store when the call is past :attr:`reserved`.

        Raises:
            BudgetExceededError: the budget is spent (nothing is counted).
        """
        with self._lock:
            if self.max_calls is not None and self._used >= self.max_calls:
                raise BudgetExceededError(f"LM call budget of {self.max_calls} calls is spent")
            self._count(self._used + 1)

    def keep(self) -> None:
        """Write the mark now (the run state changed between calls), never below what was reserved.

        Raises:
            StoreError: the store failed (as ``write`` raised it).
        """
        with self._lock:
            if self._write is not None:
                mark = max(self._used, self.reserved)
                self._write(mark)
                self.reserved = mark

    def _count(self, value: int) -> None:
        if value > self.reserved and self._ahead:
            assert self._write is not None
            now = time.monotonic()
            fast = now - self._last < self.INTERVAL
            self._lease = min(self._lease * 2, self._most) if fast else max(1, self._lease // 2)
            mark = value + self._lease - 1
            if self.max_calls is not None:
                mark = min(mark, max(self.max_calls, value))  # never more than the budget lets the run make
            try:
                self._write(mark)
            except StoreError as exc:
                self._ahead = False  # the store failed after its own retries: the rest of the leg writes nothing ahead
                warnings.warn(
                    f"Could not keep the LM call count of the run in the store ({exc}); if this process is killed, "
                    "a resumed run may count fewer calls than were made.",
                    RuntimeWarning,
                    stacklevel=4,
                )
            else:
                self.reserved, self._last = mark, now
        self._used = value
