"""A module's state: the variables it declares, their values, and the space of every variable in its tree."""

from __future__ import annotations

from typing import Any

from ..errors import VariableError
from ..variables import Configuration, SpaceEntry, Variable, VariableSpace, class_variables
from ._tree import ModuleTree


class ModuleState(ModuleTree):
    """Variables for :class:`~elixirml.program.Module` (a base of it): declared, valued, searched.

    A module's own variables are its class attributes (``em.Variable.float(...)``) and those
    registered on the instance (:meth:`register_variable`); their values live in ``_config``
    (a variable's default until a value is set). :meth:`variable_space` collects them over the
    whole tree, with qualified names, for the optimizers.
    """

    _config: dict[str, Any]

    def _variables(self) -> dict[str, Variable]:
        """Own variables of this module by local name (class attributes, then registered ones)."""
        cls = type(self)
        cached: dict[str, Variable] | None = cls.__dict__.get("_elixirml_class_variables")
        if cached is None:
            cached = dict(class_variables(cls))
            type.__setattr__(cls, "_elixirml_class_variables", cached)
        extra: dict[str, Variable] | None = self.__dict__.get("_instance_variables")
        return {**cached, **extra} if extra else cached

    def register_variable(self, name: str, variable: Variable) -> Variable:
        """Declare a variable on this instance (for modules built at run time)."""
        if not isinstance(variable, Variable):
            raise VariableError(f"register_variable({name!r}, ...) needs a Variable, got {variable!r}")
        variable.name = name
        self.__dict__.setdefault("_instance_variables", {})[name] = variable
        return variable

    def variable_value(self, name: str, *, resolve: bool = True) -> Any:
        """The current value of this module's variable ``name`` (resolved to the class/LM if asked)."""
        variable = self._variables().get(name)
        if variable is None:
            raise VariableError(f"{type(self).__name__} has no variable {name!r}; it has {list(self._variables())}")
        if "_init_depth" in self.__dict__:  # read while __init__ runs: a rebuild must re-run it
            self.__dict__.setdefault("_init_reads", set()).add(name)
        if variable.kind == "composite":
            assert variable.derive is not None
            return variable.derive(**{dep: self.variable_value(dep) for dep in variable.depends})
        value = self._config.get(name, variable.default)
        return variable.resolve(value) if resolve else value

    def _set_variable(self, name: str, value: Any) -> None:
        self._config[name] = value

    def variable_space(self) -> VariableSpace:
        """Every variable of this module, its sub-modules (qualified names) and its predictors."""
        entries = [SpaceEntry(local, var, self, local) for local, var in self._variables().items()]
        for path, module in self.named_modules():
            entries.extend(
                SpaceEntry(f"{path}.{local}", var, module, local) for local, var in module._variables().items()
            )
        return VariableSpace(entries)

    def configuration(self) -> Configuration:
        """The current value of every searchable variable."""
        return self.variable_space().current()

    def _own_configuration(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for path, module in [("", self), *self.named_modules()]:
            for local, variable in module._variables().items():
                if variable.searchable and variable.kind not in ("demos",) and not _implicit(module, local):
                    values[f"{path}.{local}" if path else local] = module.variable_value(local, resolve=False)
        return values


def _implicit(module: ModuleState, local: str) -> bool:
    return local in ("instructions", "demos") and local not in dict(class_variables(type(module)))
