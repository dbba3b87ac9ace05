"""Rebuilds and copies: what construction read and was given, a module built again under new values, copies."""

from __future__ import annotations

import contextvars
import copy
import functools
from collections.abc import Mapping
from typing import Any, Self

from .._log import logger
from ..variables import Variable
from ._state import ModuleState

_MISSING = object()
_MISSING_READ: Any = object()


class ModuleRebuild(ModuleState):
    """Rebuilds for :class:`~elixirml.program.Module` (a base of it).

    Construction is recorded: the arguments ``__init__`` was given, the variables it read, and
    the state it left (its baseline). :meth:`with_configuration` builds a new module under new
    variable values, re-running ``__init__`` where it read a value that changes, and carries over
    what was set after construction.
    """

    _init_args: tuple[tuple[Any, ...], dict[str, Any]]

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        obj = super().__new__(cls)
        obj.__dict__["_config"] = {}
        obj.__dict__["_init_args"] = (args, kwargs)
        return obj

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is not None and not getattr(init, "_elixirml_tracked", False):
            type.__setattr__(cls, "__init__", _tracked_init(init))

    def _constructed(self) -> None:
        """Called when the outermost ``__init__`` returns: remember what construction built.

        Every module of the tree records its state as construction left it; what differs from
        that later was set after construction, and survives a rebuild (see :meth:`_apply_configuration`).
        """
        for _, module in [("", self), *self.named_modules()]:
            module.__dict__["_baseline"] = module._snapshot()

    def _snapshot(self) -> dict[str, Any]:
        """The module's own state, for telling construction from later changes."""
        return {
            "config": dict(self._config),
            "attrs": {k: v for k, v in vars(self).items() if not k.startswith("_")},
        }

    # ------------------------------------------------------------------ rebuilds
    def with_variables(self, **values: Any) -> Self:
        """A new module built under these variable values; this one is untouched.

        Qualified names of nested variables go through a dict:
        ``program.with_variables(**{"retrieve.k": 3})``.
        """
        return self.with_configuration(values)

    def with_configuration(self, config: Mapping[str, Any]) -> Self:
        """A new module built under ``config`` (validated against :meth:`variable_space`); this one is untouched.

        The new module is the one you would get by constructing the program with these values:
        a module whose ``__init__`` read a variable that changes is built again, with the same
        arguments. What was set after construction (demos, instructions, a predictor's
        ``config``, ``set_lm``, attributes assigned later) is carried over to the rebuilt one.
        """
        full = self.variable_space().validate(dict(config))
        changes = {key: full[key] for key in config}
        new = self.deepcopy()
        new._apply_configuration(changes, "")
        return new

    def _apply_configuration(self, changes: Mapping[str, Any], prefix: str) -> None:
        own = {
            local: variable
            for local, variable in self._variables().items()
            if variable.searchable and prefix + local in changes
        }
        reads = self.__dict__.get("_init_reads", ())
        if any(
            local in reads and changes[prefix + local] != self.variable_value(local, resolve=False) for local in own
        ):
            self._rebuild({local: changes[prefix + local] for local in own})
        else:
            for local in own:
                self._set_variable(local, changes[prefix + local])
        for name, child in list(self._direct_children()):
            child._apply_configuration(changes, f"{prefix}{name}.")

    def _rebuild(self, values: Mapping[str, Any]) -> None:
        """Re-run ``__init__`` with the original arguments under new variable values.

        State set after construction, anywhere in this module's tree, is carried over to the
        module at the same place in the rebuilt tree.
        """
        carried = [(path, module, module._changes_since_construction()) for path, module in self._tree()]
        args, kwargs = self._init_args
        config = {**self._config, **values}
        self.__dict__.clear()
        self.__dict__["_config"] = config
        self.__dict__["_init_args"] = (args, kwargs)
        type(self).__init__(self, *args, **kwargs)
        rebuilt = dict(self._tree())
        for path, old, changes in carried:
            target = rebuilt.get(path)
            if target is not None and changes:
                target._restore_changes(old, changes)

    def _tree(self) -> list[tuple[str, ModuleRebuild]]:
        return [("", self), *self.named_modules()]

    def _changes_since_construction(self) -> dict[str, Any]:
        """What differs from the state construction left (everything, for a module built without tracking)."""
        baseline = self.__dict__.get("_baseline")
        now = self._snapshot()
        if baseline is None:
            return now
        changes: dict[str, Any] = {}
        config = {k: v for k, v in now["config"].items() if baseline["config"].get(k, _MISSING) != v}
        if config:
            changes["config"] = config
        attrs = {k: v for k, v in now["attrs"].items() if baseline["attrs"].get(k, _MISSING) is not v}
        if attrs:
            changes["attrs"] = attrs
        return changes

    def _restore_changes(self, old: ModuleRebuild, changes: Mapping[str, Any]) -> None:
        """Apply changes found by :meth:`_changes_since_construction` on ``old`` to this rebuilt module."""
        for name, value in changes.get("attrs", {}).items():
            setattr(self, name, value)
        for name, value in changes.get("config", {}).items():
            if name in self._variables():
                self._config[name] = value
        extra = old.__dict__.get("_instance_variables")
        if extra:
            mine = self.__dict__.setdefault("_instance_variables", {})
            for name, variable in extra.items():
                mine.setdefault(name, variable)

    # ------------------------------------------------------------------ copies
    def deepcopy(self) -> Self:
        """A deep copy (LM clients are shared, not copied).

        When the module holds something that cannot be deep-copied (a lock, an open
        connection), its other attributes and sub-modules are still deep-copied, and that
        attribute is copied shallowly, or shared when it cannot be copied at all, with a
        warning on the ``elixirml.program`` logger (as DSPy's ``deepcopy`` does).
        """
        try:
            return copy.deepcopy(self)
        except (TypeError, copy.Error):
            return self._copy_attributes({})

    def _copy_attributes(self, memo: dict[int, Any]) -> Self:
        """A copy made attribute by attribute: deep where it can be, else shallow, else shared."""
        new = object.__new__(type(self))
        memo[id(self)] = new
        for name, value in self.__dict__.items():
            if id(value) in memo:
                new.__dict__[name] = memo[id(value)]
                continue
            try:
                new.__dict__[name] = copy.deepcopy(value, memo)
                continue
            except (TypeError, copy.Error):
                pass
            if isinstance(value, ModuleRebuild):
                new.__dict__[name] = value._copy_attributes(memo)
                continue
            logger("program").warning(
                "Cannot deep-copy attribute %r of %s; the copy gets a shallow copy of it, or the same object",
                name,
                type(self).__name__,
            )
            try:
                new.__dict__[name] = copy.copy(value)
            except (TypeError, copy.Error):
                new.__dict__[name] = value
        return new

    def reset_copy(self) -> Self:
        """A deep copy whose predictors have no demos (each keeps its LM)."""
        new = self.deepcopy()
        for predictor in new.predictors():
            predictor.demos = []
        return new


