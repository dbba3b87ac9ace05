"""Variables layer: ``Variable`` (any parameter of a program), ``VariableSpace`` and ``Configuration``.

A Variable declares a searchable value (a number, a choice, a text, a module class, an LM, demos)
and what it sets (``setting="temperature"``, ``targets=[...]``). Programs collect their variables
into one ``VariableSpace``; an optimizer proposes a ``Configuration`` (a value per variable) and
the program is rebuilt under it. Public at the top level: ``em.Variable``, ``em.VariableSpace``,
``em.Configuration``.
"""

from ._space import Configuration, SpaceEntry, VariableSpace
from ._variable import BINDABLE_SETTINGS, KINDS, Variable, class_variables

__all__ = [
    "BINDABLE_SETTINGS",
    "KINDS",
    "Configuration",
    "SpaceEntry",
    "Variable",
    "VariableSpace",
    "class_variables",
]
