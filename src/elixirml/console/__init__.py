"""The web console: pages over the store (programs, optimization runs, evaluations, traces) and "try it".

Run it with ``elixirml console --store URL`` or build the ASGI app with
:func:`create_console_app` (mountable in another FastAPI/Starlette app). Templates and static
files ship in the package: it works offline, with no build step. Needs the ``serve`` extra.
See ``docs/observability.md``.
"""

from ._app import create_console_app

__all__ = ["create_console_app"]
