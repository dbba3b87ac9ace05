"""Settings: one validated model, filled from layers, with scoped overrides on ``contextvars``.

The layers, lowest first (a higher one wins, setting by setting):

1. the defaults (the field defaults of :class:`Settings`);
2. the configuration file: ``elixirml.toml``, or the ``[tool.elixirml]`` table of a
   ``pyproject.toml``, whichever is nearest walking up from the working directory; a named
   profile of it (``[tool.elixirml.profiles.prod]``, ``inherits = "default"``) is chosen by
   ``ELIXIRML_PROFILE``;
3. the environment: ``ELIXIRML_<SETTING>`` (``ELIXIRML_LM=openai/gpt-4o-mini``, ``ELIXIRML_MAX_TOKENS=256``);
4. ``em.configure(...)``: the process default set from code;
5. ``with em.context(...):``: overrides for the code inside the block, this task/thread only.

Files and environment are read on first use (never at import) and again by :func:`reload_config`.
Every value is validated when it is set, whatever the layer, and a bad one raises
:class:`~elixirml.errors.ConfigurationError` naming the setting, where it came from and what
it expects. The process default is one immutable :class:`Settings` value replaced whole under a
lock; scoped values live in a :class:`contextvars.ContextVar`, so concurrent tasks and threads
each see their own.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Any

from ._secrets import REDACTED, is_credential_name, redact_url
from .errors import ConfigurationError

__all__ = ["Settings", "configure", "context", "current", "describe", "reload_config"]

DEFAULT_LAYER = "default"
_NO_LAYERS: Mapping[str, str] = MappingProxyType({})


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
        history_size: how many recent calls each LM keeps in ``lm.history`` (read when the LM
            is built) and each predictor in ``predict.history`` (read at each call).
        track_usage: attach each module call's token usage, by model, to the Prediction it
            returns (read it with ``prediction.get_lm_usage()``), as DSPy's setting does.
        max_trace_size: the most predictor calls one open trace keeps (the oldest are dropped).
        warn_on_type_mismatch: report an input whose value does not have its field's type: a
            ``Type mismatch for field ...`` line on the ``elixirml.program`` logger (DSPy's
            setting and message), and a ``UserWarning`` when the value is formatted as text.
        strict_inputs: raise ``ValidationError`` for such an input instead of warning.
        output_retries: how many times a predictor re-asks the LM, with the error as feedback,
            when its answer fails the signature's schema (a value out of range, a missing field)
            before raising; each re-ask is an LM call, counted in usage and call budgets.
        callbacks: :class:`~elixirml.callbacks.Callback` objects told about every module, LM,
            adapter, tool, evaluation and optimizer trial (code only: not from files or the environment).
        trace_content: whether OpenTelemetry spans carry prompt and answer text (off: only sizes,
            models, token counts and timings).
        rm: the default retriever of ``em.Retrieve`` modules that have none of their own
            (DSPy's ``rm``; code only: not from files or the environment).
        layers: where each setting that is not a default came from (``"env ELIXIRML_LM"``,
            ``"configure()"``, ...); not a setting itself.
    """

    lm: Any = None
    adapter: Any = None
    cache: Any = True
    store: Any = None
    max_tokens: int = 512
    trace: bool = True
    history_size: int = 100
    track_usage: bool = False
    max_trace_size: int = 10_000
    warn_on_type_mismatch: bool = True
    strict_inputs: bool = False
    output_retries: int = 2
    callbacks: tuple[Any, ...] = ()
    trace_content: bool = False
    rm: Any = None
    layers: Mapping[str, str] = dataclasses.field(default_factory=lambda: _NO_LAYERS, repr=False, compare=False)

    def replace(self, **changes: Any) -> Settings:
        """A copy with some settings replaced.

        Raises:
            ConfigurationError: an unknown name, or a value of the wrong type for its setting
                (named with the type it expects).
        """
        return self._with(changes, "replace()")

    def _with(self, changes: Mapping[str, Any], layer: str | Mapping[str, str]) -> Settings:
        """A copy with ``changes`` checked and applied, each recorded as coming from ``layer``."""
        unknown = set(changes) - set(SETTING_NAMES)
        if unknown:
            raise ConfigurationError(f"Unknown setting(s) {sorted(unknown)}; known settings: {list(SETTING_NAMES)}")
        checked = {name: _CHECKS[name](name, value) for name, value in changes.items()}
        layers = dict(self.layers)
        for name in changes:
            layers[name] = layer if isinstance(layer, str) else layer[name]
        return dataclasses.replace(self, **checked, layers=MappingProxyType(layers))

    def layer_of(self, name: str) -> str:
        """Where the setting ``name`` came from (``"default"`` when no layer set it)."""
        return self.layers.get(name, DEFAULT_LAYER)


