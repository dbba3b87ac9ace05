"""Bearer-token auth for the server, as one FastAPI dependency every router can use.

Tokens come from ``create_app(tokens=...)`` / ``--token`` or ``$ELIXIRML_SERVE_TOKENS``
(comma-separated). Only their SHA-256 digests are kept; a token never reaches a log, a repr, an
error message or the store. With no tokens the server is open, which :func:`~elixirml.serve.run`
allows on a loopback address only.

A router of your own (the jobs API, say) protects its routes the same way::

    from fastapi import APIRouter, Depends
    from elixirml.serve import require_token

    router = APIRouter(dependencies=[Depends(require_token)])
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
from collections.abc import Iterable
from typing import Any

try:
    from fastapi import HTTPException, Request
except ImportError as exc:  # pragma: no cover - the serve extra is missing
    from ..errors import MissingDependencyError

    raise MissingDependencyError("fastapi", "serve", "The HTTP server") from exc

from ..errors import ConfigurationError

ENV_TOKENS = "ELIXIRML_SERVE_TOKENS"


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def caller_key(authorization: str | None, client: str) -> str:
    """Who is calling, for per-caller limits: a token's digest prefix, else the client address."""
    token = bearer(authorization)
    if token is not None:
        return "token:" + _digest(token).hex()[:12]
    return "client:" + client


class TokenSet:
    """The accepted tokens, as digests (compared in constant time).

    Args:
        tokens: the tokens; empty means no auth.
    """

    def __init__(self, tokens: Iterable[str]) -> None:
        cleaned = [t.strip() for t in tokens if t and t.strip()]
        for token in cleaned:
            if len(token) < 8:
                raise ConfigurationError("A serve token must have at least 8 characters (use a long random string).")
        self._digests = tuple(dict.fromkeys(_digest(t) for t in cleaned))

    @classmethod
    def from_sources(cls, tokens: Iterable[str] | None) -> TokenSet:
        """``tokens`` when given, else ``$ELIXIRML_SERVE_TOKENS`` (comma-separated), else none."""
        if tokens is None:
            tokens = [t for t in os.environ.get(ENV_TOKENS, "").split(",") if t.strip()]
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


@dataclasses.dataclass(frozen=True)
class Caller:
    """Who made a request: ``token:<digest prefix>``, or ``anonymous`` on a server without tokens."""

    id: str


def _state(request: Request) -> Any:
    state = getattr(request.app.state, "serve", None)
    if state is None:
        raise ConfigurationError("require_token needs an app built by elixirml.serve.create_app (app.state.serve)")
    return state


async def require_token(request: Request) -> Caller:
    """FastAPI dependency: the request's bearer token must be one of the server's (when it has any).

    Raises:
        HTTPException: 401 with ``WWW-Authenticate: Bearer`` when the token is missing or wrong.
    """
    state = _state(request)
    if not state.tokens:
        return Caller("anonymous")
    token = bearer(request.headers.get("authorization"))
    caller = state.tokens.check(token)
    if caller is None:
        state.reject("unauthorized")
        what = "missing" if token is None else "not accepted"
        raise HTTPException(
            status_code=401,
            detail=f"Bearer token {what}: send 'Authorization: Bearer <token>' with one of the server's tokens.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return Caller(caller)
