"""The module tree: a module's sub-modules, predictors and parameters, found by walking its attributes."""

from __future__ import annotations

import collections
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar, cast

if TYPE_CHECKING:
    from ._module import Module


def _contents(value: Any) -> Iterable[tuple[Any, Any]]:
    """The (index or key, item) pairs of a list, tuple or dict; nothing for any other value."""
    if isinstance(value, (list, tuple)):
        return enumerate(value)
    if isinstance(value, dict):
        return value.items()
    return ()


def _walk(value: Any, prefix: str, seen: set[int]) -> Iterator[tuple[str, Module]]:
    if isinstance(value, ModuleTree):
        if id(value) in seen:
            return
        seen.add(id(value))
        yield prefix, cast("Module", value)
        yield from value._children(prefix, seen)
    else:
        for key, item in _contents(value):
            yield from _walk(item, f"{prefix}.{key}" if prefix else str(key), seen)


def _direct(value: Any, prefix: str) -> Iterator[tuple[str, Module]]:
    if isinstance(value, ModuleTree):
        yield prefix, cast("Module", value)
    else:
        for key, item in _contents(value):
            yield from _direct(item, f"{prefix}.{key}")


class ModuleTree:
    """Discovery for :class:`~elixirml.program.Module` (its base): what a module is made of.

    Sub-modules are found in the public attributes (also inside lists, tuples and dicts); a
    predictor is a module whose class sets ``_elixirml_predictor = True`` (``Predict`` does), so
    the tree needs no import of the predictor classes.
    """

    #: Whether instances are predictors (listed by :meth:`named_predictors`); ``Predict`` sets it.
    _elixirml_predictor: ClassVar[bool] = False
    #: Whether an optimizer compiled this module (DSPy's flag; ``BootstrapFewShot`` sets it on its
    #: result): :meth:`named_parameters` and ``named_sub_modules(skip_compiled=True)`` skip it.
    _compiled: bool = False

    def _direct_children(self) -> Iterator[tuple[str, Module]]:
        for name, value in vars(self).items():
            if not name.startswith("_"):
                yield from _direct(value, name)

    def _children(self, prefix: str, seen: set[int]) -> Iterator[tuple[str, Module]]:
        for name, value in vars(self).items():
            if name.startswith("_"):
                continue
            yield from _walk(value, f"{prefix}.{name}" if prefix else name, seen)

    def named_modules(self) -> list[tuple[str, Module]]:
        """Every sub-module (not this one), depth first, with dotted names (``"stages.0.predict"``)."""
        return list(self._children("", {id(self)}))

    def named_predictors(self) -> list[tuple[str, Any]]:
        """Every predictor (a ``Predict``, including this module if it is one), with names."""
        found: list[tuple[str, Any]] = [("self", self)] if self._elixirml_predictor else []
        found.extend((n, m) for n, m in self.named_modules() if m._elixirml_predictor)
        return found

    def named_sub_modules(self, type_: type | None = None, skip_compiled: bool = False) -> Iterator[tuple[str, Any]]:
        """Every module of the tree, this one first, breadth first, with DSPy's names.

        Names follow DSPy: ``"self"``, ``"self.qa"``, ``"self.stages[0]"``, ``"self.tools[key]"``;
        a module reachable along two paths is listed once.

        Args:
            type_: list only modules of this class (default: every ``Module``).
            skip_compiled: do not look inside modules marked compiled (``_compiled = True``).
        """
        wanted = type_ if type_ is not None else ModuleTree
        queue: collections.deque[tuple[str, Any]] = collections.deque([("self", self)])
        seen = {id(self)}

        def visit(name: str, item: Any) -> None:
            if id(item) not in seen:
                seen.add(id(item))
                queue.append((name, item))

        while queue:
            name, item = queue.popleft()
            if isinstance(item, wanted):
                yield name, item
            if isinstance(item, ModuleTree):
                if skip_compiled and item._compiled:
                    continue
                for key, value in vars(item).items():
                    if not key.startswith("_"):
                        visit(f"{name}.{key}", value)
            else:
                for key, value in _contents(item):
                    visit(f"{name}[{key}]", value)

    def named_parameters(self) -> list[tuple[str, Any]]:
        """The learnable parts (predictors) with DSPy's names: ``"qa"``, ``"cot.predict"``, ``"stages[0]"``.

        A Predict lists itself as ``"self"``. Sub-modules marked compiled (``_compiled = True``)
        are left out, as in DSPy. :meth:`named_predictors` gives the same predictors with
        ElixirML's dotted names.
        """
        found: list[tuple[str, Any]] = []
        seen: set[int] = set()

        def add(name: str, value: Any) -> None:
            if isinstance(value, ModuleTree) and value._elixirml_predictor:
                if id(value) not in seen:
                    seen.add(id(value))
                    found.append((name, value))
            elif isinstance(value, ModuleTree):
                if not getattr(value, "_compiled", False):
                    for sub, param in value.named_parameters():
                        add(f"{name}.{sub}", param)
            else:
                quote = "'" if isinstance(value, dict) else ""
                for key, item in _contents(value):
                    add(f"{name}[{quote}{key}{quote}]", item)

        if self._elixirml_predictor:
            add("self", self)
        for name, value in vars(self).items():
            if not name.startswith("_"):
                add(name, value)
        return found

    def parameters(self) -> list[Any]:
        """The predictors of :meth:`named_parameters`, without names."""
        return [param for _, param in self.named_parameters()]

    def predictors(self) -> list[Any]:
        """Every predictor, without names."""
        return [p for _, p in self.named_predictors()]

    def set_lm(self, lm: Any) -> None:
        """Give every predictor this LM."""
        for predictor in self.predictors():
            predictor.lm = lm

    def get_lm(self) -> Any:
        """The LM shared by all predictors, or None when they differ or have none."""
        lms = {id(p.lm): p.lm for p in self.predictors()}
        return next(iter(lms.values())) if len(lms) == 1 else None
