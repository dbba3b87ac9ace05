"""``dspy.utils.saving``: ``dspy.load`` and the dependency versions a saved program records."""

from __future__ import annotations

import os
import sys
from importlib import metadata
from typing import Any

from ...program import Module
from ...program import load as _em_load

__all__ = ["get_dependency_versions", "load"]


def get_dependency_versions() -> dict[str, str]:
    """The versions a saved program records: Python, ElixirML and the DSPy version this namespace follows."""
    from ... import __version__

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    return {
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "dspy": "3.4.1",
        "elixirml": __version__,
        "cloudpickle": version("cloudpickle"),
    }


def load(path: str | os.PathLike[str], allow_pickle: bool = False, **kwargs: Any) -> Module:
    """DSPy's ``dspy.load(path)``: rebuild a program saved whole (``save(path, save_program=True)``).

    Nothing is unpickled or executed from the file. ``allow_pickle=True`` is DSPy's consent to
    run code when loading; here it is the consent to import the program's class named in the
    file (an ElixirML program whose module is not imported yet). See :func:`elixirml.load`.
    """
    del allow_pickle, kwargs
    return _em_load(path)
