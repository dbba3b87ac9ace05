"""What the server and the console share at the HTTP edge: one ASGI guard, token sets, JSON in and out.

:class:`Guard` checks every request before an app sees it, in this order, each refusal a JSON
answer naming what is wrong:

- ``Host`` must be one of the server's names (loopback names, an IP address, or a name the
  operator allowed): a page whose domain was rebound to 127.0.0.1 is refused (400).
- A cross-origin ``Origin`` is refused (403), and two ``Authorization`` headers are (400).
- With tokens, every path but the open ones (health, readiness, metrics) needs one (401), sent
  as ``Authorization: Bearer <token>`` or, on the console, as its login cookie.
- ``POST``, ``PUT`` and ``PATCH`` must carry ``Content-Type: application/json`` (415), so no
  web page can send them as a "simple" cross-site request.
- The body must arrive within ``read_timeout`` seconds (408) and stay under ``max_body_bytes``
  (413); it is read *before* the request counts against the in-flight limit, so slow uploads
  hold no slot. A JSON body is parsed once, depth-limited and without NaN or Infinity (400).
- A caller (the token auth accepted, else the client address) with ``max_concurrency``
  requests in flight gets 429 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import ipaddress
import json
import math
import os
import re
import secrets
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from pydantic_core import from_json

from .errors import ConfigurationError, OutputError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The names a server on loopback answers to (``--allowed-host`` adds more).
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
#: Scope keys the guard sets: the accepted caller (``token:<digest prefix>``, or None) and the parsed JSON body.
CALLER_KEY = "elixirml.caller"
BODY_KEY = "elixirml.body"
#: The console's login cookie.
SESSION_COOKIE = "elixirml_session"
#: How deep a JSON body may nest (the parser's limit).
MAX_JSON_DEPTH = 200

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_HUGE_NUMBER = re.compile(rb"[0-9.][eE][+]?0*[1-9][0-9]{2,}|[0-9.]{300,}")


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


class TokenSet:
    """The accepted bearer tokens, kept as SHA-256 digests (compared in constant time).

    Args:
        tokens: the tokens; empty means no auth.

    Raises:
        ConfigurationError: a token shorter than 8 characters.
    """

    def __init__(self, tokens: Iterable[str]) -> None:
        cleaned = [t.strip() for t in tokens if t and t.strip()]
        for token in cleaned:
            if len(token) < 8:
                raise ConfigurationError("A serve token must have at least 8 characters (use a long random string).")
        self._digests = tuple(dict.fromkeys(_digest(t) for t in cleaned))
        key = secrets.token_bytes(32)  # sessions of this process only: a restart logs every browser out
        self._sessions = {hmac.new(key, d, hashlib.sha256).hexdigest(): "token:" + d.hex()[:12] for d in self._digests}

    @classmethod
    def from_sources(cls, tokens: Iterable[str] | None, env: str = "ELIXIRML_SERVE_TOKENS") -> TokenSet:
        """``tokens`` when given, else ``$ELIXIRML_SERVE_TOKENS`` (comma-separated), else none."""
        if tokens is None:
            tokens = [t for t in os.environ.get(env, "").split(",") if t.strip()]
        return cls(tokens)

    def __bool__(self) -> bool:
        return bool(self._digests)

    def __len__(self) -> int:
        return len(self._digests)

    def __repr__(self) -> str:
        return f"TokenSet({len(self._digests)} token(s))"

    def check(self, token: str | None) -> str | None:
        """The caller's id (``token:<digest prefix>``) when ``token`` is accepted, else None."""
        if token is None:
            return None
        digest = _digest(token)
        if any(hmac.compare_digest(digest, known) for known in self._digests):
            return "token:" + digest.hex()[:12]
        return None

    def session(self, token: str) -> str | None:
        """The login cookie's value for an accepted ``token`` (None when it is not accepted)."""
        caller = self.check(token)
        if caller is None:
            return None
        return next(value for value, who in self._sessions.items() if who == caller)

    def check_session(self, value: str | None) -> str | None:
        """The caller's id when ``value`` is a login cookie this process gave out, else None."""
        if not value:
            return None
        for known, caller in self._sessions.items():
            if hmac.compare_digest(known.encode(), value.encode("utf-8", "replace")):
                return caller
        return None


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def parse_json_body(raw: bytes) -> Any:
    """A request body as JSON: nested at most :data:`MAX_JSON_DEPTH` deep, no NaN or Infinity.

    Raises:
        ValueError: it is not such JSON (the message says where).
    """
    if not raw:
        return None
    try:
        value = from_json(raw, allow_inf_nan=False)
    except ValueError as exc:
        why = str(exc)
        if "recursion limit" in why:
            why = f"nested deeper than {MAX_JSON_DEPTH} levels ({why})"
        raise ValueError(f"Request body is not valid JSON: {why} (NaN and Infinity are not JSON)") from None
    if _HUGE_NUMBER.search(raw) and _has_nonfinite(value):
        raise ValueError("Request body is not valid JSON: a number is too large for a float (it would be Infinity)")
    return value


