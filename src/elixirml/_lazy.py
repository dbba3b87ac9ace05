"""Names a package exports but loads on first use (PEP 562), so that ``import elixirml`` stays fast."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(package: str, names: Mapping[str, str], namespace: dict[str, Any]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``names[name]`` (a module path, relative to ``package``).

    The attribute of the same name is taken from that module, or the module itself where the
    path's last part is the name (``"callbacks": ".callbacks"``). The value is cached in
    ``namespace`` (the package's globals), so each name is looked up once.
    """

    def module_getattr(name: str) -> Any:
        try:
            path = names[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        module = importlib.import_module(path, package)
        value = module if path.rsplit(".", 1)[-1] == name else getattr(module, name)
        namespace[name] = value
        return value

    return module_getattr
