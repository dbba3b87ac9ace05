"""Reading the configuration file and the ``ELIXIRML_*`` environment (layers 2 and 3 of :mod:`.settings`).

Imported on first use of the settings, so ``import elixirml`` pays for neither pydantic-settings
nor TOML parsing.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pydantic
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

from .errors import ConfigurationError
from .settings import _DEFAULTS, EXPECTS, SETTING_NAMES, Settings, scoped

__all__ = [
    "ENV_PREFIX",
    "PROFILE_ENV",
    "EnvSettings",
    "FileLayer",
    "SettingsModel",
    "build_base",
    "find_config_file",
    "read_file_layer",
]

ENV_PREFIX = "ELIXIRML_"
PROFILE_ENV = "ELIXIRML_PROFILE"

_FALSE_WORDS = frozenset({"false", "0", "no", "off"})
_TRUE_WORDS = frozenset({"true", "1", "yes", "on"})


class SettingsModel(pydantic.BaseModel):
    """The text form of the settings, as files and ``ELIXIRML_*`` variables write them.

    Validated by pydantic; the values then go through the same checks as ``em.configure``.
    """

    model_config = pydantic.ConfigDict(extra="forbid")

    lm: str | None = None
    adapter: str | None = None
    cache: bool | str = _DEFAULTS.cache
    store: str | None = None
    max_tokens: int = pydantic.Field(default=_DEFAULTS.max_tokens, ge=1)
    trace: bool = _DEFAULTS.trace
    history_size: int = pydantic.Field(default=_DEFAULTS.history_size, ge=0)
    track_usage: bool = _DEFAULTS.track_usage
    max_trace_size: int = pydantic.Field(default=_DEFAULTS.max_trace_size, ge=0)
    warn_on_type_mismatch: bool = _DEFAULTS.warn_on_type_mismatch
    strict_inputs: bool = _DEFAULTS.strict_inputs
    output_retries: int = pydantic.Field(default=_DEFAULTS.output_retries, ge=0)
    trace_content: bool = _DEFAULTS.trace_content

    @pydantic.field_validator("cache", mode="before")
    @classmethod
    def _cache_words(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in _FALSE_WORDS | _TRUE_WORDS:
            return value.strip().lower() in _TRUE_WORDS
        return value


class EnvSettings(BaseSettings, SettingsModel):
    """The same model read from ``ELIXIRML_<SETTING>`` variables by pydantic-settings."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", case_sensitive=False)


def _validate_layer(values: Mapping[str, Any], where: Callable[[str], str]) -> dict[str, Any]:
    """``values`` validated by :class:`FileSettings`; an error names the key, its origin and the rule."""
    try:
        model = SettingsModel.model_validate(dict(values))
    except pydantic.ValidationError as exc:
        error = exc.errors()[0]
        key = str(error["loc"][0]) if error["loc"] else "?"
        if error["type"] == "extra_forbidden":
            raise ConfigurationError(
                f"Unknown setting {key!r} in {where(key)}; known settings: {list(SETTING_NAMES)}"
            ) from None
        raise ConfigurationError(
            f"Setting {key!r} (from {where(key)}) expects {EXPECTS.get(key, 'a valid value')}, "
            f"got {error.get('input')!r}: {error['msg']}"
        ) from None
    return {key: getattr(model, key) for key in values}


@dataclasses.dataclass(frozen=True)
class FileLayer:
    """The configuration file read: its path, the profile chosen, its values and their origins."""

    path: Path | None = None
    profile: str = "default"
    values: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    origins: Mapping[str, str] = dataclasses.field(default_factory=dict)
    extensions: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)


def find_config_file(start: Path | None = None) -> tuple[Path, dict[str, Any]] | None:
    """The nearest ``elixirml.toml``, or ``pyproject.toml`` with a ``[tool.elixirml]`` table, and that table.

    Looks in ``start`` (default: the working directory) and then each parent directory; in one
    directory ``elixirml.toml`` wins over ``pyproject.toml``.

    Raises:
        ConfigurationError: a file found is not valid TOML.
    """
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        for filename in ("elixirml.toml", "pyproject.toml"):
            path = directory / filename
            if not path.is_file():
                continue
            try:
                document = tomllib.loads(path.read_text(encoding="utf-8"))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise ConfigurationError(f"Cannot read configuration file {path}: {exc}; fix its TOML syntax") from None
            if filename == "elixirml.toml":
                return path, document
            table = document.get("tool", {}).get("elixirml")
            if isinstance(table, dict):
                return path, table
    return None


