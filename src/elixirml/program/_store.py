"""``em.Store``: save programs as versions and load them back, on top of the resource store."""

from __future__ import annotations

from typing import Any

from ..store import ResourceStore
from ._module import Module, build_program, class_path
from ._serialize import configuration_to_json


def space_json(program: Module) -> dict[str, Any]:
    """The program's variable space as stored rules (name -> encoding)."""
    return program.variable_space().encoding()


class Store(ResourceStore):
    """The ElixirML store: programs and their versions, optimization runs, evaluations, traces.

    ``store = em.Store()`` opens the configured store (``em.configure(store=...)``,
    ``$ELIXIRML_STORE``, or a SQLite file in the user's data directory); ``em.Store(url)``
    any SQLAlchemy URL (``sqlite:///path.db``, ``postgresql://...``).

    Example::

        store = em.Store("sqlite:///programs.db")
        v1 = store.save(program, "qa", tags=["baseline"])
        program = store.load("qa")            # latest, or version=1, or version="#<id>"
    """

    def save(
        self,
        program: Module,
        name: str,
        *,
        tags: list[str] | None = None,
        message: str = "",
        parent: int | str | None = "latest",
    ) -> dict[str, Any]:
        """Save ``program`` as the next version of ``name``; returns the version's description.

        The version chains to ``parent`` (the latest version by default), and its configuration
        is validated against the program's variable space.
        """
        summary = "; ".join(f"{n}: {p.signature.signature}" for n, p in program.named_predictors())
        info = self.add_version(
            name,
            program.dump_state(),
            configuration=configuration_to_json(program.configuration()),
            space=space_json(program),
            class_path=class_path(type(program)),
            signature_summary=summary,
            tags=tags,
            message=message,
            parent=parent,
        )
        program.__dict__["_elixirml_stored"] = (info["name"], info["number"])  # named so in telemetry
        return info

    def load(self, name: str, version: int | str = "latest", *, cls: type[Module] | None = None) -> Module:
        """Build the stored program (JSON only; no code from the database is ever run)."""
        info = self.get_version(name, version)
        program = build_program({"class": info["class_path"], "state": info["state"]}, cls)
        program.__dict__["_elixirml_stored"] = (info["name"], info["number"])  # named so in telemetry
        return program


def configured_store() -> Store | None:
    """The store set with ``em.configure(store=...)`` or ``$ELIXIRML_STORE``; None when neither is set."""
    import os

    from ..settings import current

    setting = current().store
    if isinstance(setting, Store):
        return setting
    if setting is None and not os.environ.get("ELIXIRML_STORE"):
        return None
    return Store(setting)
