"""Save and load: a module's learnable state as data, the program file (JSON only, written atomically), ``em.load``."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, cast

from ..errors import ConfigurationError, LoadError, VariableError
from ._rebuild import ModuleRebuild

if TYPE_CHECKING:
    from ._module import Module

FORMAT = "elixirml.program"
FORMAT_VERSION = 1


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

    def save(self, path: str | os.PathLike[str], save_program: bool = False) -> Path:
        """Write this module's state to a JSON file (atomically). Never pickle.

        Args:
            path: the file to write.
            save_program: DSPy's whole-program save (with cloudpickle) is refused: a file that
                runs code when loaded is unsafe. Save the state and rebuild the program from
                its class (``em.load(path)`` with the class imported, or ``program.load(path)``).
        """
        if save_program:
            raise ConfigurationError(
                "save(path, save_program=True) would pickle the program, and loading a pickle runs code from the "
                "file. ElixirML saves state as JSON only: call save(path), then em.load(path) (with the program's "
                "module imported) or YourProgram().load(path)."
            )
        target = Path(path)
        document = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "class": class_path(type(self)),
            "state": self.dump_state(),
        }
        write_json_atomic(target, document)
        return target

    def load(self, path: str | os.PathLike[str]) -> Self:
        """Load state saved by :meth:`save` into this module; returns self.

        A file written by DSPy's ``Module.save(path)`` (its JSON state format) loads too, into a
        program of the same structure: demos, instructions, field descriptions and prefixes, and
        the saved LM's request settings (see docs/dspy.md). Nothing in either file is executed.
        """
        from ._dspy_state import is_dspy_state, load_dspy_state

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


def load(path: str | os.PathLike[str], cls: type[Module] | None = None) -> Module:
    """Load a saved program without executing any code from the file.

    Built-in modules (``Predict``, ``ChainOfThought``) are rebuilt from the file alone. For a
    program class of your own, its module must already be imported (ElixirML never imports
    what a file names) or passed as ``cls``; it is built with no arguments, then its state is
    loaded.
    """
    return build_program(read_program_file(path), cls)


def build_program(document: dict[str, Any], cls: type[Module] | None = None) -> Module:
    """Build a program from a checked saved document (``{"class": ..., "state": ...}``)."""
    name = str(document.get("class", ""))
    if cls is None:
        cls = next((cast("type[Module]", c) for c in _subclasses(ModulePersistence) if class_path(c) == name), None)
        if cls is None:
            raise LoadError(
                f"The program class {name!r} is not loaded in this process. Import the module that "
                "defines it first, or pass cls=YourProgram. (ElixirML never imports what a file names.)"
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