# The modules whose ``__init__`` is running here, outermost first (see ``constructing``).
_CONSTRUCTING: contextvars.ContextVar[tuple[ModuleRebuild, ...]] = contextvars.ContextVar(
    "elixirml_constructing", default=()
)


def constructing() -> tuple[ModuleRebuild, ...]:
    """The modules whose ``__init__`` is running here, outermost first (the innermost is the caller's)."""
    return _CONSTRUCTING.get()


def variable_read_in_construction(
    accept: Any, value: Any = _MISSING_READ, variable: Variable | None = None
) -> tuple[ModuleRebuild, str] | None:
    """The enclosing module under construction whose variable gave ``value`` (or is ``variable``).

    A predictor built in a program's ``__init__`` asks this to learn that a setting it was
    given comes from one of the program's variables: ``accept(variable)`` says which variables
    qualify. With ``variable`` it finds the module that declares that very object (and reads
    it, so a rebuild re-runs ``__init__`` when it changes); with ``value`` it looks among the
    variables ``__init__`` has read so far, innermost module first.
    """
    for module in reversed(_CONSTRUCTING.get()[:-1]):
        declared = module._variables()
        if variable is not None:
            for local, candidate in declared.items():
                if candidate is variable:
                    return module, local
            continue
        for local in module.__dict__.get("_init_reads", ()):
            read = declared.get(local)
            if read is not None and accept(read) and module._config.get(local, read.default) == value:
                return module, local
    return None


def _tracked_init(init: Any) -> Any:
    """Wrap a ModuleRebuild subclass's ``__init__`` so the module knows which variables construction read."""

    @functools.wraps(init)
    def tracked_init(self: ModuleRebuild, *args: Any, **kwargs: Any) -> None:
        state = self.__dict__
        depth = state.get("_init_depth", 0)
        state["_init_depth"] = depth + 1
        token = None if depth else _CONSTRUCTING.set((*_CONSTRUCTING.get(), self))
        try:
            init(self, *args, **kwargs)
        finally:
            if token is not None:
                _CONSTRUCTING.reset(token)
            if depth:
                state["_init_depth"] = depth
            else:
                state.pop("_init_depth", None)
        if not depth:
            self._constructed()

    tracked_init._elixirml_tracked = True  # type: ignore[attr-defined]
    return tracked_init
