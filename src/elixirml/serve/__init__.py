"""Serve stored programs over HTTP: ``elixirml serve`` and ``em.serve.create_app(...)``.

The server is an ASGI app on FastAPI (the ``serve`` extra). Importing ``elixirml.serve`` is
cheap: FastAPI and uvicorn are imported only when an app is built or a server is started.

Example::

    import elixirml as em

    app = em.serve.create_app(em.Store("sqlite:///programs.db"), lm=em.LM("openai/gpt-4o-mini"))
    # uvicorn.run(app, host="127.0.0.1", port=8000), or: elixirml --store sqlite:///programs.db serve

See docs/serving.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._app import create_app
    from ._auth import Caller, require_token
    from ._client import deploy, rollback
    from ._jobs import JobManager, JobRequest, jobs_router
    from ._server import listen, run
    from ._state import ServeSettings, ServeState

__all__ = [
    "Caller",
    "JobManager",
    "JobRequest",
    "ServeSettings",
    "ServeState",
    "create_app",
    "deploy",
    "jobs_router",
    "listen",
    "require_token",
    "rollback",
    "run",
]

_WHERE = {
    "create_app": "._app",
    "Caller": "._auth",
    "require_token": "._auth",
    "deploy": "._client",
    "rollback": "._client",
    "JobManager": "._jobs",
    "JobRequest": "._jobs",
    "jobs_router": "._jobs",
    "listen": "._server",
    "run": "._server",
    "ServeState": "._state",
    "ServeSettings": "._state",
}


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'elixirml.serve' has no attribute {name!r}")
    value = getattr(importlib.import_module(where, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
