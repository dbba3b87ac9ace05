"""Resilience policies for calls to a provider: retries, circuit breaker, concurrency and rate limits.

All of them are asyncio-native: waiting never blocks a thread.
"""

from __future__ import annotations

import collections
import random
import time
import weakref
from typing import TYPE_CHECKING

from ..errors import CircuitOpenError, ConfigurationError

if TYPE_CHECKING:
    import asyncio


class RetryPolicy:
    """When and how long to wait before trying a failed request again.

    The default is bounded by time, not by a count of attempts: a call keeps retrying a
    transient failure (capped exponential backoff with full jitter, honouring a provider's
    ``Retry-After``) until ``max_time`` seconds have passed since it started, so independent
    transient faults do not lose a call. ``retries`` adds a bound on the number of retries.

    Args:
        retries: most retries of a failed request (0 disables retries; None: as many as fit in
            ``max_time``).
        base_delay: the first backoff ceiling in seconds; it doubles each attempt.
        max_delay: the largest wait between attempts.
        max_time: seconds a call may spend in total before it stops retrying (None: no time
            bound). No retry, and no wait for a circuit breaker, starts that would end after it;
            an attempt already in flight is bounded by the LM's ``timeout``.
        truncation_retries: most retries of an answer that was cut off
            (:class:`~elixirml.errors.TruncatedResponseError`); a model that keeps hitting its
            token limit will not finish by being asked again and again.
        grow_max_tokens: factor applied to the request's ``max_tokens`` before retrying a
            cut-off answer (1.0 sends the same request again).
        rng: random source for jitter (pass a seeded ``random.Random`` for reproducible waits).
    """

    def __init__(
        self,
        retries: int | None = None,
        base_delay: float = 0.1,
        max_delay: float = 5.0,
        max_time: float | None = 60.0,
        *,
        truncation_retries: int = 3,
        grow_max_tokens: float = 1.0,
        rng: random.Random | None = None,
    ) -> None:
        if retries is not None and retries < 0:
            raise ConfigurationError(f"retries must be >= 0 or None, got {retries}")
        if retries is None and max_time is None:
            raise ConfigurationError("RetryPolicy needs a bound: pass retries=<count>, max_time=<seconds>, or both")
        if max_time is not None and max_time < 0:
            raise ConfigurationError(f"max_time must be >= 0 seconds or None, got {max_time}")
        if truncation_retries < 0:
            raise ConfigurationError(f"truncation_retries must be >= 0, got {truncation_retries}")
        if grow_max_tokens < 1.0:
            raise ConfigurationError(f"grow_max_tokens must be >= 1.0, got {grow_max_tokens}")
        self.retries = retries
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_time = max_time
        self.truncation_retries = truncation_retries
        self.grow_max_tokens = grow_max_tokens
        self._rng = rng or random.Random()

    def __repr__(self) -> str:
        return (
            f"RetryPolicy(retries={self.retries}, base_delay={self.base_delay}, max_delay={self.max_delay}, "
            f"max_time={self.max_time})"
        )

    @property
    def enabled(self) -> bool:
        """Whether this policy retries at all (``retries=0`` turns retries and breaker waits off)."""
        return self.retries != 0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt + 1`` (``attempt`` counts from 0)."""
        if retry_after is not None and retry_after >= 0:
            return min(float(retry_after), self.max_delay)
        ceiling = min(self.max_delay, self.base_delay * (2 ** min(attempt, 62)))
        return self._rng.uniform(0.0, ceiling)

    def fits(self, elapsed: float, wait: float) -> bool:
        """Whether waiting ``wait`` more seconds stays within ``max_time`` after ``elapsed`` seconds."""
        return self.max_time is None or elapsed + wait <= self.max_time

    def next_delay(self, attempt: int, elapsed: float, retry_after: float | None = None) -> float | None:
        """Seconds to wait before retry number ``attempt + 1``, or None when the policy allows no more.

        Args:
            attempt: retries already made (0 after the first failure).
            elapsed: seconds since the call started.
            retry_after: seconds the provider asked for, if it said.
        """
        if self.retries is not None and attempt >= self.retries:
            return None
        wait = self.delay(attempt, retry_after)
        return wait if self.fits(elapsed, wait) else None


class CircuitBreaker:
    """Stops sending to an endpoint that keeps failing.

    Closed: requests flow; ``failure_threshold`` failures in a row open it. Open: requests
    raise :class:`~elixirml.errors.CircuitOpenError` at once, for ``reset_timeout`` seconds.
    Half-open: one probe request is let through; success closes the circuit, failure opens it
    again for twice as long as before (at most ``max_reset_timeout``). A probe that ends
    without a verdict (cancelled, rate-limited, or failed with an error that says nothing
    about the endpoint) gives its turn to the next request: call :meth:`release_probe`.

    Args:
        endpoint: a label for messages (no secrets: never a URL with credentials).
        failure_threshold: consecutive failures that open the circuit.
        reset_timeout: seconds the circuit stays open before the first probe.
        max_reset_timeout: the longest the circuit stays open after failed probes (default:
            30 s, or ``reset_timeout`` when that is longer).
    """

    def __init__(
        self,
        endpoint: str,
        failure_threshold: int = 20,
        reset_timeout: float = 1.0,
        max_reset_timeout: float | None = None,
    ) -> None:
        if failure_threshold < 1:
            raise ConfigurationError("failure_threshold must be >= 1")
        if max_reset_timeout is None:
            max_reset_timeout = max(30.0, reset_timeout)
        if reset_timeout < 0 or max_reset_timeout < reset_timeout:
            raise ConfigurationError(
                f"need 0 <= reset_timeout <= max_reset_timeout, got {reset_timeout} and {max_reset_timeout}"
            )
        self.endpoint = endpoint
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self.max_reset_timeout = max_reset_timeout
        self._failures = 0
        self._opened_at: float | None = None
        self._open_for = reset_timeout
        self._probing = False

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.endpoint!r}, state={self.state!r})"

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half_open"``."""
        if self._opened_at is None:
            return "closed"
        if time.monotonic() - self._opened_at >= self._open_for:
            return "half_open"
        return "open"

    def before_request(self) -> bool:
        """Let a request through, or raise :class:`CircuitOpenError` when none may be sent now.

        Returns:
            True when this request is the half-open probe: the caller must then end it with
            :meth:`record_success`, :meth:`record_failure` or :meth:`release_probe`, whatever
            happens (cancellation included).
        """
        if self._opened_at is None:
            return False
        remaining = self._open_for - (time.monotonic() - self._opened_at)
        if remaining > 0 or self._probing:
            raise CircuitOpenError(self.endpoint, max(0.0, remaining))
        self._probing = True  # half-open: this request is the probe
        return True

    def record_success(self) -> None:
        """A request succeeded: close the circuit."""
        self._failures = 0
        self._opened_at = None
        self._open_for = self.reset_timeout
        self._probing = False

    def record_failure(self, *, probe: bool | None = None) -> None:
        """A request failed: count it; open the circuit at the threshold or on a failed probe.

        Args:
            probe: whether the failed request was the probe (default: whether a probe is out).
                A request sent before the circuit opened that fails during a probe is not one.
        """
        self._failures += 1
        if self._probing if probe is None else probe:  # the probe failed: stay open, longer each time
            self._probing = False
            self._open_for = min(self._open_for * 2, self.max_reset_timeout)
            self._opened_at = time.monotonic()
        elif self._opened_at is None and self._failures >= self.failure_threshold:
            self._open_for = self.reset_timeout
            self._opened_at = time.monotonic()

    def release_probe(self) -> None:
        """The probe ended without a verdict on the endpoint: let the next request probe."""
        self._probing = False


