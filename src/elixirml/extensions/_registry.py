"""The registry of extensions: entry points per kind, built-ins included, loaded on first use.

Each kind has an entry-point group, ``elixirml.<kind>``. An entry point names an *extension*:
an object with ``name``, ``version`` and ``capabilities()``, optionally ``initialize(config)``,
and what it provides (its ``provides`` attribute, or the object itself when it has none). The
built-in LM providers, adapters, metrics and optimizers are entry points too (listed in
:mod:`._builtins`), so they are found, loaded and checked by the same code as a third party's.

Nothing is read at import: the installed entry points are read on the first call that needs
them, and an extension's module is imported only when that extension is asked for (or listed).
An extension that cannot be loaded (import error, bad metadata, an ``elixirml`` version it does
not support) is recorded with the reason and skipped; it never breaks anything else.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .._version import __version__
from ..errors import ConfigurationError

if TYPE_CHECKING:
    import importlib.metadata

__all__ = ["KINDS", "Extension", "ExtensionInfo", "Registry"]

#: Kinds of extension; each kind ``k`` has the entry-point group ``elixirml.k``.
KINDS = ("lms", "adapters", "optimizers", "metrics", "tools", "retrievers")
GROUP_PREFIX = "elixirml."

_log = logging.getLogger("elixirml.extensions")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]*$")


class Extension:
    """A ready-made extension object: declares its metadata and what it provides.

    Put one in your package and point an entry point at it::

        acme = Extension("acme", "1.0.0", provides=AcmeLM, capabilities=["chat"])

    Args:
        name: the name users select it by (for an LM provider, the ``<provider>`` of
            ``em.LM("<provider>/<model>")``); it must equal the entry point's name.
        version: the extension's version.
        provides: the object it contributes (an LM subclass, an adapter class, a metric, an
            optimizer class, a tool, a retriever), or ``"module:attribute"`` to import it only
            when it is first used.
        capabilities: what it can do, as short strings (``"chat"``, ``"json_schema"``, ...).
        requires: the ``elixirml`` versions it works with, as a specifier (``">=0.1,<1"``).
        initialize: called once, when the extension is first loaded, with its configuration
            (the ``[tool.elixirml.extensions.<name>]`` table; empty when there is none).
        description: one line for ``elixirml extensions``.
    """

    def __init__(
        self,
        name: str,
        version: str,
        provides: Any,
        *,
        capabilities: Iterable[str] = (),
        requires: str | None = None,
        initialize: Callable[[Mapping[str, Any]], None] | None = None,
        description: str = "",
    ) -> None:
        self.name = name
        self.version = version
        self.provides = provides
        self.requires = requires
        self.description = description
        self._capabilities = list(capabilities)
        self._initialize = initialize

    def capabilities(self) -> list[str]:
        """What this extension can do."""
        return list(self._capabilities)

    def initialize(self, config: Mapping[str, Any]) -> None:
        """Prepare the extension with its configuration (called once, on first load)."""
        if self._initialize is not None:
            self._initialize(config)

    def __repr__(self) -> str:
        return f"Extension({self.name!r}, {self.version!r})"


@dataclasses.dataclass(frozen=True)
class ExtensionInfo:
    """What the registry knows about one extension (as shown by ``elixirml extensions``).

    Attributes:
        kind: one of :data:`KINDS`.
        name: the name it is selected by.
        version: its declared version (empty when it could not be loaded).
        capabilities: its declared capabilities.
        origin: ``"built-in"``, ``"register()"``, or the distribution that installed it.
        error: why it was skipped, or ``None`` when it loaded.
    """

    kind: str
    name: str
    version: str = ""
    capabilities: tuple[str, ...] = ()
    origin: str = ""
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the extension loaded and can be used."""
        return self.error is None


@dataclasses.dataclass
class _Entry:
    kind: str
    name: str
    origin: str
    entry_point: importlib.metadata.EntryPoint | None = None
    requirement: str | None = None  # the distribution's own requirement on elixirml, if any
    extension: Any = None
    provided: Any = None
    loaded: bool = False
    loading: bool = False
    error: str | None = None


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ConfigurationError(f"Unknown extension kind {kind!r}; kinds are {list(KINDS)}")


def _import_target(reference: str) -> Any:
    module_name, sep, attribute = reference.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"{reference!r} is not of the form 'module:attribute'")
    target: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        target = getattr(target, part)
    return target


