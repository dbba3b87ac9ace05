"""Talk to a running server: ``deploy`` and ``rollback`` (what ``elixirml deploy`` calls)."""

from __future__ import annotations

import os
from typing import Any

from ..errors import ConfigurationError, MissingDependencyError

ENV_TOKEN = "ELIXIRML_SERVE_TOKEN"


def _post(server: str, path: str, body: dict[str, Any] | None, token: str | None, timeout: float) -> dict[str, Any]:
    try:
        import httpx
    except ImportError:
        raise MissingDependencyError("httpx", "serve", "Talking to a server") from None
    token = token or os.environ.get(ENV_TOKEN) or None
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = server.rstrip("/") + path
    try:
        response = httpx.post(url, json=body if body is not None else {}, headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        raise ConfigurationError(f"Could not reach the server at {server}: {type(exc).__name__}: {exc}") from None
    try:
        data: dict[str, Any] = response.json()
    except ValueError:
        data = {"detail": response.text[:500]}
    if response.status_code >= 400:
        detail = data.get("detail", data)
        raise ConfigurationError(f"The server answered {response.status_code}: {detail}")
    return data


def deploy(
    server: str,
    name: str,
    version: int | None = None,
    *,
    traffic: float | None = None,
    reload: bool = False,
    token: str | None = None,
    timeout: float = 60.0,
) -> dict[str, Any]:
    """Deploy ``name`` version ``version`` on the server at ``server`` (``http://host:port``).

    Args:
        server: the server's base URL.
        name: the program name.
        version: the stored version (default: the latest; with ``reload``, the live one).
        traffic: send only this share of requests to it, as a canary.
        reload: re-import the program's module first.
        token: a bearer token (default ``$ELIXIRML_SERVE_TOKEN``).
        timeout: seconds to wait for the answer.

    Returns:
        The server's answer: ``live``, ``canary``, ``traffic``, ``message``.

    Raises:
        ConfigurationError: the server could not be reached or refused (its reason included).
    """
    body: dict[str, Any] = {"reload": reload}
    if version is not None:
        body["version"] = version
    if traffic is not None:
        body["traffic"] = traffic
    return _post(server, f"/programs/{name}/deploy", body, token, timeout)


def rollback(server: str, name: str, *, token: str | None = None, timeout: float = 60.0) -> dict[str, Any]:
    """End ``name``'s canary, or return it to its previous version, on the server at ``server``.

    Raises:
        ConfigurationError: the server could not be reached or refused (its reason included).
    """
    return _post(server, f"/programs/{name}/rollback", None, token, timeout)