class ConcurrencyLimiter:
    """At most ``limit`` requests in flight per event loop (asyncio semaphores, no threads)."""

    def __init__(self, limit: int | None) -> None:
        if limit is not None and limit < 1:
            raise ConfigurationError(f"max_concurrency must be >= 1, got {limit}")
        self.limit = limit
        self._semaphores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )
        self._last: tuple[weakref.ref[asyncio.AbstractEventLoop], asyncio.Semaphore] | None = None

    def semaphore(self) -> asyncio.Semaphore | None:
        """The running loop's semaphore, or None when unlimited."""
        if self.limit is None:
            return None
        import asyncio

        loop = asyncio.get_running_loop()
        last = self._last
        if last is not None and last[0]() is loop:  # the same loop as the last call: no weak-dict lookup
            return last[1]
        sem = self._semaphores.get(loop)
        if sem is None:
            # A semaphore that was waited on holds its loop, so a weak key alone never lets a
            # closed loop go: drop the closed loops' entries whenever a new loop comes.
            for closed in [other for other in self._semaphores if other.is_closed()]:
                del self._semaphores[closed]
            sem = asyncio.Semaphore(self.limit)
            self._semaphores[loop] = sem
        self._last = (weakref.ref(loop), sem)
        return sem


class RateLimiter:
    """Requests-per-minute and tokens-per-minute limits over a sliding 60-second window.

    Args:
        rpm: most requests started in any 60 s window (None: no limit).
        tpm: most tokens (estimated before the call) in any 60 s window (None: no limit).
        window: the window length in seconds (60 unless testing).
    """

    def __init__(self, rpm: int | None = None, tpm: int | None = None, window: float = 60.0) -> None:
        self.rpm = rpm
        self.tpm = tpm
        self.window = window
        self._events: collections.deque[tuple[float, int]] = collections.deque()
        self._tokens = 0

    @property
    def active(self) -> bool:
        """Whether any limit is set."""
        return self.rpm is not None or self.tpm is not None

    def _prune(self, now: float) -> None:
        while self._events and now - self._events[0][0] >= self.window:
            _, tokens = self._events.popleft()
            self._tokens -= tokens

    async def acquire(self, tokens: int = 0) -> None:
        """Wait until one more request of ``tokens`` tokens fits in the window, then count it."""
        import asyncio

        if self.tpm is not None and tokens > self.tpm:
            tokens = self.tpm  # a single oversized request still goes through, alone in its window
        while True:
            now = time.monotonic()
            self._prune(now)
            fits_requests = self.rpm is None or len(self._events) < self.rpm
            fits_tokens = self.tpm is None or self._tokens + tokens <= self.tpm
            if fits_requests and fits_tokens:
                self._events.append((now, tokens))
                self._tokens += tokens
                return
            wait = self.window - (now - self._events[0][0]) if self._events else 0.01
            await asyncio.sleep(max(wait, 0.001))
