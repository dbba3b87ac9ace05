"""Request limits as ASGI middleware: body size, per-caller concurrency, requests in flight.

A body over the limit is answered 413 (from its ``Content-Length``, or as soon as a streamed
body passes the limit). A caller with ``max_concurrency`` requests in flight gets 429 with
``Retry-After`` for the next one; the count covers the whole response, a streamed one too.
Health, readiness and metrics probes are never limited.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.exceptions import HTTPException

from ._auth import caller_key
from ._state import ServeState

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

UNLIMITED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class BodyTooLarge(HTTPException):
    """The request body passed the server's limit (answered 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"Request body larger than the server's limit of {limit} bytes.")


class LimitsMiddleware:
    """Enforces the body-size and per-caller concurrency limits of ``state.settings``."""

    def __init__(self, app: ASGIApp, state: ServeState) -> None:
        self.app = app
        self.state = state
        self.active: dict[str, int] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state, settings = self.state, self.state.settings
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > settings.max_body_bytes:
            state.reject("too_large")
            await _answer(send, 413, {"detail": str(BodyTooLarge(settings.max_body_bytes).detail)})
            return
        if scope.get("path") in UNLIMITED_PATHS:
            await self.app(scope, receive, send)
            return
        client = scope.get("client") or ("unknown", 0)
        key = caller_key(headers.get("authorization"), str(client[0]))
        if self.active.get(key, 0) >= settings.max_concurrency:
            state.reject("too_many_requests")
            await _answer(
                send,
                429,
                {"detail": f"Too many requests in flight for this caller (limit {settings.max_concurrency}); retry."},
                [(b"retry-after", str(settings.retry_after).encode())],
            )
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > settings.max_body_bytes:
                    state.reject("too_large")
                    raise BodyTooLarge(settings.max_body_bytes)
            return message

        self.active[key] = self.active.get(key, 0) + 1
        state.in_flight += 1
        try:
            await self.app(scope, limited_receive, send)
        finally:
            state.in_flight -= 1
            left = self.active[key] - 1
            if left:
                self.active[key] = left
            else:
                del self.active[key]


async def _answer(
    send: Send, status: int, body: dict[str, Any], extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})