def _has_nonfinite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_nonfinite(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_nonfinite(v) for v in value)
    return False


def invalid_output(value: Any, where: str = "outputs") -> str | None:
    """Why ``value`` (a program's outputs, as JSON-able data) cannot be sent as JSON, or None when it can.

    A string with a lone surrogate is not Unicode; NaN and Infinity are not JSON.
    """
    if isinstance(value, str):
        if value.isascii():
            return None
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return f"{where} holds a lone surrogate (U+{ord(value[exc.start]):04X}), which is not Unicode"
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{where} is {value!r}, which JSON cannot carry"
    if isinstance(value, dict):
        for key, item in value.items():
            found = invalid_output(item, f"{where}.{key}")
            if found:
                return found
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = invalid_output(item, f"{where}[{i}]")
            if found:
                return found
    return None


def check_output(value: Any, where: str = "outputs") -> None:
    """Raise :class:`~elixirml.errors.OutputError` when ``value`` cannot be sent as JSON (:func:`invalid_output`)."""
    why = invalid_output(value, where)
    if why:
        raise OutputError(f"The provider's answer was invalid: {why}")


def json_line(data: Any) -> str:
    """``data`` as one line of JSON for an event stream; a lone surrogate comes out as its JSON escape."""
    text = json.dumps(data, ensure_ascii=False, default=str)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("ascii", "replace")
    return text


@dataclasses.dataclass
class GuardPolicy:
    """What :class:`Guard` checks.

    Attributes:
        tokens: the accepted tokens (empty: no auth).
        allowed_hosts: names besides loopback names and IP addresses the ``Host`` header may
            carry; ``"*"`` among them turns the check off.
        open_paths: paths without token, limit or ``Host`` check (health probes).
        max_body_bytes: the largest body (413 above it).
        max_concurrency: requests in flight per caller (429 above it); None: no limit.
        retry_after: the ``Retry-After`` of a 429.
        read_timeout: seconds a body may take to arrive (408 after it).
        login_path: where a browser without a login is sent (the console's login page); None: 401.
        public_paths: paths (prefixes ending in ``/``) served without a login, like the login page.
    """

    tokens: TokenSet
    allowed_hosts: frozenset[str] = frozenset()
    open_paths: frozenset[str] = frozenset()
    max_body_bytes: int = 1_048_576
    max_concurrency: int | None = None
    retry_after: int = 1
    read_timeout: float = 30.0
    login_path: str | None = None
    public_paths: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.allowed_hosts = frozenset(h.strip().lower().rstrip(".") for h in self.allowed_hosts if h.strip())
        if self.read_timeout <= 0 or self.read_timeout != self.read_timeout:
            raise ConfigurationError(f"The body read timeout must be > 0 seconds, got {self.read_timeout!r}")


