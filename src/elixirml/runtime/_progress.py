"""Progress lines for long work whose stderr is not a terminal (a log file, CI, a pipe)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

#: A line at most this often (seconds) ...
PROGRESS_INTERVAL_S = 30.0
#: ... or when the work advanced by this share of its total since the last line.
PROGRESS_STEP = 0.10


class ProgressLines:
    """Plain progress lines on stderr, for where a progress bar cannot be drawn.

    :meth:`update` prints a line when the work has advanced by 10% of its total since the last
    line or 30 s have passed, never more often; :meth:`note` (the projection, the end) always
    prints. Optimizers, evaluation and bootstrapping use it when stderr is not a terminal.

    Args:
        name: what the lines are about (``"MIPRO"``, ``"evaluate"``).
        total: how many units the work has (None: unknown, lines every 30 s).
        unit: what is counted, as the lines say it (``"examples"``, ``"LM calls"``).
        stream: where to write (default: ``sys.stderr`` when a line is written).
        clock: the time source (tests pass their own).
    """

    def __init__(
        self,
        name: str,
        total: int | None = None,
        *,
        unit: str = "",
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.total = total
        self.unit = unit
        self._stream = stream
        self._clock = clock
        self.started = clock()
        self._last_time = self.started
        self._last_done = 0

    def note(self, text: str) -> None:
        """Print ``text`` now (a projection, a stop, the end)."""
        print(text, file=self._stream or sys.stderr, flush=True)

    def update(self, done: int, status: str = "") -> bool:
        """Report that ``done`` units are finished; prints a line when one is due. Returns whether it printed."""
        now = self._clock()
        step = max(1, int(self.total * PROGRESS_STEP)) if self.total else None
        due = now - self._last_time >= PROGRESS_INTERVAL_S or (step is not None and done - self._last_done >= step)
        if not due or (done == self._last_done and now - self._last_time < PROGRESS_INTERVAL_S):
            return False
        self._last_time, self._last_done = now, done
        of = f"/{self.total}" if self.total else ""
        unit = f" {self.unit}" if self.unit else ""
        share = f" ({100 * done / self.total:.0f}%)" if self.total else ""
        self.note(
            f"{self.name}: {done}{of}{unit}{share} after {now - self.started:.0f}s" + (f"; {status}" if status else "")
        )
        return True

    def elapsed(self) -> float:
        """Seconds since the work started."""
        return self._clock() - self.started
