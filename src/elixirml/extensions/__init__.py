"""Extensions: LM providers, adapters, optimizers, metrics, tools and retrievers from other packages.

A package adds an extension with an entry point in the group ``elixirml.<kind>`` (see
``docs/extensions.md``); ``em.extensions.register(kind, extension)`` adds one in this process.
The built-in providers, adapters, metrics and optimizers are registered the same way.

Installed entry points are read on the first call here (or the first ``em.LM("<provider>/...")``),
never at ``import elixirml``. A broken extension is reported (a logged warning, and an entry
with ``error`` set in :func:`list`) and skipped.
"""

from __future__ import annotations

import builtins
from typing import Any

from ._builtins import ENTRY_POINTS as _BUILTIN_ENTRY_POINTS
from ._registry import KINDS, Extension, ExtensionInfo, Registry

__all__ = ["KINDS", "Extension", "ExtensionInfo", "Registry", "get", "list", "names", "register", "unregister"]

#: The process's registry (built-ins plus installed entry points plus registrations).
registry = Registry(_BUILTIN_ENTRY_POINTS)


def list(kind: str | None = None) -> builtins.list[ExtensionInfo]:
    """Every extension (of ``kind``, or of all kinds) with its version, capabilities and origin.

    Loads each extension to read its metadata. Broken ones are included with ``error`` saying why.
    """
    return registry.list(kind)


def register(kind: str, extension: Any, *, replace: bool = False) -> ExtensionInfo:
    """Register an extension of ``kind`` (one of :data:`KINDS`) in this process.

    Args:
        kind: ``"lms"``, ``"adapters"``, ``"optimizers"``, ``"metrics"``, ``"tools"`` or ``"retrievers"``.
        extension: an :class:`Extension`, or any object with ``name``, ``version`` and
            ``capabilities()`` (what it provides is its ``provides`` attribute, else itself).
        replace: take over a name that another extension already has.

    Raises:
        ConfigurationError: bad metadata, an incompatible ``requires``, or a name already taken.
    """
    return registry.register(kind, extension, replace=replace)


def unregister(kind: str, name: str) -> None:
    """Remove the extension ``name`` of ``kind`` from this process."""
    registry.unregister(kind, name)


def get(kind: str, name: str) -> Any:
    """What the extension ``name`` of ``kind`` provides (an LM class, a metric, ...).

    Raises:
        ConfigurationError: no such extension, or it is broken (the message says why).
    """
    return registry.get(kind, name)


def names(kind: str) -> builtins.list[str]:
    """The usable names of ``kind``, without importing the extensions."""
    return registry.names(kind)
