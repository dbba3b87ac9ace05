"""The LM cache: an in-memory LRU in front of a persistent SQLite file.

The key is a hash of the model, the messages and every setting that changes the answer
(temperature, max_tokens, n, response_format, tools, rollout_id, ...). API keys and base URLs
are never settings, so they never reach the key or the file. Only responses that the caller
validated are stored (see ``LM.arequest(validate=...)``). The file is in WAL mode with a busy
timeout, so several processes can share it.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError
from ._types import Completion, LMResponse, Usage

_SCHEMA = """
CREATE TABLE IF NOT EXISTS lm_cache (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    response TEXT NOT NULL,
    created_at REAL NOT NULL
)
"""


def default_cache_dir() -> Path:
    """``$ELIXIRML_CACHE_DIR``, else the user's cache directory for ElixirML."""
    env = os.environ.get("ELIXIRML_CACHE_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("elixirml"))


class Cache:
    """Two-level LM response cache.

    Args:
        path: the SQLite file (a directory gets ``lm_cache.sqlite`` inside); default under
            :func:`default_cache_dir`. ``":memory:"`` keeps only the in-memory level.
        memory_size: entries kept in the in-memory LRU.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, memory_size: int = 4096) -> None:
        if memory_size < 0:
            raise ConfigurationError("memory_size must be >= 0")
        self.memory_size = memory_size
        self._memory: collections.OrderedDict[str, str] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        if path is not None and str(path) == ":memory:":
            self.path: Path | None = None
            self._db: sqlite3.Connection | None = None
            return
        target = Path(path) if path is not None else default_cache_dir()
        if target.suffix == "" or target.is_dir():
            target = target / "lm_cache.sqlite"
        target.parent.mkdir(parents=True, exist_ok=True)
        self.path = target
        self._db = sqlite3.connect(target, timeout=30.0, check_same_thread=False, isolation_level=None)
        # Another process opening the file at the same moment can make these statements fail with
        # SQLITE_BUSY without waiting on the busy timeout; they are idempotent, so try again.
        for attempt in range(100):
            try:
                self._db.execute("PRAGMA busy_timeout=30000")
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.execute(_SCHEMA)
                break
            except sqlite3.OperationalError as exc:
                if ("locked" not in str(exc) and "busy" not in str(exc)) or attempt == 99:
                    raise
                time.sleep(0.05)

    def __repr__(self) -> str:
        return f"Cache(path={str(self.path) if self.path else ':memory:'!r})"

    @staticmethod
    def key(model: str, messages: list[dict[str, Any]], settings: dict[str, Any]) -> str:
        """The cache key of a request (a SHA-256 hex digest)."""
        payload = json.dumps(
            {"model": model, "messages": messages, "settings": settings},
            sort_keys=True,
            ensure_ascii=False,
            default=repr,
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def get(self, key: str) -> LMResponse | None:
        """The cached response for ``key`` (marked ``cached``, zero usage), or None."""
        with self._lock:
            text = self._memory.get(key)
            if text is not None:
                self._memory.move_to_end(key)
            elif self._db is not None:
                row = self._db.execute("SELECT response FROM lm_cache WHERE key = ?", (key,)).fetchone()
                if row is not None:
                    text = row[0]
                    self._remember(key, text)
            if text is None:
                self.misses += 1
                return None
            self.hits += 1
        data = json.loads(text)
        return LMResponse(
            completions=[Completion(**c) for c in data["completions"]],
            usage=Usage(cached_calls=1),
            model=data.get("model", ""),
            cached=True,
        )

    def put(self, key: str, response: LMResponse) -> None:
        """Store a (validated) response."""
        text = json.dumps(
            {"model": response.model, "completions": [dataclasses.asdict(c) for c in response.completions]},
            ensure_ascii=False,
            default=repr,
        )
        with self._lock:
            self._remember(key, text)
            if self._db is not None:
                self._db.execute(
                    "INSERT OR REPLACE INTO lm_cache (key, model, response, created_at) VALUES (?, ?, ?, ?)",
                    (key, response.model, text, time.time()),
                )

    def _remember(self, key: str, text: str) -> None:
        if self.memory_size == 0:
            return
        self._memory[key] = text
        self._memory.move_to_end(key)
        while len(self._memory) > self.memory_size:
            self._memory.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            if self._db is None:
                return len(self._memory)
            return int(self._db.execute("SELECT COUNT(*) FROM lm_cache").fetchone()[0])

    def clear(self) -> None:
        """Remove every entry (both levels)."""
        with self._lock:
            self._memory.clear()
            if self._db is not None:
                self._db.execute("DELETE FROM lm_cache")

    def close(self) -> None:
        """Close the SQLite connection."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
