"""The LM cache: an in-memory LRU in front of a persistent SQLite file.

The key is a hash of the model, the messages and every setting that changes the answer
(temperature, max_tokens, n, response_format, tools, rollout_id, ...). API keys and base URLs
are never settings, so they never reach the key or the file. Only responses that the caller
validated are stored (see ``LM.arequest(validate=...)``). The file is in WAL mode with a busy
timeout, so several processes can share it.

Nothing read back is trusted: a file that is not a cache database is moved aside (one warning)
and a new one started; a row that does not parse, carries another format version, or was
written for another request key is a miss. Each row records the format version and the full
key it answers, so a row planted or copied under a key is ignored.
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
import warnings
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
#: Version of the row format; rows written in another format are misses.
FORMAT = 2
_COMPLETION_FIELDS = {"text": (str,), "tool_calls": (list, type(None)), "logprobs": (list, type(None))}
_COMPLETION_FIELDS["finish_reason"] = (str, type(None))


def _envelope(key: str, text: Any) -> dict[str, Any] | None:
    """A cache row's JSON object when it is in this cache's format and written for ``key``, else None."""
    if not isinstance(text, str):
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("key") != key:
        return None
    return data


def _decode(key: str, text: Any) -> LMResponse | None:
    """The response a cache row holds for ``key``, or None when the row is not a valid answer to it."""
    data = _envelope(key, text)
    if data is None:
        return None
    completions = data.get("completions")
    model = data.get("model", "")
    if not isinstance(completions, list) or not completions or not isinstance(model, str):
        return None
    built = []
    for item in completions:
        if not isinstance(item, dict) or set(item) != set(_COMPLETION_FIELDS):
            return None
        if not all(isinstance(item[name], kinds) for name, kinds in _COMPLETION_FIELDS.items()):
            return None
        built.append(Completion(**item))
    return LMResponse(completions=built, usage=Usage(cached_calls=1), model=model, cached=True)


def _decode_vector(key: str, text: Any) -> list[float] | None:
    """The embedding a cache row holds for ``key``, or None when the row is not a valid one."""
    data = _envelope(key, text)
    if data is None:
        return None
    vector = data.get("vector")
    if not isinstance(vector, list) or not vector:
        return None
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in vector):
        return None
    return [float(x) for x in vector]


def _encodable(text: str) -> bool:
    """Whether ``text`` can be written as UTF-8 (it holds no lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _busy(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


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
        self._db = None
        try:
            self._db = self._open(target)
        except sqlite3.DatabaseError as exc:
            if _busy(exc):
                raise
            self._move_aside(exc)
            self._db = self._open(target)

    @staticmethod
    def _open(target: Path) -> sqlite3.Connection:
        db = sqlite3.connect(target, timeout=30.0, check_same_thread=False, isolation_level=None)
        try:
            # Another process opening the file at the same moment can make these statements fail with
            # SQLITE_BUSY without waiting on the busy timeout; they are idempotent, so try again.
            for attempt in range(100):
                try:
                    db.execute("PRAGMA busy_timeout=30000")
                    db.execute("PRAGMA journal_mode=WAL")
                    db.execute("PRAGMA synchronous=NORMAL")
                    db.execute(_SCHEMA)
                    break
                except sqlite3.OperationalError as exc:
                    if not _busy(exc) or attempt == 99:
                        raise
                    time.sleep(0.05)
            columns = {row[1] for row in db.execute("PRAGMA table_info(lm_cache)")}
            if not {"key", "model", "response", "created_at"} <= columns:
                raise sqlite3.DatabaseError(f"table lm_cache has columns {sorted(columns)}, not a cache's")
        except BaseException:
            db.close()
            raise
        return db

    def _move_aside(self, exc: BaseException) -> None:
        """Rename a damaged cache file (and its WAL files) out of the way, with one warning."""
        assert self.path is not None
        if self._db is not None:
            self._db.close()
            self._db = None
        aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}-{os.getpid()}")
        for suffix in ("", "-wal", "-shm"):
            source = Path(str(self.path) + suffix)
            if source.exists():
                source.replace(Path(str(aside) + suffix))
        warnings.warn(
            f"The LM cache {self.path} is damaged ({exc}); moved it to {aside} and started an empty cache.",
            RuntimeWarning,
            stacklevel=4,
        )

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
        # surrogatepass: a lone surrogate (which JSON escapes can carry) has a key too; other text is plain UTF-8
        return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()

    def get(self, key: str) -> LMResponse | None:
        """The cached response for ``key`` (marked ``cached``, zero usage), or None.

        A row that is damaged, in another format, or written for another key is a miss.
        """
        with self._lock:
            text = self._memory.get(key)
            if text is not None:
                self._memory.move_to_end(key)
            elif self._db is not None:
                row = self._query("SELECT response FROM lm_cache WHERE key = ?", (key,))
                text = row[0] if row is not None else None
            response = _decode(key, text) if text is not None else None
            if text is None or response is None:
                self._memory.pop(key, None)
                self.misses += 1
                return None
            self._remember(key, text)
            self.hits += 1
        return response

    def put(self, key: str, response: LMResponse) -> None:
        """Store a (validated) response, bound to ``key`` and tagged with the row format."""
        row = {
            "format": FORMAT,
            "key": key,
            "model": response.model,
            "completions": [dataclasses.asdict(c) for c in response.completions],
        }
        text = json.dumps(row, ensure_ascii=False, default=repr)
        if not _encodable(text):  # a lone surrogate in the answer: stored as a JSON escape, read back as it was
            text = json.dumps(row, default=repr)
        with self._lock:
            self._remember(key, text)
            self._query(
                "INSERT OR REPLACE INTO lm_cache (key, model, response, created_at) VALUES (?, ?, ?, ?)",
                (key, response.model, text, time.time()),
            )

    def get_vector(self, key: str) -> list[float] | None:
        """The cached embedding for ``key`` (see :meth:`put_vector`), or None.

        Embeddings share the table with LM responses; a row is a vector only when it says so,
        carries this format version and answers ``key``.
        """
        with self._lock:
            text = self._memory.get(key)
            if text is None and self._db is not None:
                row = self._query("SELECT response FROM lm_cache WHERE key = ?", (key,))
                text = row[0] if row is not None else None
            vector = _decode_vector(key, text)
            if vector is None:
                self._memory.pop(key, None)
                self.misses += 1
                return None
            assert text is not None
            self._remember(key, text)
            self.hits += 1
        return vector

    def put_vector(self, key: str, model: str, vector: list[float]) -> None:
        """Store one embedding under ``key`` (a key built with :meth:`key`, like an LM request's)."""
        text = json.dumps({"format": FORMAT, "key": key, "model": model, "vector": vector})
        with self._lock:
            self._remember(key, text)
            self._query(
                "INSERT OR REPLACE INTO lm_cache (key, model, response, created_at) VALUES (?, ?, ?, ?)",
                (key, model, text, time.time()),
            )

    def _query(self, sql: str, parameters: tuple[Any, ...]) -> Any:
        """Run one statement on the file; a damaged file is moved aside and the statement is a miss."""
        if self._db is None:
            return None
        try:
            return self._db.execute(sql, parameters).fetchone()
        except sqlite3.DatabaseError as exc:
            if _busy(exc):
                return None  # still busy after the 30 s timeout: a miss, not a crash
            self._move_aside(exc)
            assert self.path is not None
            try:
                self._db = self._open(self.path)
            except sqlite3.DatabaseError:
                self._db = None  # cannot start a new file here: keep only the in-memory level
            return None

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
            row = self._query("SELECT COUNT(*) FROM lm_cache", ())
            return int(row[0]) if row is not None else 0

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
