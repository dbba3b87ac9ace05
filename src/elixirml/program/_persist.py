"""Save and load: a module's learnable state as data, the program file (JSON only, written atomically), ``em.load``."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, cast

from .._log import logger
from .._version import __version__
from ..errors import ConfigurationError, LoadError, VariableError
from ._code import resolve_class
from ._rebuild import ModuleRebuild

if TYPE_CHECKING:
    from ._module import Module

FORMAT = "elixirml.program"
FORMAT_VERSION = 1
#: The files ``save(directory, save_program=True)`` writes: the program document and the versions.
PROGRAM_FILE = "program.json"
METADATA_FILE = "metadata.json"


def dependency_versions() -> dict[str, str]:
    """The versions a whole-program save records: Python's (``major.minor``) and ElixirML's."""
    return {"python": f"{sys.version_info.major}.{sys.version_info.minor}", "elixirml": __version__}


def version_mismatches(saved: Mapping[str, Any], current: Mapping[str, str]) -> list[str]:
    """One warning text per dependency whose saved version differs from ``current`` (keys in both only)."""
    return [
        f"There is a mismatch of {key} version between the saved program and this environment: it was saved "
        f"with `{key}=={version}`, and this environment has `{key}=={current[key]}`. The program may fail or "
        "behave differently; load it where it was saved, or save it again here."
        for key, version in saved.items()
        if key in current and str(version) != current[key]
    ]


def class_path(cls: type) -> str:
    """``"module:QualName"`` of a class (how saved files name it)."""
    return f"{cls.__module__}:{cls.__qualname__}"


class ModulePersistence(ModuleRebuild):
    """Save/load for :class:`~elixirml.program.Module` (a base of it): state as data and as a file.

    The state is the variable values and each predictor's instructions, demos and config; the
    file is JSON with the format, its version and the program's class path. Nothing is pickled
    and nothing in a file is executed or chooses an LM.
    """

    def dump_state(self) -> dict[str, Any]:
        """The learnable state as JSON-ready data.

        It holds the variable values, and each predictor's instructions, demos and config.
        """
        return {
            "configuration": self._own_configuration(),
            "predictors": {name: p.dump_state() for name, p in self.named_predictors()},
        }

    def load_state(self, state: dict[str, Any], *, allow_unsafe_lm_state: bool = False) -> Self:
        """Load state produced by :meth:`dump_state` into this module's structure; returns self.

        The LM is never rebuilt from the file: each predictor keeps the LM it has (set it in
        code with :meth:`set_lm`).

        Args:
            state: what :meth:`dump_state` returned.
            allow_unsafe_lm_state: DSPy's opt-in to build the LM (its class, endpoint) from the
                file. Refused: a file must not choose where requests go or what code runs.

        Raises:
            LoadError: the state does not fit this program.
            ConfigurationError: ``allow_unsafe_lm_state=True``.
        """
        refuse_unsafe_lm_state(allow_unsafe_lm_state)
        saved_config = state.get("configuration") or {}
        if saved_config:
            try:
                rebuilt = self.with_configuration(saved_config)
            except VariableError as exc:
                raise LoadError(f"Saved configuration does not fit this program: {exc}") from None
            self.__dict__.clear()
            self.__dict__.update(rebuilt.__dict__)
        saved = state.get("predictors")
        if not isinstance(saved, dict):
            raise LoadError("State has no 'predictors' mapping; was it written by dump_state()?")
        mine = dict(self.named_predictors())
        if set(saved) != set(mine):
            raise LoadError(
                f"Saved predictors {sorted(saved)} do not match this program's {sorted(mine)}; "
                "load the state into a program of the same structure."
            )
        for name, predictor in mine.items():
            predictor.load_state(saved[name])
        return self

    def save(
        self,
        path: str | os.PathLike[str],
        save_program: bool = False,
        modules_to_serialize: Sequence[Any] | None = None,
    ) -> Path:
        """Write this module's state to a JSON file (atomically). Never pickle.

        Args:
            path: the file to write (``.json``; ``.pkl`` is refused: ElixirML never pickles).
                With ``save_program=True``, a directory (no suffix).
            save_program: DSPy's whole-program save: the directory gets ``program.json`` (the
                program's class path and its state, the document ``save(path)`` writes) and
                ``metadata.json`` (the versions it was saved with). Nothing is pickled; loading it
                (``em.load(directory)``) builds the named class again and loads the state.
            modules_to_serialize: DSPy's option to store the code of these modules in the file by
                value. Refused: a saved file holds data, never code; make the modules importable
                where the program is loaded.

        Raises:
            ConfigurationError: a ``.pkl`` path, ``modules_to_serialize``, or a ``save_program``
                path with a suffix or naming a file.
        """
        target = Path(path)
        if modules_to_serialize:
            raise ConfigurationError(
                "save(..., modules_to_serialize=...) would store those modules' code in the saved program, and "
                "loading it would run that code. ElixirML saves data only: make the modules importable where "
                "the program is loaded (install them or add their folder to PYTHONPATH), then "
                "em.load(path, allow_import=True) imports the program's class by name."
            )
        document = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "class": class_path(type(self)),
            "state": self.dump_state(),
        }
        if save_program:
            if target.suffix:
                raise ConfigurationError(
                    f"save(path, save_program=True) writes a directory, but {os.fspath(path)!r} has the suffix "
                    f"{target.suffix!r}; pass a path without a suffix (or save(path) for one JSON file)."
                )
            if target.exists() and not target.is_dir():
                raise ConfigurationError(
                    f"{os.fspath(path)!r} exists and is not a directory; save(path, save_program=True) writes one"
                )
            target.mkdir(parents=True, exist_ok=True)
            write_json_atomic(target / PROGRAM_FILE, document)
            write_json_atomic(target / METADATA_FILE, {"dependency_versions": dependency_versions()})
            return target
        if target.suffix == ".pkl":
            raise ConfigurationError(
                f"save({os.fspath(path)!r}) would write a pickle, and loading a pickle runs code from the file. "
                "ElixirML saves state as JSON only: give the path a .json suffix (datetime and other values "
                "are written as JSON text), or save(directory, save_program=True) for the whole program."
            )
        write_json_atomic(target, document)
        return target

    def load(
        self, path: str | os.PathLike[str], allow_pickle: bool = False, allow_unsafe_lm_state: bool = False
    ) -> Self:
        """Load state saved by :meth:`save` into this module; returns self.

        A file written by DSPy's ``Module.save(path)`` (its JSON state format) loads too, into a
        program of the same structure: demos, instructions, field descriptions and prefixes, and
        the saved LM's request settings (see docs/dspy.md). Nothing in either file is executed.

        Args:
            path: a file written by :meth:`save` (or DSPy's JSON ``save``).
            allow_pickle: DSPy's consent to unpickle a ``.pkl`` file. Accepted and changes
                nothing: ElixirML never unpickles, and a ``.pkl`` path raises ``LoadError``.
            allow_unsafe_lm_state: refused, as for :meth:`load_state`.
        """
        from ._dspy_state import is_dspy_state, load_dspy_state

        del allow_pickle
        refuse_unsafe_lm_state(allow_unsafe_lm_state)
        if Path(path).suffix == ".pkl":
            raise LoadError(
                f"{os.fspath(path)!r} is a pickle, and ElixirML never unpickles (loading a pickle runs code from "
                "the file). Save the state as JSON instead: program.save('program.json') (in DSPy too), then "
                "program.load('program.json')."
            )
        if Path(path).is_dir():
            return self.load_state(read_saved_program(path)[0]["state"])
        document = _read_json(path)
        if is_dspy_state(document):
            load_dspy_state(self, document, repr(os.fspath(path)))
            return self
        document = read_program_file(path, document)
        return self.load_state(document["state"])


def refuse_unsafe_lm_state(allow_unsafe_lm_state: bool) -> None:
    """Raise unless ``allow_unsafe_lm_state`` is False (DSPy's keyword; ElixirML never loads an LM from a file)."""
    if allow_unsafe_lm_state:
        raise ConfigurationError(
            "load_state(..., allow_unsafe_lm_state=True) is refused: ElixirML never builds an LM (its class, "
            "endpoint or key) from a saved file, so a file cannot redirect requests or run code. Load the state "
            "without it and give the program its LM in code: program.set_lm(em.LM(...))."
        )


def write_json_atomic(target: Path, document: Any) -> None:
    """Write JSON to ``target`` through a temporary file and a rename, so a crash leaves no half file."""
    import tempfile

    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2, ensure_ascii=False)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _read_json(path: str | os.PathLike[str]) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise LoadError(f"No saved program at {os.fspath(path)!r}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LoadError(f"{os.fspath(path)!r} is not a JSON program file: {exc}") from None


def read_program_file(path: str | os.PathLike[str], document: Any = None) -> dict[str, Any]:
    """Read and check a saved program file (JSON only; nothing in it is executed).

    ``document`` is the file's JSON when the caller has read it already.
    """
    if document is None:
        document = _read_json(path)
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        from ._dspy_state import is_dspy_state

        if is_dspy_state(document):
            raise LoadError(
                f"{os.fspath(path)!r} was written by DSPy's Module.save: it holds state, not a program. Build "
                "the equivalent program and load the file into it: YourProgram().load(path)"
            )
        raise LoadError(f"{os.fspath(path)!r} is not an ElixirML program file (format {FORMAT!r} expected)")
    if document.get("version") != FORMAT_VERSION:
        raise LoadError(
            f"{os.fspath(path)!r} has format version {document.get('version')}; this ElixirML reads {FORMAT_VERSION}"
        )
    if not isinstance(document.get("state"), dict):
        raise LoadError(f"{os.fspath(path)!r} has no state")
    return document


def _subclasses(cls: type[ModulePersistence]) -> Iterator[type[ModulePersistence]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def load(path: str | os.PathLike[str], cls: type[Module] | None = None, *, allow_import: bool = False) -> Module:
    """Load a saved program without executing any code from the file.

    ``path`` is a file written by ``save(path)`` or a directory written by
    ``save(path, save_program=True)`` (whose saved versions are compared with this
    environment's, a warning for each that differs). Built-in modules (``Predict``,
    ``ChainOfThought``) are rebuilt from the file alone. For a program class of your own, its
    module must already be imported or passed as ``cls``, unless ``allow_import=True``: then
    the module the file names is imported (its code runs, so only for files you trust). The
    class is built with no arguments, then its state is loaded.

    Raises:
        LoadError: the file is not a saved program, or its class is not loaded (and may not
            be imported, or has no such class).
        ProgramImportError: ``allow_import=True`` and the class's module cannot be imported.
    """
    document, saved_versions = read_saved_program(path)
    for message in version_mismatches(saved_versions, dependency_versions()):
        logger("program").warning(message)
    return build_program(document, cls, allow_import=allow_import)


def read_saved_program(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A saved program's checked document and the dependency versions it was saved with.

    ``path`` is a program file, or a directory written by ``save(path, save_program=True)``
    (whose ``metadata.json`` holds the versions; a file has none).
    """
    folder = Path(path)
    if not folder.is_dir():
        return read_program_file(path), {}
    if not (folder / PROGRAM_FILE).exists():
        if (folder / "program.pkl").exists():
            raise LoadError(
                f"{os.fspath(path)!r} holds a pickled program (program.pkl, written by DSPy's "
                "save(path, save_program=True)); ElixirML never unpickles, since loading a pickle runs code from "
                "the file. In DSPy, save the state as JSON (program.save('program.json')), then build the "
                "program here and load it: YourProgram().load('program.json')."
            )
        raise LoadError(f"{os.fspath(path)!r} has no {PROGRAM_FILE}; was it written by save(path, save_program=True)?")
    document = read_program_file(folder / PROGRAM_FILE)
    metadata = _read_json(folder / METADATA_FILE) if (folder / METADATA_FILE).exists() else {}
    versions = metadata.get("dependency_versions") if isinstance(metadata, dict) else None
    return document, versions if isinstance(versions, dict) else {}


def build_program(document: dict[str, Any], cls: type[Module] | None = None, *, allow_import: bool = False) -> Module:
    """Build a program from a checked saved document (``{"class": ..., "state": ...}``).

    The class is ``cls``, else the loaded class the document names, else (with
    ``allow_import=True``) the class imported from the module it names.
    """
    name = str(document.get("class", ""))
    if cls is None:
        cls = next(
            (
                cast("type[Module]", c)
                for c in _subclasses(ModulePersistence)
                if class_path(c) == name and c.__module__ in sys.modules  # its module is still imported
            ),
            None,
        )
    if cls is None and allow_import:
        found = resolve_class(name)
        if found is None or not issubclass(found, ModulePersistence):
            raise LoadError(f"{name!r} names {found!r}, which is not a program class (an em.Module)")
        cls = cast("type[Module]", found)
    if cls is None:
        raise LoadError(
            f"The program class {name!r} is not loaded in this process. Import the module that defines it "
            "first, or pass cls=YourProgram. (ElixirML never imports what a file names unless asked: "
            "load(path, allow_import=True) imports it, and its code runs, so only for files you trust.)"
        )
    state = document.get("state")
    if not isinstance(state, dict):
        raise LoadError("Saved program has no state object")
    rebuild = getattr(cls, "from_saved_state", None)
    if rebuild is not None:
        program: Module = rebuild(state)
        return program
    try:
        program = cls()
    except TypeError as exc:
        raise LoadError(
            f"Cannot build {cls.__name__}() without arguments ({exc}); build the program yourself "
            "and call program.load(path)."
        ) from None
    return program.load_state(state)
