"""Build served programs from the store, and re-import their code for a hot reload.

Loading imports only what the operator allowed: a program's class must already be imported
(built-in modules always are), or its module must be under one of the prefixes allowed when the
server started (``--allow-module mypkg``), or its source file (a script's class, a class of a
file given to ``elixirml optimize file.py:Class``) in a file or folder allowed with
``--allow-path``. A reload re-executes the module's source into a fresh module object
and builds the program with the new class from the stored state; if either step fails, the
module that was imported before is put back, so the version that is serving keeps its code.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import time
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import LoadError
from ..program import Module, Store, build_program, class_allowed, interface_of, resolve_class
from ._state import LoadedVersion


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _resolve(module: types.ModuleType, qualname: str) -> Any:
    target: Any = module
    for part in qualname.split("."):
        target = getattr(target, part, None)
        if target is None:
            return None
    return target


class ProgramLoader:
    """Builds :class:`LoadedVersion` objects of stored programs.

    Args:
        store: the store the programs come from.
        allow_modules: module prefixes whose code may be imported on behalf of a stored row
            (``"mypkg"`` allows ``mypkg`` and ``mypkg.sub``, not ``mypkgx``).
        allow_paths: source files, or folders (with everything under them), whose code may be
            imported on behalf of a stored row.
    """

    def __init__(self, store: Store, allow_modules: Sequence[str] = (), allow_paths: Sequence[str | Path] = ()) -> None:
        self.store = store
        self.allow_modules = tuple(p.strip().rstrip(".") for p in allow_modules if p.strip())
        self.allow_paths = tuple(Path(p).resolve() for p in allow_paths if str(p).strip())
        self._generation: dict[str, int] = {}

    def allowed(self, module: str, class_file: str | None = None) -> bool:
        """Whether ``module`` is under one of the allowed prefixes, or ``class_file`` in an allowed path."""
        return class_allowed(f"{module}:_", class_file, self.allow_modules, self.allow_paths)

    def _class(self, class_path: str, class_file: str | None = None) -> type[Module] | None:
        """The program class a stored row names: already imported, or imported as the operator allowed."""
        cls = resolve_class(
            class_path, class_file, may_import=lambda: self.allowed(class_path.partition(":")[0], class_file)
        )
        if cls is None:
            return None
        if not (isinstance(cls, type) and issubclass(cls, Module)):
            raise LoadError(f"{class_path!r} names {cls!r}, which is not an ElixirML Module")
        return cls

    def load(self, name: str, version: int | str = "latest") -> LoadedVersion:
        """Build version ``version`` of ``name`` with the code imported now.

        Raises:
            LoadError: no such version, its class is not imported and not allowed, or its state does not fit.
        """
        info = self.store.get_version(name, version)
        class_path = str(info["class_path"])
        class_file = info.get("class_file")
        try:
            cls = self._class(class_path, class_file)
        except LoadError:
            raise
        except Exception as exc:  # the module's own code failed as it was imported: the operator is told why
            raise LoadError(f"Importing the code of {class_path!r} failed: {_describe(exc)}") from exc
        if cls is None:
            module_name = class_path.partition(":")[0]
            if module_name and not self.allowed(module_name, class_file) and not module_name.startswith("elixirml."):
                if class_file and module_name.startswith("elixirml_file_"):
                    how = f"--allow-path {class_file} (or its folder)"
                else:
                    how = f"--allow-module {module_name.split('.')[0]}"
                raise LoadError(
                    f"Program {name!r} v{info['number']} is a {class_path!r}, whose code is not imported and not "
                    f"allowed: start the server with {how} (allowed now: modules {list(self.allow_modules)}, "
                    f"paths {[str(p) for p in self.allow_paths]})."
                )
        try:
            program = build_program({"class": class_path, "state": info["state"]}, cls)
        except LoadError:
            raise
        except Exception as exc:  # the program's own constructor failed: the caller is told why
            raise LoadError(f"Building {class_path!r} from v{info['number']} failed: {_describe(exc)}") from exc
        return self._loaded(name, info, program, code="stored")

    def reload(self, name: str, version: int | str) -> LoadedVersion:
        """Re-import the module of ``name``'s class from its source and build ``version`` with it.

        On success the new module replaces the old one in ``sys.modules``; on failure the old one
        stays and nothing serving changes.

        Raises:
            LoadError: the module is not allowed, has no source, fails to import, lacks the class,
                or the new class does not accept the stored state (the message says which).
        """
        info = self.store.get_version(name, version)
        class_path = str(info["class_path"])
        module_name, _, qualname = class_path.partition(":")
        if not self.allowed(module_name, info.get("class_file")):
            raise LoadError(
                f"Reloading {name!r} would import {module_name!r}, which is not under an allowed prefix "
                f"{list(self.allow_modules)}; start the server with --allow-module {module_name.split('.')[0]}."
            )
        old = sys.modules.get(module_name)
        spec = importlib.util.find_spec(module_name) if old is None else getattr(old, "__spec__", None)
        origin = getattr(spec, "origin", None)
        if spec is None or not origin or not str(origin).endswith(".py"):
            raise LoadError(f"Cannot reload {module_name!r}: it has no Python source file (spec {spec!r}).")
        fresh_spec = importlib.util.spec_from_file_location(
            module_name, origin, submodule_search_locations=spec.submodule_search_locations
        )
        assert fresh_spec is not None
        module = importlib.util.module_from_spec(fresh_spec)
        try:
            with open(origin, encoding="utf-8") as handle:
                source = handle.read()
            code = compile(source, origin, "exec")  # from the source, never from a stale .pyc
            sys.modules[module_name] = module  # as an import does: the module's own code may look itself up
            exec(code, module.__dict__)
            cls = _resolve(module, qualname)
            if not (isinstance(cls, type) and issubclass(cls, Module)):
                raise LoadError(f"the reloaded module has no Module class {qualname!r}")
        except BaseException as exc:
            self._restore(module_name, old)
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            raise LoadError(f"Reloading {module_name!r} failed, the old code keeps serving: {_describe(exc)}") from exc
        try:
            program = build_program({"class": class_path, "state": info["state"]}, cls)
        except Exception as exc:
            self._restore(module_name, old)
            raise LoadError(
                f"The reloaded {class_path!r} does not accept the stored state of v{info['number']}, the old code "
                f"keeps serving: {_describe(exc)}"
            ) from exc
        generation = self._generation.get(module_name, 0) + 1
        self._generation[module_name] = generation
        return self._loaded(name, info, program, code=f"reloaded #{generation}")

    @staticmethod
    def _restore(module_name: str, old: types.ModuleType | None) -> None:
        if old is not None:
            sys.modules[module_name] = old
        else:
            sys.modules.pop(module_name, None)

    @staticmethod
    def _loaded(name: str, info: dict[str, Any], program: Module, *, code: str) -> LoadedVersion:
        program.__dict__["_elixirml_stored"] = (info["name"], info["number"])  # named so in telemetry
        return LoadedVersion(
            name=name,
            number=int(info["number"]),
            version_id=int(info["id"]),
            program=program,
            interface=interface_of(name, program),
            code=code,
            loaded_at=time.time(),
        )
