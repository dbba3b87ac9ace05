"""The progress of long work: a bar on a terminal, plain lines where stderr is not one (a log file, CI, a pipe)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

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


class ProgressDisplay:
    """The progress of long work: a rich bar on a terminal, :class:`ProgressLines` where stderr is not one.

    Optimizers and evaluation both show their progress through it. ``enabled=None`` (the default):
    the bar when stderr is a terminal, else plain lines; ``True``: the bar; ``False``: nothing.
    The bar counts ``done`` against ``total`` when the total is known at the start, else it is a
    spinner with the elapsed time.

    Args:
        name: what the work is, as its lines say it (``"evaluate"``, ``"MIPRO"``).
        enabled: ``None`` (bar or lines, as above), ``True`` (the bar) or ``False`` (silent).
        total: how many units the work has (None: not known yet; see :meth:`set_total`).
        unit: what is counted (``"examples"``, ``"LM calls"``).
        label: the bar's text (default: ``name``).
    """

    def __init__(
        self, name: str, enabled: bool | None, *, total: int | None = None, unit: str = "", label: str | None = None
    ) -> None:
        tty = sys.stderr.isatty()
        self.name = name
        self.enabled = enabled is not False
        plain = enabled is None and not tty
        self.lines: ProgressLines | None = ProgressLines(name, total, unit=unit) if plain else None
        self._started = time.monotonic()
        self._bar: Any = None
        if enabled is True or (enabled is None and tty):
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            description, status = TextColumn("[bold]{task.description}"), TextColumn("{task.fields[status]}")
            columns: tuple[Any, ...] = (
                (description, BarColumn(), MofNCompleteColumn(), status, TimeRemainingColumn())
                if total
                else (SpinnerColumn(), description, status, TimeElapsedColumn())
            )
            self._bar = Progress(*columns, transient=False)
            self._task = self._bar.add_task(label or name, total=total or None, status="" if total else "starting")
            self._bar.start()

    @property
    def plain(self) -> bool:
        """Whether the progress is shown as plain lines (stderr is not a terminal)."""
        return self.lines is not None

    def note(self, text: str) -> None:
        """Print ``text`` on stderr now (a projection, a stop, the end) unless the display is off."""
        if self.enabled:
            print(text, file=sys.stderr, flush=True)

    def set_total(self, total: int) -> None:
        """The total the plain lines measure against, once it is known (an optimizer's projected calls)."""
        if self.lines is not None and total > 0:
            self.lines.total = total

    def update(self, done: int, status: str = "") -> None:
        """``done`` units are finished; ``status`` is what the bar and the next line show after the count."""
        if self._bar is not None:
            self._bar.update(self._task, completed=done, status=status)
        if self.lines is not None:
            self.lines.update(done, status)

    def elapsed(self) -> float:
        """Seconds since the work started."""
        return time.monotonic() - self._started

    def close(self) -> None:
        """Stop the bar (the lines need no closing)."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