#: The names of the settings, in the order they are shown.
SETTING_NAMES = tuple(f.name for f in dataclasses.fields(Settings) if f.name != "layers")
_DEFAULTS = Settings()

# What each setting accepts, as said in error messages.
EXPECTS = {
    "lm": "an em.LM, a model name such as 'openai/<model>' or 'local', or None",
    "adapter": "an em.Adapter (instance or class), an adapter name such as 'chat', 'json' or 'plain', or None",
    "cache": "True, False, a path, or an em.lm.Cache",
    "store": "a database URL such as 'sqlite:///store.db' or 'postgresql://host/db', or an em.Store",
    "max_tokens": "an int >= 1",
    "trace": "True or False",
    "history_size": "an int >= 0",
    "track_usage": "True or False",
    "max_trace_size": "an int >= 0",
    "warn_on_type_mismatch": "True or False",
    "strict_inputs": "True or False",
    "output_retries": "an int >= 0",
    "callbacks": "a list of em.callbacks.Callback objects (or objects with their on_* methods)",
    "trace_content": "True or False",
    "rm": "a retriever (an object with search(query, k) and asearch(query, k), such as em.retrievers.BM25) or None",
}


def _refuse(name: str, value: Any, expected: str) -> ConfigurationError:
    return ConfigurationError(f"Setting {name!r} expects {expected}, got {value!r} ({type(value).__name__})")


def _check_int(low: int) -> Callable[[str, Any], int]:
    def check(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise _refuse(name, value, EXPECTS[name])
        return value

    return check


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _refuse(name, value, EXPECTS[name])
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
        raise _refuse(name, value, EXPECTS[name])
    return value


def _check_adapter(name: str, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, str):
        from . import extensions  # the same layer; read lazily, like the registry itself

        known = extensions.names("adapters")
        if value not in known:
            raise ConfigurationError(f"Setting {name!r}: unknown adapter name {value!r}; installed adapters: {known}")
        return value
    if callable(getattr(value, "format", None)) and callable(getattr(value, "parse", None)):
        return value
    raise _refuse(name, value, EXPECTS[name])


def _check_cache(name: str, value: Any) -> Any:
    if isinstance(value, (bool, str, os.PathLike)) or callable(getattr(value, "get", None)):
        return value
    raise _refuse(name, value, EXPECTS[name])


def _check_store(name: str, value: Any) -> Any:
    if value is None or callable(getattr(value, "add_version", None)) or hasattr(value, "drivername"):
        return value
    if isinstance(value, str) and re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*://", value):
        return value
    raise _refuse(name, value, EXPECTS[name])


#: True once any callback has been configured in this process: until then the hooks on the hot
#: path skip even reading the settings. Only ever set, never cleared (it only saves work).
callbacks_configured = False


def _check_callbacks(name: str, value: Any) -> tuple[Any, ...]:
    global callbacks_configured
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (list, tuple)):
        raise _refuse(name, value, EXPECTS[name])
    for item in value:
        if not (callable(getattr(item, "on_module_start", None)) and callable(getattr(item, "on_module_end", None))):
            raise ConfigurationError(
                f"Setting {name!r}: {item!r} ({type(item).__name__}) is not a callback; expected {EXPECTS[name]}"
            )
    if value:
        callbacks_configured = True
    return tuple(value)


def _check_retriever(name: str, value: Any) -> Any:
    if value is None or (callable(getattr(value, "search", None)) and callable(getattr(value, "asearch", None))):
        return value
    raise _refuse(name, value, EXPECTS[name])


_LM_FACTORY: Callable[[str], Any] | None = None


def register_lm_factory(factory: Callable[[str], Any]) -> None:
    """Let ``configure(lm="provider/model")`` build the LM (called by the LM layer when it loads)."""
    global _LM_FACTORY
    _LM_FACTORY = factory


_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "lm": _check_lm,
    "adapter": _check_adapter,
    "cache": _check_cache,
    "store": _check_store,
    "max_tokens": _check_int(1),
    "trace": _check_bool,
    "history_size": _check_int(0),
    "track_usage": _check_bool,
    "max_trace_size": _check_int(0),
    "warn_on_type_mismatch": _check_bool,
    "strict_inputs": _check_bool,
    "output_retries": _check_int(0),
    "callbacks": _check_callbacks,
    "trace_content": _check_bool,
    "rm": _check_retriever,
}


