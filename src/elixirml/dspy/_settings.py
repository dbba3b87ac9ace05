"""``dspy.settings``, ``dspy.configure`` and ``dspy.context`` over ElixirML's settings.

ElixirML's own settings (``lm``, ``adapter``, ``callbacks``, ``track_usage``, ...) are set and
read through :mod:`elixirml.settings`, so ``em.configure`` and ``dspy.configure`` see each other.
DSPy's other keys (``trace`` as a list, ``experimental``, any name a program adds) live in an
overlay of the same shape: a process default plus ``contextvars`` scopes. DSPy's thread rule is
kept: only the thread (and async task) that first called ``configure`` may call it again;
others use ``context``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .. import settings as _em_settings
from ..errors import ConfigurationError

__all__ = ["DEFAULT_CONFIG", "Settings", "configure", "context", "load_settings", "reset_for_tests", "settings"]

#: DSPy's defaults for the keys ElixirML has no setting of its own for.
DEFAULT_CONFIG: dict[str, Any] = {
    "trace": [],
    "bypass_assert": False,
    "bypass_suggest": False,
    "backoff_time": 10,
    "async_max_workers": 8,
    "send_stream": None,
    "disable_history": False,
    "stream_listeners": [],
    "provide_traceback": False,
    "num_threads": 8,
    "max_errors": 10,
    "allow_tool_async_sync_conversion": False,
    "caller_predict": None,
    "caller_modules": None,
    "usage_tracker": None,
    "experimental": False,
}
# DSPy keys whose ElixirML setting of the same name means something else (``trace`` is a list in DSPy).
_DSPY_ONLY = frozenset({"trace"})
_SHARED = frozenset(_em_settings.SETTING_NAMES) - _DSPY_ONLY

_overlay: dict[str, Any] = {}
_scoped: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("elixirml_dspy_settings", default=None)
_owner: list[Any] = []  # [thread, task] of the first configure call
_lock = threading.Lock()


def _split(changes: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(ElixirML settings, DSPy-only keys) of ``changes``; a DSPy callback list ElixirML refuses stays DSPy's."""
    shared: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for name, value in changes.items():
        if name == "max_history_size" or (name == "disable_history" and value):
            # DSPy's bound of the LMs' and modules' histories is ElixirML's history_size (0: none kept)
            shared["history_size"] = 0 if name == "disable_history" else value
            extra[name] = value
            continue
        if name in _SHARED:
            if name == "callbacks":
                value = list(value or [])
                try:
                    _em_settings.current()._with({"callbacks": value}, "check")
                except ConfigurationError:
                    extra[name] = value
                    shared[name] = ()
                    continue
            if name == "adapter" and value is None:
                shared[name] = None
                continue
            shared[name] = value
        else:
            extra[name] = value
    return shared, extra


def _check_owner() -> None:
    thread = threading.current_thread()
    try:
        task = asyncio.current_task()
    except RuntimeError:
        task = None
    with _lock:
        if not _owner:
            _owner[:] = [thread, task]
            return
        if _owner[0] is not thread:
            raise RuntimeError(
                "dspy.settings can only be changed by the thread that initially configured it. "
                "Use dspy.context(...) in other threads."
            )
        if task is not None and _owner[1] is not None and task is not _owner[1]:
            raise RuntimeError(
                "dspy.configure(...) can only be called from the same async task that called it first. "
                "Use dspy.context(...) in other async tasks."
            )
        if _owner[1] is None and task is not None:
            _owner[1] = task


def configure(**changes: Any) -> None:
    """DSPy's ``dspy.configure``: change the process defaults (only from the thread that first did).

    Raises:
        RuntimeError: called from another thread or async task than the first ``configure``.
        ConfigurationError: a value an ElixirML setting does not accept.
    """
    changes.pop("inherit_config", None)
    _check_owner()
    shared, extra = _split(changes)
    for name in ("callbacks",):
        if name in shared and name not in extra:
            _overlay.pop(name, None)
    if shared:
        _em_settings.configure(**shared)
    _overlay.update(extra)


@contextlib.contextmanager
def context(**changes: Any) -> Iterator[None]:
    """DSPy's ``dspy.context``: override settings inside a block, for this thread or task only."""
    shared, extra = _split(changes)
    outer = _scoped.get()
    scope = dict(outer if outer is not None else {})
    if "callbacks" in shared and "callbacks" not in extra:
        scope["callbacks"] = None  # an ElixirML callback list hides a DSPy-only one from outside
    scope.update(extra)
    token = _scoped.set(scope)
    try:
        if shared:
            with _em_settings.context(**shared):
                yield
        else:
            yield
    finally:
        _scoped.reset(token)


