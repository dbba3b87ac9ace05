"""Run a served app under uvicorn, with a graceful drain on SIGTERM."""

from __future__ import annotations

import logging
from typing import Any

from .._http import is_loopback
from ..errors import ConfigurationError, MissingDependencyError

log = logging.getLogger("elixirml.serve")


def server_config(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    drain_timeout: float | None = None,
    log_level: str = "info",
    forwarded_allow_ips: str | None = None,
) -> Any:
    """The ``uvicorn.Config`` that :func:`run` serves ``app`` with (arguments as :func:`run`'s).

    Raises:
        ConfigurationError: a non-loopback address without tokens.
    """
    try:
        import uvicorn
    except ImportError:
        raise MissingDependencyError("uvicorn", "serve", "The HTTP server") from None
    state = app.state.serve
    if not is_loopback(host) and not state.tokens:
        raise ConfigurationError(
            f"Serving on {host} (not a loopback address) requires bearer tokens: pass --token or set "
            "ELIXIRML_SERVE_TOKENS (comma-separated), or bind to 127.0.0.1."
        )
    if state.policy is not None and host not in ("0.0.0.0", "::", ""):
        state.policy.allowed_hosts = state.policy.allowed_hosts | {host.lower().strip("[]")}  # the name it binds
    drain = state.settings.drain_timeout if drain_timeout is None else drain_timeout
    proxies = (forwarded_allow_ips or "").strip()
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=max(1, round(drain)),
        lifespan="on",
        proxy_headers=bool(proxies),  # X-Forwarded-For is believed from the proxies named, from no one else
        forwarded_allow_ips=proxies or None,
    )


def run(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    drain_timeout: float | None = None,
    log_level: str = "info",
    forwarded_allow_ips: str | None = None,
) -> None:
    """Serve ``app`` (from :func:`~elixirml.serve.create_app`) until SIGTERM or SIGINT.

    On SIGTERM the server stops accepting connections, ``/readyz`` answers 503, and requests
    in flight get up to ``drain_timeout`` seconds (default: the app's ``settings.drain_timeout``)
    to finish; those still running then are cancelled.

    Args:
        app: the app.
        host: the address to bind; anything but loopback requires bearer tokens.
        port: the port (0: any free one).
        drain_timeout: seconds to wait for requests in flight on shutdown.
        log_level: uvicorn's log level.
        forwarded_allow_ips: comma-separated addresses of the proxies whose ``X-Forwarded-For``
            names the client (per-client limits then key on it); default: none, the connection's
            own address is the client.

    Raises:
        ConfigurationError: a non-loopback address without tokens.
    """
    import uvicorn

    config = server_config(
        app,
        host=host,
        port=port,
        drain_timeout=drain_timeout,
        log_level=log_level,
        forwarded_allow_ips=forwarded_allow_ips,
    )
    state = app.state.serve
    drain = state.settings.drain_timeout if drain_timeout is None else drain_timeout

    class DrainingServer(uvicorn.Server):
        """uvicorn's server, marking the app as draining (``/readyz`` 503) as soon as a signal arrives."""

        def handle_exit(self, sig: int, frame: Any) -> None:
            if not state.draining:
                log.info("Draining: %d request(s) in flight, up to %.1fs", state.in_flight, drain)
            state.draining = True
            super().handle_exit(sig, frame)

    DrainingServer(config).run()