def _incompatibility(requirement: str, owner: str) -> str | None:
    """Why ``requirement`` (a specifier or a requirement on elixirml) excludes this version, or None."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    try:
        spec = Requirement(requirement).specifier if requirement.lstrip()[:1].isalpha() else SpecifierSet(requirement)
    except (InvalidRequirement, InvalidSpecifier) as exc:
        return f"{owner} declares an unreadable elixirml requirement {requirement!r} ({exc})"
    if spec.contains(__version__, prereleases=True):
        return None
    return (
        f"{owner} requires elixirml{spec}, but this is elixirml {__version__}; "
        "install a version of the extension made for this elixirml, or upgrade elixirml"
    )


def _elixirml_requirement(dist: importlib.metadata.Distribution | None) -> str | None:
    if dist is None:
        return None
    for line in dist.requires or ():
        head = re.split(r"[\s;<>=!~\[(]", line, maxsplit=1)[0]
        if head.lower().replace("_", "-") == "elixirml":
            return line.split(";", 1)[0].strip()
    return None


class Registry:
    """Extensions by kind and name: built-ins, installed entry points, and in-process registrations.

    The registry is shared by the whole process, like ``sys.modules``; a lock guards it.
    """

    def __init__(self, builtins: Iterable[tuple[str, str, str]] = (), *, discover: bool = True) -> None:
        """Create a registry.

        Args:
            builtins: ``(name, "module:attribute", group)`` of the built-in extensions.
            discover: also read the installed distributions' entry points.
        """
        self._builtins = list(builtins)
        self._discover = discover
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._problems: list[ExtensionInfo] = []
        self._ready = False
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ discovery
    def _ensure_discovered(self) -> None:
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            import importlib.metadata  # only now: reading entry points is the slow part

            for name, value, group in self._builtins:
                self._add_entry_point(importlib.metadata.EntryPoint(name, value, group), "built-in", None)
            if self._discover:
                for kind in KINDS:
                    for ep in importlib.metadata.entry_points(group=GROUP_PREFIX + kind):
                        dist = ep.dist
                        origin = f"{dist.name} {dist.version}" if dist is not None else "entry point"
                        self._add_entry_point(ep, origin, _elixirml_requirement(dist))
            self._ready = True

    def _add_entry_point(self, ep: importlib.metadata.EntryPoint, origin: str, requirement: str | None) -> None:
        kind = ep.group.removeprefix(GROUP_PREFIX)
        key = (kind, ep.name)
        if key in self._entries:
            taken = self._entries[key].origin
            self._report(ExtensionInfo(kind, ep.name, origin=origin, error=f"the name is already taken by {taken}"))
            return
        self._entries[key] = _Entry(kind, ep.name, origin, entry_point=ep, requirement=requirement)

    def _report(self, info: ExtensionInfo, *, keep: bool = True) -> None:
        if keep:
            self._problems.append(info)
        _log.warning("elixirml extension %s %r (%s) skipped: %s", info.kind, info.name, info.origin, info.error)

    def reset(self) -> None:
        """Forget everything found or registered; entry points are read again on next use."""
        with self._lock:
            self._entries.clear()
            self._problems.clear()
            self._ready = False

    # ------------------------------------------------------------------ loading
    def _load(self, entry: _Entry) -> None:
        """Load and check one extension; on failure record why (never raises for a broken one)."""
        if entry.loaded or entry.error is not None:
            return
        with self._lock:
            if entry.loaded or entry.error is not None:
                return
            if entry.loading:
                raise ConfigurationError(
                    f"The {entry.kind} extension {entry.name!r} was asked for while it was being loaded "
                    "(its module or initialize() uses itself through the registry)"
                )
            entry.loading = True
            try:
                self._load_checked(entry)
            except Exception as exc:  # a third party's import or initialize may raise anything
                entry.error = f"{type(exc).__name__}: {exc}"
            finally:
                entry.loading = False
            if entry.error is not None:
                self._report(self._info(entry), keep=False)

    def _load_checked(self, entry: _Entry) -> None:
        owner = f"{entry.origin} ({entry.kind} {entry.name!r})"
        if entry.requirement is not None:
            entry.error = _incompatibility(entry.requirement, owner)
            if entry.error:
                return
        extension = entry.extension
        if extension is None:
            assert entry.entry_point is not None
            try:
                extension = entry.entry_point.load()
            except Exception as exc:  # ImportError, AttributeError, or whatever the module raises
                entry.error = f"cannot import {entry.entry_point.value!r}: {type(exc).__name__}: {exc}"
                return
        entry.error = self._metadata_problem(extension, entry.name)
        if entry.error:
            return
        requires = getattr(extension, "requires", None)
        if requires:
            entry.error = _incompatibility(str(requires), owner)
            if entry.error:
                return
        provided = getattr(extension, "provides", extension)
        if isinstance(provided, str):
            try:
                provided = _import_target(provided)
            except Exception as exc:
                entry.error = f"cannot import what it provides, {provided!r}: {type(exc).__name__}: {exc}"
                return
        initialize = getattr(extension, "initialize", None)
        if initialize is not None:
            from ..settings import extension_config

            initialize(extension_config(entry.name))
        entry.extension = extension
        entry.provided = provided
        entry.loaded = True

    @staticmethod
    def _metadata_problem(extension: Any, expected_name: str) -> str | None:
        name = getattr(extension, "name", None)
        version = getattr(extension, "version", None)
        if not isinstance(name, str) or name != expected_name:
            return f"bad metadata: its name is {name!r}, but it is registered as {expected_name!r}"
        if not isinstance(version, str) or not version.strip():
            return f"bad metadata: version must be a non-empty string, got {version!r}"
        capabilities = getattr(extension, "capabilities", None)
        if not callable(capabilities):
            return "bad metadata: it has no capabilities() method"
        declared = capabilities()
        if isinstance(declared, str) or not all(isinstance(c, str) for c in declared):
            return f"bad metadata: capabilities() must return a list of strings, got {declared!r}"
        initialize = getattr(extension, "initialize", None)
        if initialize is not None and not callable(initialize):
            return "bad metadata: initialize is not callable"
        return None

    def _info(self, entry: _Entry) -> ExtensionInfo:
        if entry.loaded:
            ext = entry.extension
            return ExtensionInfo(entry.kind, entry.name, ext.version, tuple(ext.capabilities()), entry.origin, None)
        return ExtensionInfo(entry.kind, entry.name, origin=entry.origin, error=entry.error)

    # ------------------------------------------------------------------ public
    def register(self, kind: str, extension: Any, *, replace: bool = False) -> ExtensionInfo:
        """Register ``extension`` under ``kind`` in this process (checked now; errors raise).

        Raises:
            ConfigurationError: an unknown kind, bad metadata, an incompatible version, or a name
                already taken (pass ``replace=True`` to take it over).
        """
        _check_kind(kind)
        self._ensure_discovered()
        name = getattr(extension, "name", None)
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigurationError(
                f"An extension needs a name (letters, digits, '_', '-', '.'), got {name!r}; set extension.name"
            )
        entry = _Entry(kind, name, "register()", extension=extension)
        with self._lock:
            existing = self._entries.get((kind, name))
            if existing is not None and not replace and existing.error is None:
                raise ConfigurationError(
                    f"{kind} extension {name!r} is already provided by {existing.origin}; "
                    "pass replace=True to register over it"
                )
            self._load_checked(entry)
            if entry.error is not None:
                raise ConfigurationError(f"Cannot register {kind} extension {name!r}: {entry.error}")
            self._entries[(kind, name)] = entry
        return self._info(entry)

    def unregister(self, kind: str, name: str) -> None:
        """Remove an extension (registered or found) from this process."""
        _check_kind(kind)
        self._ensure_discovered()
        with self._lock:
            self._entries.pop((kind, name), None)

    def names(self, kind: str) -> list[str]:
        """Names of the extensions of ``kind`` (without loading them; one found broken is left out)."""
        _check_kind(kind)
        self._ensure_discovered()
        with self._lock:
            return sorted(name for (k, name), entry in self._entries.items() if k == kind and entry.error is None)

    def get(self, kind: str, name: str) -> Any:
        """What the extension ``name`` of ``kind`` provides (loaded on first use).

        Raises:
            ConfigurationError: no such extension, or it is installed but could not be loaded
                (the message says why).
        """
        _check_kind(kind)
        self._ensure_discovered()
        entry = self._entries.get((kind, name))
        if entry is None:
            raise ConfigurationError(
                f"No {kind} extension named {name!r}. Installed: {self.names(kind)}. "
                f"Install a package that provides it (entry-point group '{GROUP_PREFIX}{kind}') "
                "or call em.extensions.register(...)"
            )
        self._load(entry)
        if entry.error is not None:
            raise ConfigurationError(f"The {kind} extension {name!r} from {entry.origin} is unusable: {entry.error}")
        return entry.provided

    def list(self, kind: str | None = None) -> list[ExtensionInfo]:
        """Every extension (of ``kind``, or all), loaded and checked; broken ones carry ``error``."""
        if kind is not None:
            _check_kind(kind)
        self._ensure_discovered()
        with self._lock:
            entries = [e for e in self._entries.values() if kind is None or e.kind == kind]
        for entry in entries:
            self._load(entry)
        with self._lock:
            infos = [self._info(e) for e in entries]
            infos += [p for p in self._problems if kind is None or p.kind == kind]
        return sorted(infos, key=lambda i: (KINDS.index(i.kind), i.name, i.origin))
