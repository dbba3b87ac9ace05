"""Where the store lives: ``em.configure(store=...)``, ``$ELIXIRML_STORE``, or a SQLite file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def default_store_path() -> Path:
    """The default SQLite file, under the user's data directory."""
    import platformdirs

    return Path(platformdirs.user_data_dir("elixirml")) / "store.db"


def store_url(setting: Any = None) -> str:
    """The SQLAlchemy URL of the store in force (a setting, the environment, or the default file)."""
    from ..settings import current

    value = setting if setting is not None else current().store
    if value is not None:
        url = getattr(value, "url", value)
        return str(url)
    env = os.environ.get("ELIXIRML_STORE")
    if env:
        return env
    path = default_store_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"