def _get(name: str) -> Any:
    scope = _scoped.get()
    if scope is not None and name in scope and scope[name] is not None:
        return scope[name]
    if name in _SHARED:
        value = getattr(_em_settings.current(), name)
        if name == "callbacks":
            if value:
                return list(value)
            dspy_value = scope.get("callbacks", _overlay.get("callbacks")) if scope else _overlay.get("callbacks")
            return list(dspy_value or [])
        return value
    if name in _overlay:
        return _overlay[name]
    if name in DEFAULT_CONFIG:
        value = DEFAULT_CONFIG[name]
        return list(value) if isinstance(value, list) else value
    raise AttributeError(f"dspy.settings has no setting {name!r}")


class Settings:
    """DSPy's ``dspy.settings``: attribute and item reads of the settings in force here."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _get(name)

    def __getitem__(self, name: str) -> Any:
        try:
            return _get(name)
        except AttributeError:
            raise KeyError(name) from None

    def get(self, name: str, default: Any = None) -> Any:
        """The setting ``name``, or ``default`` when it has none."""
        try:
            value = _get(name)
        except AttributeError:
            return default
        return default if value is None else value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in _SHARED or name in _overlay or name in DEFAULT_CONFIG)

    def configure(self, **changes: Any) -> None:
        """Same as :func:`configure`."""
        configure(**changes)

    def context(self, **changes: Any) -> contextlib.AbstractContextManager[None]:
        """Same as :func:`context`."""
        return context(**changes)

    @property
    def config(self) -> dict[str, Any]:
        """Every setting in force here, by name."""
        names = set(_SHARED) | set(DEFAULT_CONFIG) | set(_overlay)
        return {name: _get(name) for name in sorted(names)}

    def copy(self) -> dict[str, Any]:
        """A copy of :attr:`config`."""
        return dict(self.config)

    def save(
        self,
        path: str | os.PathLike[str],
        modules_to_serialize: list[Any] | None = None,
        exclude_keys: list[str] | None = None,
    ) -> None:
        """Write the settings as JSON (never a pickle): the LM's model and defaults, the adapter's name, flags.

        Raises:
            ConfigurationError: a setting that is not data (a callback, a function, a retriever):
                set it again in code after :func:`load_settings`, or leave it out with ``exclude_keys``.
        """
        del modules_to_serialize  # nothing is pickled, so there is no code to ship
        from .adapters import adapter_name

        document: dict[str, Any] = {}
        exclude = set(exclude_keys or ())
        for name in ("lm", "adapter", "track_usage", "max_trace_size", "warn_on_type_mismatch", "callbacks"):
            if name in exclude:
                continue
            value = _get(name)
            if name == "lm":
                document[name] = None if value is None else value.dump_state()
            elif name == "adapter":
                document[name] = None if value is None else adapter_name(value)
            elif name == "callbacks":
                if value:
                    raise ConfigurationError(
                        "dspy.settings.save writes JSON, never a pickle, so it cannot save callbacks (code). "
                        "Pass exclude_keys=['callbacks'] and configure them again in code after load_settings."
                    )
            else:
                document[name] = value
        Path(path).write_text(json.dumps({"elixirml_dspy_settings": 1, "settings": document}, indent=1))

    def __repr__(self) -> str:
        return f"dspy.settings({self.config!r})"


settings = Settings()


def load_settings(path: str | os.PathLike[str], allow_pickle: bool = False) -> dict[str, Any]:
    """Read settings written by ``dspy.settings.save``, to pass to :func:`configure`.

    The LM is built again from its model name and defaults (``allow_pickle`` is accepted and
    changes nothing: nothing is unpickled).

    Raises:
        LoadError: the file is not one ``settings.save`` wrote here (DSPy's pickles are never read).
    """
    del allow_pickle
    from ..errors import LoadError
    from ..lm import PROVIDER_SETTINGS
    from .adapters import adapter_from_name
    from .clients import LM

    try:
        document = json.loads(Path(path).read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LoadError(
            f"{path} is not a settings file written by elixirml.dspy (JSON); DSPy's pickled settings are "
            "never loaded: configure the settings in code."
        ) from exc
    if not isinstance(document, dict) or "elixirml_dspy_settings" not in document:
        raise LoadError(f"{path} is not a settings file written by elixirml.dspy's settings.save")
    values = dict(document["settings"])
    if values.get("lm") is not None:
        state = values["lm"]
        if "defaults" in state:  # written before the LM state took DSPy's layout
            values["lm"] = LM(state["model"], **state["defaults"])
        else:  # only the model and request settings: never an endpoint, a key or a class
            kept = {k: v for k, v in state.items() if k in PROVIDER_SETTINGS or k in ("model_type", "num_retries")}
            values["lm"] = LM(state["model"], **kept)
    if values.get("adapter") is not None:
        values["adapter"] = adapter_from_name(values["adapter"])
    return values


def reset_for_tests() -> None:
    """Forget DSPy-only settings, the thread owner and the global history (a test's fresh start)."""
    _overlay.clear()
    _owner.clear()
    _scoped.set(None)
    from .clients.base_lm import GLOBAL_HISTORY

    GLOBAL_HISTORY.clear()
