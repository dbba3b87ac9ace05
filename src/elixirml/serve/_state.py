"""The state of a running server: live programs, their versions and canaries, counters, settings.

Everything here is changed only on the server's event loop, so a swap is a single assignment:
a request picks its version once, keeps a reference to it, and finishes on it even if another
version goes live meanwhile.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import logging
import random
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError

log = logging.getLogger("elixirml.serve")

if TYPE_CHECKING:
    from .._http import TokenSet
    from ..program import Interface, Module, Store
    from ..settings import Settings
    from ._loader import ProgramLoader

#: Upper bounds (seconds) of the latency histogram's buckets.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclasses.dataclass(eq=False)
class LoadedVersion:
    """One stored version, built and ready to answer.

    Attributes:
        name: the served program name.
        number: the stored version number.
        version_id: the stored version's id.
        program: the built program.
        interface: its request model and schemas.
        code: ``"stored"``, or ``"reloaded #N"`` after the N-th hot reload of its module.
        loaded_at: when it was built (Unix time).
    """

    name: str
    number: int
    version_id: int
    program: Module
    interface: Interface
    code: str
    loaded_at: float


@dataclasses.dataclass
class VersionStats:
    """Counters of one program version: requests, errors, latency, tokens, cost."""

    requests: int = 0
    errors: int = 0
    in_flight: int = 0
    latency_sum: float = 0.0
    buckets: list[int] = dataclasses.field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0

    def record(self, latency: float, *, error: bool, usage: Any = None) -> None:
        """Count one finished request."""
        self.requests += 1
        self.errors += int(error)
        self.latency_sum += latency
        self.buckets[bisect.bisect_left(LATENCY_BUCKETS, latency)] += 1
        if usage is not None:
            self.prompt_tokens += int(usage.prompt_tokens)
            self.completion_tokens += int(usage.completion_tokens)
            self.cost += float(usage.cost)

    def summary(self) -> dict[str, Any]:
        """Counts and mean latency as JSON."""
        return {
            "requests": self.requests,
            "errors": self.errors,
            "in_flight": self.in_flight,
            "mean_latency": self.latency_sum / self.requests if self.requests else None,
            "tokens": self.prompt_tokens + self.completion_tokens,
            "cost": self.cost,
        }


class Deployment:
    """What answers for one program name: the live version, an optional canary, the history.

    Args:
        live: the version that answers first.
    """

    def __init__(self, live: LoadedVersion) -> None:
        self.name = live.name
        self.live = live
        self.canary: LoadedVersion | None = None
        self.traffic = 0.0
        self.history: list[LoadedVersion] = []

    def pick(self) -> LoadedVersion:
        """The version that answers the next request (the canary for its share of traffic)."""
        canary = self.canary
        if canary is not None and random.random() < self.traffic:
            return canary
        return self.live

    def deploy(self, version: LoadedVersion) -> None:
        """Make ``version`` live (ending any canary); the one it replaces can be rolled back to."""
        if version is not self.live:
            self.history.append(self.live)
        self.live, self.canary, self.traffic = version, None, 0.0

    def start_canary(self, version: LoadedVersion, traffic: float) -> None:
        """Send ``traffic`` (0 < traffic < 1) of the requests to ``version``."""
        if not 0.0 < traffic < 1.0:
            raise ConfigurationError(f"A canary's traffic is a share between 0 and 1 (exclusive), got {traffic!r}")
        self.canary, self.traffic = version, float(traffic)

    def rollback(self) -> str:
        """End the canary if there is one, else return to the previous live version; says what it did.

        Raises:
            ConfigurationError: nothing to roll back to.
        """
        if self.canary is not None:
            ended = self.canary.number
            self.canary, self.traffic = None, 0.0
            return f"ended the canary of v{ended}; v{self.live.number} answers every request"
        if not self.history:
            raise ConfigurationError(
                f"Program {self.name!r} has no earlier version to roll back to (v{self.live.number} is the first "
                "one deployed since the server started)."
            )
        before = self.live.number
        self.live = self.history.pop()
        return f"rolled back from v{before} to v{self.live.number}"


@dataclasses.dataclass
class ServeSettings:
    """Limits and options of a server.

    Attributes:
        max_body_bytes: the largest request body accepted (413 above it).
        max_concurrency: requests in flight at once per caller (a token, or a client address
            when no tokens are set); one more is answered 429 with Retry-After.
        max_batch: the most inputs one ``/batch`` request may carry.
        retry_after: seconds a 429 answer tells the caller to wait.
        drain_timeout: seconds a SIGTERM waits for requests in flight before closing them.
        read_timeout: seconds a request body may take to arrive (408 after it); a body still
            arriving does not count against ``max_concurrency``.
        allowed_hosts: names the ``Host`` header may carry besides loopback names and IP
            addresses (``--allowed-host``; ``"*"``: any, for a proxy that checks it).
    """

    max_body_bytes: int = 1_048_576
    max_concurrency: int = 64
    max_batch: int = 64
    retry_after: int = 1
    drain_timeout: float = 30.0
    read_timeout: float = 30.0
    allowed_hosts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_concurrency", "max_batch", "retry_after"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"Serve setting {name!r} must be an integer >= 1, got {value!r}")
        if self.drain_timeout < 0:
            raise ConfigurationError(f"Serve setting 'drain_timeout' must be >= 0, got {self.drain_timeout!r}")
        if not self.read_timeout > 0:
            raise ConfigurationError(f"Serve setting 'read_timeout' must be > 0, got {self.read_timeout!r}")
        if isinstance(self.allowed_hosts, str):
            raise ConfigurationError("Serve setting 'allowed_hosts' is a list of names, not one string")
        self.allowed_hosts = tuple(self.allowed_hosts)


class ServeState:
    """Everything a running server holds; ``app.state.serve`` of an app from :func:`create_app`.

    Attributes:
        store: the store programs are loaded from.
        loader: builds versions (and reloads code) under the allowed module prefixes.
        deployments: program name -> :class:`Deployment`.
        unavailable: program name -> why it could not be loaded at start.
        tokens: the accepted bearer tokens (kept as digests; empty: no auth).
        settings: the limits (:class:`ServeSettings`).
        lm_settings: the ElixirML settings requests run under (with the server's LM), or None
            for the process settings.
        stats: (program, version) -> :class:`VersionStats`.
        rejected: reason -> count of requests refused before reaching a program.
        draining: set when a shutdown began; ``/readyz`` answers 503.
        model: the local model the server loads at start-up: ``"loading"``, ``"loaded"``,
            ``"failed: <why>"``, or None (no local model to load); ``/readyz`` answers 503 until
            it is loaded.
        tracer_provider: the OpenTelemetry provider of the requests' server spans (None: the global one).
        policy: what the request guard checks (hosts, tokens, limits), set by ``create_app``.
    """

    def __init__(
        self,
        store: Store,
        loader: ProgramLoader,
        tokens: TokenSet,
        settings: ServeSettings,
        lm_settings: Settings | None,
    ) -> None:
        self.store = store
        self.loader = loader
        self.tokens = tokens
        self.settings = settings
        self.lm_settings = lm_settings
        self.deployments: dict[str, Deployment] = {}
        self.unavailable: dict[str, str] = {}
        self.stats: dict[tuple[str, int], VersionStats] = {}
        self.rejected: dict[str, int] = {}
        self.in_flight = 0
        self.draining = False
        self.model: str | None = None
        self.tracer_provider: Any = None
        self.policy: Any = None  # the request guard's policy (elixirml._http.GuardPolicy), set by create_app
        self.deploy_locks: dict[str, asyncio.Lock] = {}  # one deploy at a time per name; requests never wait

    @property
    def ready(self) -> bool:
        """Whether the server takes traffic: not draining, and its local model (if any) loaded."""
        return not self.draining and self.model in (None, "loaded")

    async def load_model(self, lm: Any) -> None:
        """Load ``lm``'s model in a worker thread (the event loop keeps answering ``/healthz``)."""
        self.model = "loading"
        try:
            await asyncio.to_thread(lm.load_model)
        except Exception as exc:  # the server stays up and says why it is not ready
            self.model = f"failed: {type(exc).__name__}: {exc}"
            log.error("Loading the model of %r failed: %s", lm, exc)
        else:
            self.model = "loaded"

    def deploy_lock(self, name: str) -> asyncio.Lock:
        """The lock that makes deploys and rollbacks of ``name`` happen one at a time."""
        return self.deploy_locks.setdefault(name, asyncio.Lock())

    def __repr__(self) -> str:
        return f"ServeState(programs={sorted(self.deployments)}, {self.tokens!r})"

    def stats_of(self, version: LoadedVersion) -> VersionStats:
        """The counters of ``version`` (created on first use)."""
        key = (version.name, version.number)
        stats = self.stats.get(key)
        if stats is None:
            stats = self.stats[key] = VersionStats()
        return stats

    def reject(self, reason: str) -> None:
        """Count a request refused before it reached a program."""
        self.rejected[reason] = self.rejected.get(reason, 0) + 1

    def describe(self, deployment: Deployment) -> dict[str, Any]:
        """``GET /programs/{name}``: live version, canary, history and per-version counts."""
        live, canary = deployment.live, deployment.canary

        def version(v: LoadedVersion) -> dict[str, Any]:
            return {"version": v.number, "code": v.code, "loaded_at": v.loaded_at, **self.stats_of(v).summary()}

        counts = {
            str(number): s.summary() for (name, number), s in sorted(self.stats.items()) if name == deployment.name
        }
        return {
            "name": deployment.name,
            "live": version(live),
            "canary": {**version(canary), "traffic": deployment.traffic} if canary is not None else None,
            "history": [v.number for v in deployment.history],
            "class_path": f"{type(live.program).__module__}:{type(live.program).__qualname__}",
            "inputs": list(live.interface.input_names),
            "outputs": list(live.interface.output_names),
            "versions": counts,
        }
