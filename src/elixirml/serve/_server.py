"""Run a served app under uvicorn, with a graceful drain on SIGTERM."""

from __future__ import annotations

import errno
import logging
import socket
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


def listen(host: str = "127.0.0.1", port: int = 8000) -> socket.socket:
    """A socket bound to ``host``:``port`` for :func:`run` (``sock=``), so that a taken port is found first.

    Args:
        host: the address to bind.
        port: the port (0: any free one; ``sock.getsockname()[1]`` says which).

    Raises:
        ConfigurationError: the port is in use (another server?), needs privileges, or the
            address is not one of this machine's; the message names the address and what to do.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: a restart reuses the port at once
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        where = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            raise ConfigurationError(
                f"Port {port} on {host} is already in use (another `elixirml serve`, or another server): stop it, "
                f"or choose another port with --port (e.g. --port {port + 1 if 0 < port < 65535 else 8001}; "
                "--port 0 picks a free one)."
            ) from None
        if exc.errno == errno.EACCES:
            raise ConfigurationError(
                f"Port {port} on {host} needs privileges this process does not have: choose a port above 1023 "
                "with --port."
            ) from None
        raise ConfigurationError(
            f"Cannot listen on {where}: {exc.strerror or exc}. Pass --host with an address of this machine "
            "(127.0.0.1 for this machine only)."
        ) from None
    return sock


def run(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    drain_timeout: float | None = None,
    log_level: str = "info",
    forwarded_allow_ips: str | None = None,
    sock: socket.socket | None = None,
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
        sock: a socket from :func:`listen` to serve on (``host`` and ``port`` must be the ones it
            was bound to); default: bind ``host``:``port`` here.

    Raises:
        ConfigurationError: a non-loopback address without tokens; the port is in use or cannot
            be bound (see :func:`listen`).
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

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started and sockets:  # uvicorn announces the address only where it bound the socket itself
                address, bound = sockets[0].getsockname()[:2]
                shown = f"[{address}]" if sockets[0].family == socket.AF_INET6 else address
                logging.getLogger("uvicorn.error").info(
                    "Uvicorn running on http://%s:%d (Press CTRL+C to quit)", shown, bound
                )

    if sock is None:
        sock = listen(host, port)  # before the server starts: a taken port is one clear error, not uvicorn's exit 3
    DrainingServer(config).run(sockets=[sock])