# ---------------------------------------------------------------------- the process default and scopes
class _Default:
    """Holder of the process-wide default settings, replaced atomically; built on first use."""

    def __init__(self) -> None:
        self._value: Settings | None = None
        self.file: Any = None  # the _config.FileLayer in use, once read
        self.lock = threading.RLock()

    @property
    def value(self) -> Settings:
        value = self._value
        if value is None:
            with self.lock:
                if self._value is None:
                    self.load(None, keep={})
                value = self._value
                assert value is not None
        return value

    @value.setter
    def value(self, value: Settings) -> None:
        self._value = value

    def load(self, profile: str | None, keep: Mapping[str, Any]) -> Settings:
        from ._config import build_base  # pydantic-settings and TOML only when files are read

        base, file_layer = build_base(profile)
        value = base._with(keep, "configure()") if keep else base
        self._value, self.file = value, file_layer
        return value


_DEFAULT = _Default()
_SCOPED: contextvars.ContextVar[Settings | None] = contextvars.ContextVar("elixirml_settings", default=None)


@contextlib.contextmanager
def scoped(settings: Settings) -> Iterator[Settings]:
    """Make ``settings`` the ones in force inside the block (for this task/thread)."""
    token = _SCOPED.set(settings)
    try:
        yield settings
    finally:
        _SCOPED.reset(token)


def current() -> Settings:
    """The settings in force here: the innermost ``context`` scope, else the process default."""
    scoped = _SCOPED.get()
    if scoped is not None:
        return scoped
    value = _DEFAULT._value  # read directly: this runs several times on every call (the property only once)
    return value if value is not None else _DEFAULT.value


def configure(**changes: Any) -> Settings:
    """Change the process-wide default settings (``lm``, ``adapter``, ``cache``, ...).

    Each value is checked now; ``lm="openai/<model>"`` is built as ``em.LM("openai/<model>")``.
    Returns the new default. Scopes opened with :func:`context` keep their own values.

    Raises:
        ConfigurationError: an unknown setting, or a value its setting does not accept.
    """
    with _DEFAULT.lock:
        _DEFAULT.value = _DEFAULT.value._with(changes, "configure()")
        return _DEFAULT.value


@contextlib.contextmanager
def context(**changes: Any) -> Iterator[Settings]:
    """Override settings inside a ``with`` block, for this task/thread only."""
    with scoped(current()._with(changes, "context()")) as settings:
        yield settings


def reload_config(profile: str | None = None) -> Settings:
    """Read the configuration file and the ``ELIXIRML_*`` environment again.

    Values set with :func:`configure` stay on top; scopes opened with :func:`context` are not
    changed. A file or variable with a bad value raises, and the settings stay as they were.

    Args:
        profile: the profile to use; default ``$ELIXIRML_PROFILE``, else ``"default"``.

    Returns:
        The new process default.

    Raises:
        ConfigurationError: a bad file, profile or value (the message says which and where).
    """
    with _DEFAULT.lock:
        old = _DEFAULT.value
        keep = {name: getattr(old, name) for name in SETTING_NAMES if old.layer_of(name) == "configure()"}
        return _DEFAULT.load(profile, keep)


def extension_config(name: str) -> dict[str, Any]:
    """The ``[tool.elixirml.extensions.<name>]`` table of the configuration file (empty if none)."""
    file_layer = _DEFAULT.file
    if file_layer is None:
        # Only the file: building the settings may load extensions, which ask for their tables here.
        from ._config import PROFILE_ENV, read_file_layer

        file_layer = read_file_layer(os.environ.get(PROFILE_ENV) or None)
    return dict(file_layer.extensions.get(name, {}))


def _mask(key: str, value: Any) -> str:
    if isinstance(value, str):
        return REDACTED if is_credential_name(key) else redact_url(value)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}={_mask(str(k), v)}" for k, v in value.items()) + "}"
    return REDACTED if is_credential_name(key) else redact_url(repr(value))


def describe() -> list[tuple[str, str, str]]:
    """Each effective setting as ``(name, value, layer)``, secrets masked (``elixirml config show``).

    Extension tables from the file appear as ``extensions.<name>``; their credential-named keys
    (``api_key``, ``token``, ...) and passwords in URLs are shown as ``***``.
    """
    settings = current()
    rows = [(name, _mask(name, getattr(settings, name)), settings.layer_of(name)) for name in SETTING_NAMES]
    file_layer = _DEFAULT.file
    for name, table in sorted(file_layer.extensions.items() if file_layer is not None else ()):
        rows.append((f"extensions.{name}", _mask(name, table), str(file_layer.path)))
    return rows


def config_file() -> tuple[str | None, str]:
    """The configuration file in use (``None`` when there is none) and the profile chosen."""
    _DEFAULT.value  # noqa: B018 - reads the file on first use
    if _DEFAULT.file is None or _DEFAULT.file.path is None:
        return None, _DEFAULT.file.profile if _DEFAULT.file is not None else "default"
    return str(_DEFAULT.file.path), _DEFAULT.file.profile
