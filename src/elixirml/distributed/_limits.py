"""An LM's rate limits, its circuit breaker and the run's LM call budget, shared by every worker.

Each worker's LM gets a :class:`SharedRateLimiter` and a :class:`SharedCircuitBreaker` in
place of its own: they ask the one :class:`LimitsActor` of the run, so 4 workers under a
600 RPM limit send at most 600 requests a minute together, and failures seen by any worker
open the circuit for all of them. A :class:`SharedCallBudget` does the same for the driver's
``max_lm_calls``: every worker's call is taken from one count.
"""

from __future__ import annotations

from typing import Any

from ..errors import BudgetExceededError, CircuitOpenError
from ..lm import CallBudget
from ..runtime import CircuitBreaker, RateLimiter


class LimitsActor:
    """The shared state: one token bucket and one breaker per LM endpoint (run as an async Ray actor)."""

    def __init__(self) -> None:
        self._limiters: dict[str, RateLimiter] = {}
        self._breakers: dict[str, CircuitBreaker] = {}
        self._calls_taken = 0
        self._calls_allowed: int | None = None

    def allow_calls(self, total: int | None) -> None:
        """Let the workers take LM calls while fewer than ``total`` were taken in all (None: no cap)."""
        self._calls_allowed = total

    def take_call(self) -> bool:
        """Count one LM call of a worker; False (and nothing counted) when the budget is spent."""
        if self._calls_allowed is not None and self._calls_taken >= self._calls_allowed:
            return False
        self._calls_taken += 1
        return True

    def configure(
        self, key: str, rate: tuple[int | None, int | None, float] | None, breaker: dict[str, Any] | None
    ) -> None:
        """Set up the limits of endpoint ``key`` (the first worker to ask wins; later calls keep them)."""
        if rate is not None and key not in self._limiters:
            rpm, tpm, window = rate
            self._limiters[key] = RateLimiter(rpm, tpm, window)
        if breaker is not None and key not in self._breakers:
            self._breakers[key] = CircuitBreaker(**breaker)

    async def acquire(self, key: str, tokens: int) -> None:
        """Wait until one more request of ``tokens`` tokens fits the shared window."""
        await self._limiters[key].acquire(tokens)

    def before_request(self, key: str) -> tuple[bool, float | None]:
        """``(probe, None)`` when a request may go; ``(False, reopens_in)`` when the circuit is open."""
        try:
            return self._breakers[key].before_request(), None
        except CircuitOpenError as exc:
            return False, exc.reopens_in

    def record_success(self, key: str) -> None:
        """A worker's request succeeded."""
        self._breakers[key].record_success()

    def record_failure(self, key: str, probe: bool | None) -> None:
        """A worker's request failed."""
        self._breakers[key].record_failure(probe=probe)

    def release_probe(self, key: str) -> None:
        """A worker's probe ended without a verdict."""
        self._breakers[key].release_probe()

    def breaker_state(self, key: str) -> str:
        """``"closed"``, ``"open"`` or ``"half_open"``."""
        return self._breakers[key].state


class SharedRateLimiter(RateLimiter):
    """A worker's view of the shared rate limit: every acquire waits on the shared actor."""

    def __init__(self, actor: Any, key: str, rpm: int | None, tpm: int | None, window: float) -> None:
        super().__init__(rpm, tpm, window)
        self._actor = actor
        self._key = key

    async def acquire(self, tokens: int = 0) -> None:
        await self._actor.acquire.remote(self._key, tokens)


class SharedCircuitBreaker(CircuitBreaker):
    """A worker's view of the shared circuit breaker: the state lives in the shared actor."""

    def __init__(self, actor: Any, key: str, **options: Any) -> None:
        super().__init__(**options)
        self._actor = actor
        self._key = key

    @property
    def state(self) -> str:
        from ._ray import ray_module

        return str(ray_module().get(self._actor.breaker_state.remote(self._key)))

    def before_request(self) -> bool:
        from ._ray import ray_module

        probe, reopens_in = ray_module().get(self._actor.before_request.remote(self._key))
        if reopens_in is not None:
            raise CircuitOpenError(self.endpoint, float(reopens_in))
        return bool(probe)

    # The verdicts are sent without waiting: one caller's calls reach an actor in order.
    def record_success(self) -> None:
        self._actor.record_success.remote(self._key)

    def record_failure(self, *, probe: bool | None = None) -> None:
        self._actor.record_failure.remote(self._key, probe)

    def release_probe(self) -> None:
        self._actor.release_probe.remote(self._key)


class SharedCallBudget(CallBudget):
    """A worker's view of the driver's LM call budget: each call is taken from the shared count."""

    def __init__(self, actor: Any) -> None:
        super().__init__(None)
        self._actor = actor

    def take(self) -> None:
        from ._ray import ray_module

        self._granted(bool(ray_module().get(self._actor.take_call.remote())))

    async def atake(self) -> None:
        self._granted(bool(await self._actor.take_call.remote()))

    def _granted(self, granted: bool) -> None:
        if not granted:
            raise BudgetExceededError("The run's LM call budget (max_lm_calls, shared by every worker) is spent")
        self.used += 1


def breaker_options(breaker: CircuitBreaker) -> dict[str, Any]:
    """The constructor arguments that rebuild ``breaker``'s policy (not its state)."""
    return {
        "endpoint": breaker.endpoint,
        "failure_threshold": breaker.failure_threshold,
        "reset_timeout": breaker.reset_timeout,
        "max_reset_timeout": breaker.max_reset_timeout,
    }
