"""VariableSpace (every variable of a program) and Configuration (a validated assignment)."""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator, Mapping
from typing import Any

from ..errors import VariableError
from ._variable import Variable


class Configuration(Mapping[str, Any]):
    """A validated assignment of values to variables (qualified name -> value).

    Immutable; module and LM variables hold their option key, demos hold JSON-ready dicts.
    Build one with :meth:`VariableSpace.validate` or ``program.configuration()``.
    """

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = dict(values)

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        shown = {
            k: (f"<{len(v)} demos>" if k.endswith("demos") and isinstance(v, list) else v) for k, v in self.items()
        }
        return f"Configuration({shown})"

    def to_dict(self) -> dict[str, Any]:
        """A plain dict copy."""
        return dict(self._values)

    def replace(self, **changes: Any) -> Configuration:
        """A copy with some values replaced (not validated: pass it through ``validate``)."""
        return Configuration({**self._values, **changes})


class SpaceEntry:
    """One variable of a space: the declaration, its owner module and its local name."""

    __slots__ = ("local", "owner", "qualified", "variable")

    def __init__(self, qualified: str, variable: Variable, owner: Any, local: str) -> None:
        self.qualified = qualified
        self.variable = variable
        self.owner = owner
        self.local = local


class VariableSpace(Mapping[str, Variable]):
    """Every variable of a program: its own, its sub-modules' and its predictors' implicit ones.

    A read-only mapping from qualified name to :class:`Variable`: ``for name in space``,
    ``space.items()``, ``space["answer.demos"]``, ``"temperature" in space``. Names are
    qualified by the path of the module that owns them (``retrieve.k``); every predictor adds
    ``<path>.instructions`` (text) and ``<path>.demos``, and a predictor with a single
    closed-set output (``Literal``, enum, ``bool``) adds ``<path>.decoding``. The space is the
    same whatever LM is configured.
    """

    def __init__(self, entries: list[SpaceEntry]) -> None:
        self._entries = {e.qualified: e for e in entries}
        self._order = self._dependency_order()

    # ------------------------------------------------------------------ structure
    def _qualify(self, entry: SpaceEntry, local: str) -> str:
        prefix = entry.qualified[: len(entry.qualified) - len(entry.local)]
        return prefix + local

    def dependencies(self, name: str) -> list[str]:
        """Qualified names that ``name`` depends on (conditions and composite inputs)."""
        entry = self._entries[name]
        deps = [*entry.variable.active_when, *entry.variable.depends]
        resolved = []
        for dep in deps:
            qualified = self._qualify(entry, dep)
            if qualified not in self._entries:
                raise VariableError(f"Variable {name!r} depends on {dep!r}, which is not a variable of the same module")
            resolved.append(qualified)
        return resolved

    def _dependency_order(self) -> list[str]:
        order: list[str] = []
        state: dict[str, int] = {}

        def visit(name: str, path: list[str]) -> None:
            mark = state.get(name, 0)
            if mark == 2:
                return
            if mark == 1:
                cycle = " -> ".join([*path[path.index(name) :], name])
                raise VariableError(f"Variables depend on each other in a cycle: {cycle}")
            state[name] = 1
            for dep in self.dependencies(name):
                visit(dep, [*path, name])
            state[name] = 2
            order.append(name)

        for name in self._entries:
            visit(name, [])
        return order

    def names(self) -> list[str]:
        """Qualified names, in declaration order."""
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, name: str) -> Variable:
        return self._entries[name].variable

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def restricted(self, name: str, options: list[Any]) -> VariableSpace:
        """A copy in which the choice variable ``name`` offers only ``options`` (what optimizers search)."""
        entry = self._entries[name]
        variable = copy.copy(entry.variable)
        if isinstance(variable.options, dict):
            variable.options = {k: v for k, v in variable.options.items() if k in options}
        else:
            variable.options = [o for o in variable.options if o in options]
        entries = [
            e if e.qualified != name else SpaceEntry(name, variable, e.owner, e.local) for e in self._entries.values()
        ]
        return VariableSpace(entries)

    def entry(self, name: str) -> SpaceEntry:
        """The full entry (variable, owner module, local name) of ``name``."""
        return self._entries[name]

    def searchable(self) -> list[str]:
        """Names that optimizers choose (not composite)."""
        return [n for n in self._entries if self._entries[n].variable.searchable]

    def __repr__(self) -> str:
        lines = [f"VariableSpace({len(self)} variables)"]
        for name, entry in self._entries.items():
            var = entry.variable
            detail = var.encoding()
            shown = entry.owner.variable_value(entry.local, resolve=False) if entry.owner is not None else None
            if var.kind == "demos":
                shown = f"{len(shown or [])} demos"
            elif var.kind == "text":
                shown = repr(shown if len(str(shown)) < 60 else str(shown)[:57] + "...")
            cond = f"  (when {var.active_when})" if var.active_when else ""
            lines.append(f"  {name}: {var.kind} = {shown}  {_describe(detail)}{cond}")
        return "\n".join(lines)

    # ------------------------------------------------------------------ values
    def current(self) -> Configuration:
        """The values in force on the program this space was read from."""
        values = {}
        for name, entry in self._entries.items():
            if entry.variable.searchable:
                values[name] = entry.owner.variable_value(entry.local, resolve=False)
        return Configuration(values)

    def default(self) -> Configuration:
        """Each variable's declared default (a predictor's instructions and demos: their current value)."""
        return Configuration({n: e.variable.default for n, e in self._entries.items() if e.variable.searchable})

    def is_active(self, name: str, values: Mapping[str, Any]) -> bool:
        """Whether ``name``'s conditions hold under ``values``."""
        entry = self._entries[name]
        for dep, wanted in entry.variable.active_when.items():
            if values.get(self._qualify(entry, dep)) != wanted:
                return False
        return True

    def validate(
        self, config: Mapping[str, Any] | None = None, *, base: Mapping[str, Any] | None = None
    ) -> Configuration:
        """Check ``config`` and return the full :class:`Configuration` (``base`` filled in).

        Raises:
            VariableError: an unknown name, a value out of range or not allowed, a derived
                (composite) variable set by hand, or a value for a variable whose condition
                does not hold.
        """
        config = dict(config or {})
        unknown = [k for k in config if k not in self._entries]
        if unknown:
            raise VariableError(f"Unknown variable(s) {unknown}; known: {self.names()}")
        values = dict(base if base is not None else self.current())
        before = dict(values)
        for name, value in config.items():
            var = self._entries[name].variable
            if not var.searchable:
                raise VariableError(f"Variable {name!r} is derived from {var.depends}; it cannot be set")
            values[name] = var.validate(value)
        for name in config:
            # an inactive variable may be carried at its base value, but not changed
            if not self.is_active(name, values) and values[name] != before.get(name):
                entry = self._entries[name]
                conds = {self._qualify(entry, k): v for k, v in entry.variable.active_when.items()}
                actual = {k: values.get(k) for k in conds}
                raise VariableError(
                    f"Variable {name!r} only applies when {conds}, but the configuration has {actual}; "
                    "remove it or change the condition"
                )
        return Configuration(values)

    def sample(self, rng: random.Random | int | None = None, *, base: Mapping[str, Any] | None = None) -> Configuration:
        """A random configuration (inactive conditional variables keep their base value)."""
        rng = rng if isinstance(rng, random.Random) else random.Random(rng)
        values = dict(base if base is not None else self.current())
        for name in self._order:
            var = self._entries[name].variable
            if var.searchable and var.kind != "demos" and self.is_active(name, values):
                values[name] = var.sample(rng)
        return Configuration(values)

    def derived(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Values of composite variables under ``values``, in dependency order."""
        full = dict(values)
        out: dict[str, Any] = {}
        for name in self._order:
            entry = self._entries[name]
            var = entry.variable
            if var.kind == "composite" and var.derive is not None:
                args = {dep: _resolved(self, self._qualify(entry, dep), full) for dep in var.depends}
                full[name] = out[name] = var.derive(**args)
        return out

    def encoding(self) -> dict[str, dict[str, Any]]:
        """Per searchable variable: how to search it (numeric / categorical / text / demos)."""
        return {n: self._entries[n].variable.encoding() for n in self.searchable()}


def _resolved(space: VariableSpace, name: str, values: Mapping[str, Any]) -> Any:
    var = space[name]
    return var.resolve(values[name]) if name in values else None


def _describe(detail: dict[str, Any]) -> str:
    kind = detail["type"]
    if kind == "numeric":
        return f"[{detail['low']}, {detail['high']}]" + (" log" if detail.get("log") else "")
    if kind == "categorical":
        return "{" + ", ".join(str(c) for c in detail["choices"]) + "}"
    return ""
