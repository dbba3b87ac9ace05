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
from typing import Any

try:
    from fastapi import HTTPException, Request
except ImportError as exc:  # pragma: no cover - the serve extra is missing
    from ..errors import MissingDependencyError

    raise MissingDependencyError("fastapi", "serve", "The HTTP server") from exc

from .._http import CALLER_KEY, bearer
from ..errors import ConfigurationError

ENV_TOKENS = "ELIXIRML_SERVE_TOKENS"
_UNSET = object()


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
    checked = request.scope.get(CALLER_KEY, _UNSET)
    if isinstance(checked, str):  # the server's guard accepted the token already
        return Caller(checked)
    if not state.tokens:
        return Caller("anonymous")
    if len(request.headers.getlist("authorization")) > 1:
        raise HTTPException(
            status_code=400, detail="A request may carry one Authorization header, this one has several."
        )
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
