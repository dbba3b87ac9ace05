"""Settings: the process default and scoped overrides, built on ``contextvars``.

``em.configure(lm=...)`` sets the process default. ``with em.context(lm=...):`` overrides
settings for the code inside the block only: concurrent asyncio tasks and threads each see
their own scope, because the scope lives in a :class:`contextvars.ContextVar`. The process
default is one immutable :class:`Settings` value replaced whole under a lock; nothing else
at module level is mutable.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import os
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any

from .errors import ConfigurationError

__all__ = ["Settings", "configure", "context", "current"]


@dataclasses.dataclass(frozen=True)
class Settings:
    """Effective settings (immutable; use :func:`configure` / :func:`context` to change).

    Attributes:
        lm: the default LM used by predictors that have none of their own.
        adapter: the default adapter; ``None`` lets each LM choose its preferred one.
        cache: ``True`` (default location), ``False`` (off), a path, or a cache object.
        store: the store URL or object used by optimizers and evaluation (store issue).
        max_tokens: default cap on generated tokens when neither the LM nor the call sets one.
        trace: whether predictor calls are recorded in the current trace.
        history_size: how many recent calls each LM keeps in ``lm.history``.
    """

    lm: Any = None
    adapter: Any = None
    cache: Any = True
    store: Any = None
    max_tokens: int = 512
    trace: bool = True
    history_size: int = 100

    def replace(self, **changes: Any) -> Settings:
        """A copy with some settings replaced.

        Raises:
            ConfigurationError: an unknown name, or a value of the wrong type for its setting
                (named with the type it expects).
        """
        allowed = {f.name for f in dataclasses.fields(self)}
        unknown = set(changes) - allowed
        if unknown:
            raise ConfigurationError(f"Unknown setting(s) {sorted(unknown)}; known settings: {sorted(allowed)}")
        checked = {name: _CHECKS[name](name, value) if name in _CHECKS else value for name, value in changes.items()}
        return dataclasses.replace(self, **checked)


def _refuse(name: str, value: Any, expected: str) -> ConfigurationError:
    return ConfigurationError(f"Setting {name!r} expects {expected}, got {value!r} ({type(value).__name__})")


def _check_int(low: int) -> Callable[[str, Any], int]:
    def check(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise _refuse(name, value, f"an int >= {low}")
        return value

    return check


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _refuse(name, value, "True or False")
    return value


def _check_lm(name: str, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, str):
        # A model name is built into its client, as em.LM(name) would. The LM layer sits above
        # this one, so it registers its constructor here (see register_lm_factory).
        if _LM_FACTORY is None:
            raise _refuse(name, value, "an em.LM (the LM layer is not loaded to build one from a name)")
        return _LM_FACTORY(value)
    if not callable(getattr(value, "arequest", None)):
        raise _refuse(name, value, "an em.LM (or a model name such as 'openai/<model>'), or None")
    return value


def _check_cache(name: str, value: Any) -> Any:
    if isinstance(value, (bool, str, os.PathLike)) or callable(getattr(value, "get", None)):
        return value
    raise _refuse(name, value, "True, False, a path, or an em.lm.Cache")


def _check_store(name: str, value: Any) -> Any:
    if value is None or callable(getattr(value, "add_version", None)) or hasattr(value, "drivername"):
        return value
    if isinstance(value, str) and re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*://", value):
        return value
    raise _refuse(name, value, "a database URL such as 'sqlite:///store.db' or 'postgresql://host/db', or an em.Store")


_LM_FACTORY: Callable[[str], Any] | None = None


def register_lm_factory(factory: Callable[[str], Any]) -> None:
    """Let ``configure(lm="provider/model")`` build the LM (called by the LM layer when it loads)."""
    global _LM_FACTORY
    _LM_FACTORY = factory


_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "lm": _check_lm,
    "cache": _check_cache,
    "store": _check_store,
    "max_tokens": _check_int(1),
    "trace": _check_bool,
    "history_size": _check_int(0),
}


class _Default:
    """Holder of the process-wide default settings, replaced atomically."""

    def __init__(self) -> None:
        self.value = Settings()
        self.lock = threading.Lock()


_DEFAULT = _Default()
_SCOPED: contextvars.ContextVar[Settings | None] = contextvars.ContextVar("elixirml_settings", default=None)


def current() -> Settings:
    """The settings in force here: the innermost ``context`` scope, else the process default."""
    scoped = _SCOPED.get()
    return scoped if scoped is not None else _DEFAULT.value


def configure(**changes: Any) -> Settings:
    """Change the process-wide default settings (``lm``, ``adapter``, ``cache``, ...).

    Returns the new default. Scopes opened with :func:`context` keep their own values.
    """
    with _DEFAULT.lock:
        _DEFAULT.value = _DEFAULT.value.replace(**changes)
        return _DEFAULT.value


@contextlib.contextmanager
def context(**changes: Any) -> Iterator[Settings]:
    """Override settings inside a ``with`` block, for this task/thread only."""
    token = _SCOPED.set(current().replace(**changes))
    try:
        yield current()
    finally:
        _SCOPED.reset(token)