class Counters:
    """Requests in flight and refusals by reason (the server's :class:`~elixirml.serve.ServeState` is one too)."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.rejected: dict[str, int] = {}

    def reject(self, reason: str) -> None:
        """Count a refused request."""
        self.rejected[reason] = self.rejected.get(reason, 0) + 1


class Guard:
    """ASGI middleware that checks each request as the module docstring says.

    Args:
        app: the app it guards.
        policy: what it checks.
        counters: where it counts requests in flight and refusals (``in_flight``, ``reject(reason)``).
    """

    def __init__(self, app: ASGIApp, policy: GuardPolicy, counters: Any = None) -> None:
        self.app = app
        self.policy = policy
        self.counters = counters if counters is not None else Counters()
        self.active: dict[str, int] = {}
        self._hosts: dict[bytes, bool] = {}

    def host_allowed(self, host: bytes) -> bool:
        """Whether a ``Host`` header names this server (cached per value)."""
        known = self._hosts.get(host)
        if known is not None:
            return known
        name = host.decode("latin-1").strip().lower()
        port = ""
        if name.startswith("["):
            name, _, rest = name[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else rest  # "[::1]evil": not a port, refused below
        elif name.count(":") == 1:
            name, _, port = name.partition(":")
        name = name.rstrip(".")
        allowed = self.policy.allowed_hosts
        # "127.0.0.1:8000@evil.example": what follows the name must be a port, nothing else
        ok = (
            (not port or (port.isascii() and port.isdigit()))
            and bool(name)
            and ("*" in allowed or name in LOOPBACK_NAMES or name in allowed or _is_ip(name))
        )
        if len(self._hosts) < 1024:
            self._hosts[host] = ok
        return ok

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        policy, counters = self.policy, self.counters
        host = origin = content_type = length = authorization = cookie = None
        authorizations = 0
        chunked = False
        for key, value in scope["headers"]:
            if key == b"host":
                host = value
            elif key == b"content-type":
                content_type = value
            elif key == b"content-length":
                length = value
            elif key == b"authorization":
                authorization = value
                authorizations += 1
            elif key == b"origin":
                origin = value
            elif key == b"cookie":
                cookie = value
            elif key == b"transfer-encoding":
                chunked = True
        path = scope.get("path", "")
        open_path = path in policy.open_paths
        if not open_path:
            if host is None or not self.host_allowed(host):
                counters.reject("bad_host")
                shown = host.decode("latin-1") if host is not None else ""
                name = shown.rpartition(":")[0] if shown.count(":") == 1 else shown
                await answer(
                    send,
                    400,
                    f"Host {shown!r} is not a name of this server: start it with --allowed-host {name or 'NAME'} "
                    "(allowed_hosts=[...]) to answer to it.",
                )
                return
            if origin is not None and not self._same_origin(origin, host):
                counters.reject("cross_origin")
                await answer(
                    send, 403, f"Cross-origin request refused: Origin {origin.decode('latin-1')!r} is not this server."
                )
                return
        if authorizations > 1:
            counters.reject("bad_request")
            await answer(send, 400, "A request may carry one Authorization header, this one has several.")
            return
        caller: str | None = None
        if policy.tokens:
            token = bearer(authorization.decode("latin-1")) if authorization is not None else None
            caller = policy.tokens.check(token)
            if caller is None and cookie is not None and policy.login_path is not None:
                caller = policy.tokens.check_session(_cookie(cookie, SESSION_COOKIE))
            if caller is None and not open_path and not path.startswith(policy.public_paths or ("\0",)):
                counters.reject("unauthorized")
                if policy.login_path is not None and scope.get("method") == "GET":
                    root = scope.get("root_path", "").rstrip("/")
                    await send(
                        {
                            "type": "http.response.start",
                            "status": 303,
                            "headers": [
                                (b"location", f"{root}{policy.login_path}".encode()),
                                (b"content-length", b"0"),
                            ],
                        }
                    )
                    await send({"type": "http.response.body", "body": b""})
                    return
                what = "missing" if token is None else "not accepted"
                await answer(
                    send,
                    401,
                    f"Bearer token {what}: send 'Authorization: Bearer <token>' with one of the server's tokens.",
                    [(b"www-authenticate", b"Bearer")],
                )
                return
        scope[CALLER_KEY] = caller
        if scope.get("method") in _BODY_METHODS and not open_path and not _is_json(content_type):
            counters.reject("unsupported_media_type")
            shown = content_type.decode("latin-1") if content_type is not None else "none"
            await answer(send, 415, f"Send the body as JSON with 'Content-Type: application/json' (got {shown}).")
            return
        if length is not None:
            if not length.isdigit():
                counters.reject("bad_request")
                await answer(send, 400, "The Content-Length header is not a number.")
                return
            if int(length) > policy.max_body_bytes:
                counters.reject("too_large")
                await answer(
                    send, 413, f"Request body larger than the server's limit of {policy.max_body_bytes} bytes."
                )
                return
        app_receive = receive
        if chunked or (length is not None and length != b"0"):
            try:
                async with asyncio.timeout(policy.read_timeout):
                    body, disconnected = await self._read(receive)
            except TimeoutError:
                counters.reject("body_timeout")
                await answer(
                    send,
                    408,
                    f"The request body did not arrive within {policy.read_timeout:g} s.",
                    [(b"connection", b"close")],
                )
                return
            except _TooLarge:
                counters.reject("too_large")
                await answer(
                    send, 413, f"Request body larger than the server's limit of {policy.max_body_bytes} bytes."
                )
                return
            if disconnected:
                return
            if body and _is_json(content_type):
                try:
                    scope[BODY_KEY] = parse_json_body(body)
                except ValueError as exc:
                    counters.reject("bad_json")
                    await answer(send, 400, str(exc))
                    return
            app_receive = _replay(body, receive)
        if open_path or policy.max_concurrency is None:
            await self.app(scope, app_receive, send)
            return
        if caller is None:
            client = scope.get("client") or ("unknown", 0)
            caller = "client:" + str(client[0])
        active = self.active.get(caller, 0)
        if active >= policy.max_concurrency:
            counters.reject("too_many_requests")
            await answer(
                send,
                429,
                f"Too many requests in flight for this caller (limit {policy.max_concurrency}); retry.",
                [(b"retry-after", str(policy.retry_after).encode())],
            )
            return
        self.active[caller] = active + 1
        counters.in_flight += 1
        try:
            await self.app(scope, app_receive, send)
        finally:
            counters.in_flight -= 1
            left = self.active[caller] - 1
            if left:
                self.active[caller] = left
            else:
                del self.active[caller]

    def _same_origin(self, origin: bytes, host: bytes) -> bool:
        value = origin.decode("latin-1").strip().lower()
        _, sep, netloc = value.partition("://")
        if not sep or not netloc:
            return False  # "null" and the like: a sandboxed or privacy-hidden page
        if netloc == host.decode("latin-1").strip().lower():
            return True
        name = netloc[1:].partition("]")[0] if netloc.startswith("[") else netloc.rpartition(":")[0] or netloc
        if name in LOOPBACK_NAMES or _is_ip(name):
            return False  # another port (or scheme) on a machine's address is another site: only an exact match
        allowed = self.policy.allowed_hosts
        # a name the operator allowed: behind a TLS proxy the page's origin differs from the Host the server sees
        return "*" in allowed or name in allowed

    async def _read(self, receive: Receive) -> tuple[bytes, bool]:
        parts: list[bytes] = []
        size = 0
        limit = self.policy.max_body_bytes
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b"", True
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise _TooLarge
                parts.append(chunk)
            if not message.get("more_body", False):
                return parts[0] if len(parts) == 1 else b"".join(parts), False


class _TooLarge(Exception):
    """The body passed the limit while it arrived (answered 413)."""


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # what follows the body: the client's disconnect

    return replay


def _is_json(content_type: bytes | None) -> bool:
    if content_type is None:
        return False
    media = content_type.partition(b";")[0].strip().lower()
    return media == b"application/json"


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (``127.0.0.0/8``, ``::1``, ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _cookie(header: bytes, name: str) -> str | None:
    for part in header.decode("latin-1").split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value.strip()
    return None


async def answer(send: Send, status: int, detail: str, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    """Send a JSON answer ``{"detail": ...}`` with ``status``."""
    data = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


__all__ = [
    "BODY_KEY",
    "CALLER_KEY",
    "LOOPBACK_NAMES",
    "SESSION_COOKIE",
    "Counters",
    "Guard",
    "GuardPolicy",
    "TokenSet",
    "answer",
    "bearer",
    "check_output",
    "invalid_output",
    "is_loopback",
    "json_line",
    "parse_json_body",
]