def read_file_layer(profile: str | None) -> FileLayer:
    found = find_config_file()
    chosen = profile or "default"
    if found is None:
        if chosen != "default":
            raise ConfigurationError(
                f"Profile {chosen!r} was asked for ({PROFILE_ENV} or reload_config(profile=...)), but no "
                "elixirml.toml or pyproject.toml with [tool.elixirml] was found from the working directory up"
            )
        return FileLayer()
    path, table = found
    prefix = "[tool.elixirml" if path.name == "pyproject.toml" else "["
    profiles = table.get("profiles", {})
    if not isinstance(profiles, dict) or not all(isinstance(p, dict) for p in profiles.values()):
        raise ConfigurationError(f"In {path}, 'profiles' must be a table of tables ({prefix}.profiles.<name>])")
    base = {k: v for k, v in table.items() if k not in ("profiles", "extensions")}
    base_label = f"{path} {prefix}]" if prefix != "[" else str(path)

    def resolve(name: str, seen: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, str]]:
        if name in seen:
            raise ConfigurationError(f"Profiles in {path} inherit in a cycle: {' -> '.join((*seen, name))}")
        values: dict[str, Any] = {}
        origins: dict[str, str] = {}
        if name == "default":
            values.update(base)
            origins.update(dict.fromkeys(base, base_label))
            if "default" not in profiles:
                return values, origins
        elif name not in profiles:
            raise ConfigurationError(
                f"No profile {name!r} in {path}; profiles there: {['default', *sorted(profiles)]}. "
                f"Add {prefix}.profiles.{name}] or choose another with {PROFILE_ENV}"
            )
        own = dict(profiles[name])
        parent = own.pop("inherits", None)
        if parent is not None:
            if not isinstance(parent, str):
                raise ConfigurationError(
                    f"In {path}, profile {name!r}: inherits must be a profile name, got {parent!r}"
                )
            values, origins = resolve(parent, (*seen, name))
        values.update(own)
        origins.update(
            dict.fromkeys(own, f"{path} {prefix}.profiles.{name}]" if prefix != "[" else f"{path} [profiles.{name}]")
        )
        return values, origins

    values, origins = resolve(chosen, ())
    checked = _validate_layer(values, lambda key: origins.get(key, str(path)))
    extension_tables = table.get("extensions", {})
    if not isinstance(extension_tables, dict) or not all(isinstance(t, dict) for t in extension_tables.values()):
        raise ConfigurationError(f"In {path}, 'extensions' must be a table of tables ({prefix}.extensions.<name>])")
    return FileLayer(path, chosen, checked, origins, MappingProxyType(extension_tables))


def _read_env_layer() -> tuple[dict[str, Any], dict[str, str]]:
    raw = EnvSettingsSource(EnvSettings, case_sensitive=False, env_prefix=ENV_PREFIX)()
    origins = {key: f"env {ENV_PREFIX}{key.upper()}" for key in raw}
    return _validate_layer(raw, lambda key: origins.get(key, "the environment")), origins


def build_base(profile: str | None) -> tuple[Settings, FileLayer]:
    """Defaults < file (profile) < environment, validated and built (an LM name becomes an LM)."""
    chosen = profile if profile is not None else os.environ.get(PROFILE_ENV) or None
    file_layer = read_file_layer(chosen)
    env_values, env_origins = _read_env_layer()
    values = {**file_layer.values, **env_values}
    origins = {**file_layer.origins, **env_origins}
    plain = {k: v for k, v in values.items() if k != "lm"}
    settings = _checked(_DEFAULTS, plain, origins)
    if values.get("lm") is not None:
        # Building the LM reads the other settings (history_size), so they are in force first.
        with scoped(settings):
            settings = _checked(settings, {"lm": values["lm"]}, origins)
    return settings, file_layer


def _checked(settings: Settings, values: Mapping[str, Any], origins: Mapping[str, str]) -> Settings:
    try:
        return settings._with(values, origins)
    except ConfigurationError as exc:
        where = ", ".join(f"{key} from {origins[key]}" for key in values if key in origins)
        raise ConfigurationError(f"{exc} [{where}]") from None
