"""``dspy.utils.saving``: ``dspy.load`` and the dependency versions a saved program records."""

from __future__ import annotations

import logging
import os

from ...errors import UnsafeLoadError
from ...program import Module, build_program, dependency_versions, read_saved_program, version_mismatches

__all__ = ["get_dependency_versions", "load", "logger"]

logger = logging.getLogger(__name__)


def get_dependency_versions() -> dict[str, str]:
    """The versions a loaded program is compared with: Python's and ElixirML's (as ``save_program=True`` records)."""
    return dependency_versions()


def load(path: str | os.PathLike[str], allow_pickle: bool = False) -> Module:
    """DSPy's ``dspy.load(path, allow_pickle=True)``: rebuild a program saved with ``save(path, save_program=True)``.

    Nothing is unpickled or executed from the file: the directory holds the program's class
    path and its JSON state. As in DSPy, loading needs ``allow_pickle=True``: here it is the
    consent to build the class the file names, importing its module when it is not imported
    yet (that module's code runs). Each dependency whose saved version differs from this
    environment's is warned about on this module's ``logger``.

    Raises:
        elixirml.errors.UnsafeLoadError: ``allow_pickle`` is not True (a ``ValueError``, as DSPy raises).
        elixirml.errors.LoadError: the directory holds no saved program (a DSPy ``program.pkl``
            is refused with what to do instead).
        elixirml.errors.ProgramImportError: the class's module cannot be imported.
    """
    if not allow_pickle:
        raise UnsafeLoadError(
            "Loading with pickle is not allowed without consent: dspy.load(path) builds the program class the "
            "saved files name, importing its module (whose code runs). ElixirML never unpickles; pass "
            "allow_pickle=True if you trust the files, or build the program yourself and call "
            "program.load(path)."
        )
    document, saved_versions = read_saved_program(path)
    for message in version_mismatches(saved_versions, get_dependency_versions()):
        logger.warning(message)
    return build_program(document, allow_import=True)
