"""Where a program's class comes from, and how a new process finds it again.

A stored version names its class as ``"module:QualName"`` and, where the class lives in a
Python file, that file. A class of an importable module is found by importing the module; a
class of a script (``__main__``) or of a file given to the CLI (``file.py:Class``) is found by
importing that file under a name of its own (``elixirml_file_<stem>_<digest>``), so its
``if __name__ == "__main__":`` block does not run. A class that no new process can find (one
defined inside a function, or in an interactive session) is refused when it is saved.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
import sys
import types
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError, LoadError, ProgramImportError

FILE_MODULE_PREFIX = "elixirml_file_"
_LEGACY_FILE_PREFIX = "elixirml_user_"  # what `elixirml optimize file.py:Class` recorded before 0007


def file_module_name(path: str | Path) -> str:
    """The module name a source file is imported under: the same in every process for the same file."""
    import hashlib

    resolved = Path(path).resolve()
    digest = hashlib.sha256(str(resolved).encode("utf-8")).hexdigest()[:10]
    stem = re.sub(r"\W", "_", resolved.stem)
    return f"{FILE_MODULE_PREFIX}{stem}_{digest}"


def import_source_file(path: str | Path) -> types.ModuleType:
    """Import a ``.py`` file as a module of its own, once per process (its ``__main__`` block does not run).

    Raises:
        LoadError: the file does not exist or is not Python source. Its own errors propagate.
    """
    file = Path(path)
    if not file.is_file():
        raise LoadError(f"No such file: {path}")
    name = file_module_name(file)
    module = sys.modules.get(name)
    if module is not None:
        return module
    spec = importlib.util.spec_from_file_location(name, file.resolve())
    if spec is None or spec.loader is None:
        raise LoadError(f"Cannot import {path}: not a Python source file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _resolve(module: Any, qualname: str) -> Any:
    target = module
    for part in qualname.split("."):
        target = getattr(target, part, None)
        if target is None:
            return None
    return target


def _source_file(module: types.ModuleType | None) -> str | None:
    file = getattr(module, "__file__", None)
    return str(Path(file).resolve()) if isinstance(file, str) and file.endswith(".py") else None


def class_origin(cls: type) -> tuple[str, str | None]:
    """``(class_path, class_file)`` under which a new process finds ``cls`` again.

    ``class_file`` is the class's source file (None for a module with no ``.py`` file). A class
    of a script or of a file imported by :func:`import_source_file` is named under the file's
    own module name (see :func:`file_module_name`).

    Raises:
        ConfigurationError: no new process could find the class (defined inside a function, in
            an interactive session or a notebook, or under a name its module does not hold).
    """
    module_name, qualname = cls.__module__, cls.__qualname__
    if "<locals>" in qualname:
        raise ConfigurationError(
            f"Cannot store a {qualname!r}: the class is defined inside a function, so no other process can "
            f"find it again. Define {cls.__name__} at the top level of a module or .py file."
        )
    module = sys.modules.get(module_name)
    file = _source_file(module)
    if _resolve(module, qualname) is not cls:
        raise ConfigurationError(
            f"Cannot store a {qualname!r}: module {module_name!r} does not hold it under that name, so no other "
            "process can find it again. Define the class at the top level of a module or .py file."
        )
    if module_name == "__main__" or module_name.startswith((FILE_MODULE_PREFIX, _LEGACY_FILE_PREFIX)):
        if file is None:
            raise ConfigurationError(
                f"Cannot store a {qualname!r}: it is defined in an interactive session or notebook, which no "
                f"other process can import. Move {cls.__name__} into a .py file (or a module) and import it."
            )
        _warn_unguarded(file, cls.__name__)
        return f"{file_module_name(file)}:{qualname}", file
    if module_name == "elixirml" or module_name.startswith("elixirml."):
        return f"{module_name}:{qualname}", None  # built in: found by its module wherever ElixirML runs
    return f"{module_name}:{qualname}", file


def _unguarded_lines(file: str) -> list[int]:
    """Top-level lines of a script that do work when it is imported (calls, loops, ``with``), outside its main guard."""
    try:
        with open(file, encoding="utf-8") as handle:
            tree = ast.parse(handle.read(), file)
    except (OSError, SyntaxError, ValueError):
        return []
    work = (ast.For, ast.AsyncFor, ast.While, ast.With, ast.AsyncWith, ast.Try)
    return [
        node.lineno
        for node in tree.body
        if isinstance(node, work) or (isinstance(node, ast.Expr) and isinstance(node.value, (ast.Call, ast.Await)))
    ]


def _warn_unguarded(file: str, name: str) -> None:
    lines = _unguarded_lines(file)
    if lines:
        shown = ", ".join(str(n) for n in lines[:5]) + (", ..." if len(lines) > 5 else "")
        warnings.warn(
            f"{name} is saved from {file}, which a new process imports to find the class again: its top-level "
            f"code (line {shown}) would run again each time. Put the script's own work under "
            'if __name__ == "__main__":',
            UserWarning,
            stacklevel=4,
        )


def class_allowed(
    class_path: str, class_file: str | None, allow_modules: tuple[str, ...], allow_paths: tuple[Path, ...]
) -> bool:
    """Whether a stored class may be imported: its module is under an allowed prefix, or its file in an allowed path."""
    module_name = class_path.partition(":")[0]
    if not module_name.startswith(FILE_MODULE_PREFIX) and any(
        module_name == prefix or module_name.startswith(prefix + ".") for prefix in allow_modules
    ):
        return True
    if class_file:
        file = Path(class_file).resolve()
        return any(file == path or path in file.parents for path in allow_paths)
    return False


def resolve_class(
    class_path: str, class_file: str | None = None, *, may_import: Callable[[], bool] | None = None
) -> type | None:
    """The class a stored version names: already imported, or imported from its module or source file.

    Args:
        class_path: ``"module:QualName"``.
        class_file: the class's source file, as recorded when it was saved.
        may_import: asked before anything is imported; False: only classes already imported
            are found (None: importing is allowed).

    Returns:
        The class, or None when it is not imported and may not be.

    Raises:
        ProgramImportError: the module cannot be imported (a ``LoadError`` and a ``ModuleNotFoundError``).
        LoadError: its source file is gone, or the module lacks the class.
    """
    module_name, _, qualname = class_path.partition(":")
    if not module_name or not qualname:
        raise LoadError(f"Stored class {class_path!r} is not 'module:QualName'")
    module: Any = sys.modules.get(module_name)
    found = _resolve(module, qualname)
    if found is not None:
        return found if isinstance(found, type) else _not_a_class(class_path, found)
    if class_file:  # the same file already imported under another name (the script that saved it)
        for loaded in list(sys.modules.values()):
            if _source_file(loaded) == class_file:
                candidate = _resolve(loaded, qualname)
                if isinstance(candidate, type):
                    return candidate
    if may_import is not None and not may_import():
        return None
    if not class_file and (module_name == "__main__" or module_name.startswith(_LEGACY_FILE_PREFIX)):
        raise LoadError(
            f"Stored class {class_path!r} was saved from a script or file before the store recorded source files, "
            f"so this process cannot find it: import the file that defines {qualname} and pass "
            f"cls={qualname.rpartition('.')[2]}, then save the program again to record where it lives."
        )
    if module_name.startswith(FILE_MODULE_PREFIX):
        if not class_file:
            raise LoadError(f"Stored class {class_path!r} came from a file the store did not record")
        if not Path(class_file).is_file():
            raise LoadError(
                f"The source file of {qualname!r}, {class_file}, no longer exists; put it back, or load the "
                "version with cls=YourClass."
            )
        module = import_source_file(class_file)
    else:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            top = module_name.split(".")[0]
            if exc.name == top and "." not in module_name and class_file and Path(class_file).is_file():
                module = _import_as(module_name, class_file)  # a top-level module found on sys.path when saved
            else:
                raise ProgramImportError(
                    f"Cannot import module {module_name!r} of stored class {qualname!r} ({exc}); install it or add "
                    f"its folder to PYTHONPATH{f' (it was {class_file})' if class_file else ''}.",
                    name=exc.name,
                ) from None
    found = _resolve(module, qualname)
    if found is None:
        raise LoadError(f"Module {module_name!r} has no class {qualname!r}; was the class renamed or moved?")
    return found if isinstance(found, type) else _not_a_class(class_path, found)


def _not_a_class(class_path: str, value: Any) -> type:
    raise LoadError(f"{class_path!r} names {type(value).__name__} {value!r}, which is not a program class")


def _import_as(module_name: str, file: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None or spec.loader is None:
        raise LoadError(f"Cannot import {file} as {module_name!r}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module
