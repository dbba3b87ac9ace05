"""Request timeouts with one timer per LM and event loop, not one per request.

``asyncio.timeout`` arms a timer for every request (a ``Timeout``, a ``TimerHandle`` in the
loop's heap, two coroutines to enter and leave it): about a quarter of a request's own cost
on a fast server. An LM's requests share one timeout, so their deadlines come in the order
the requests started: :class:`Deadlines` keeps them in a queue and arms one timer, for the
oldest. A request that ends marks its deadline done; when the timer fires, the requests
whose deadline has passed are cancelled as ``asyncio.timeout`` cancels its task (and their
``CancelledError`` becomes :class:`~elixirml.errors.ProviderTimeoutError` where they wait),
and the timer is armed again for the oldest one left.
"""

from __future__ import annotations

import collections
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio


class Deadline:
    """One request's deadline (``when``, loop time) in a :class:`Deadlines` queue."""

    __slots__ = ("cancelling", "done", "expired", "task", "when")

    def __init__(self, task: asyncio.Task[Any], when: float) -> None:
        self.task = task
        self.when = when
        self.cancelling = task.cancelling()  # cancellations asked before this deadline was set
        self.done = False
        self.expired = False

    def timed_out(self) -> bool:
        """Whether the ``CancelledError`` the request got is this deadline's (its cancellation is taken back)."""
        if not self.expired:
            return False
        self.expired = False  # taken back once (as asyncio.timeout does on leaving)
        return self.task.uncancel() <= self.cancelling


class Deadlines:
    """The deadlines of one LM's requests on one event loop, oldest first, under one timer."""

    # No reference to the loop or its timer (which holds the loop): the loop's entry in
    # LoopDeadlines, weakly keyed by the loop, goes when the loop does.
    __slots__ = ("_armed", "_live", "_queue")

    def __init__(self) -> None:
        self._queue: collections.deque[Deadline] = collections.deque()
        self._armed = False  # a timer is set (for the oldest deadline, or one that has ended since)
        self._live = 0

    def start(self, task: asyncio.Task[Any], delay: float) -> Deadline | None:
        """A deadline ``delay`` seconds from now for ``task`` (on its loop); None when one set earlier ends later.

        (The LM's timeout was lowered while requests were out: the caller times this one itself.)
        """
        loop = task.get_loop()
        when = loop.time() + delay
        queue = self._queue
        if queue and when < queue[-1].when:
            return None
        deadline = Deadline(task, when)
        queue.append(deadline)
        self._live += 1
        if not self._armed:
            loop.call_at(when, self._expire, loop)
            self._armed = True
        return deadline

    def end(self, deadline: Deadline) -> None:
        """The request is over (answered, failed or timed out): its deadline no longer counts."""
        deadline.done = True
        self._live -= 1
        if deadline.expired:  # cancelled by its deadline, but it ended otherwise: the cancellation is taken back
            deadline.expired = False
            deadline.task.uncancel()
        queue = self._queue
        while queue and queue[0].done:
            queue.popleft()
        if len(queue) > 2 * self._live + 64:  # a slow request holds the head: drop the ended ones behind it
            self._queue = collections.deque(d for d in queue if not d.done)

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._armed = False
        queue = self._queue
        now = loop.time()
        while queue:
            head = queue[0]
            if head.done:
                queue.popleft()
            elif head.when <= now:
                queue.popleft()
                head.expired = True
                head.task.cancel()  # ended by Deadline.timed_out where the request waits
            else:
                loop.call_at(head.when, self._expire, loop)
                self._armed = True
                return


class LoopDeadlines:
    """An LM's :class:`Deadlines`, one per event loop (the last loop's found without a lookup)."""

    __slots__ = ("_by_loop", "_last")

    def __init__(self) -> None:
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Deadlines] = weakref.WeakKeyDictionary()
        self._last: tuple[weakref.ref[asyncio.AbstractEventLoop], Deadlines] | None = None

    def of(self, loop: asyncio.AbstractEventLoop) -> Deadlines:
        """The deadlines of requests on ``loop``."""
        last = self._last
        if last is not None and last[0]() is loop:
            return last[1]
        deadlines = self._by_loop.get(loop)
        if deadlines is None:
            deadlines = self._by_loop[loop] = Deadlines()
        self._last = (weakref.ref(loop), deadlines)
        return deadlines
