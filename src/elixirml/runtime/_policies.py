"""Resilience policies for calls to a provider: retries, circuit breaker, concurrency and rate limits.

All of them are asyncio-native: waiting never blocks a thread.
"""

from __future__ import annotations

import asyncio
import collections
import random
import time
import weakref

from ..errors import CircuitOpenError, ConfigurationError


class RetryPolicy:
    """Exponential backoff with full jitter, honouring a provider's ``Retry-After``.

    Args:
        retries: how many times a failed request is tried again (0 disables retries).
        base_delay: the first backoff ceiling in seconds; it doubles each attempt.
        max_delay: the largest wait between attempts.
        rng: random source for jitter (pass a seeded ``random.Random`` for reproducible waits).
    """

    def __init__(
        self,
        retries: int = 5,
        base_delay: float = 0.5,
        max_delay: float = 30.0,
        rng: random.Random | None = None,
    ) -> None:
        if retries < 0:
            raise ConfigurationError(f"retries must be >= 0, got {retries}")
        self.retries = retries
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._rng = rng or random.Random()

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt + 1`` (``attempt`` counts from 0)."""
        if retry_after is not None and retry_after >= 0:
            return min(float(retry_after), self.max_delay)
        ceiling = min(self.max_delay, self.base_delay * (2**attempt))
        return self._rng.uniform(0.0, ceiling)


class CircuitBreaker:
    """Stops sending to an endpoint that keeps failing.

    Closed: requests flow; ``failure_threshold`` failures in a row open it. Open: requests
    raise :class:`~elixirml.errors.CircuitOpenError` at once, for ``reset_timeout`` seconds.
    Half-open: one probe request is let through; success closes the circuit, failure opens it
    again.

    Args:
        endpoint: a label for messages (no secrets: never a URL with credentials).
        failure_threshold: consecutive failures that open the circuit.
        reset_timeout: seconds the circuit stays open before a probe.
    """

    def __init__(self, endpoint: str, failure_threshold: int = 20, reset_timeout: float = 10.0) -> None:
        if failure_threshold < 1:
            raise ConfigurationError("failure_threshold must be >= 1")
        self.endpoint = endpoint
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half_open"``."""
        if self._opened_at is None:
            return "closed"
        if time.monotonic() - self._opened_at >= self.reset_timeout:
            return "half_open"
        return "open"

    def before_request(self) -> None:
        """Raise :class:`CircuitOpenError` unless a request may be sent now."""
        state = self.state
        if state == "closed":
            return
        if state == "open" or self._probing:
            assert self._opened_at is not None
            remaining = max(0.0, self.reset_timeout - (time.monotonic() - self._opened_at))
            raise CircuitOpenError(self.endpoint, remaining)
        self._probing = True  # half-open: this request is the probe

    def record_success(self) -> None:
        """A request succeeded: close the circuit."""
        self._failures = 0
        self._opened_at = None
        self._probing = False

    def record_failure(self) -> None:
        """A request failed: count it; open the circuit at the threshold or on a failed probe."""
        self._failures += 1
        if self._probing or self._failures >= self.failure_threshold:
            self._opened_at = time.monotonic()
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

    def semaphore(self) -> asyncio.Semaphore | None:
        """The running loop's semaphore, or None when unlimited."""
        if self.limit is None:
            return None
        loop = asyncio.get_running_loop()
        sem = self._semaphores.get(loop)
        if sem is None:
            sem = asyncio.Semaphore(self.limit)
            self._semaphores[loop] = sem
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
