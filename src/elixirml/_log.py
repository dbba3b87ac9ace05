"""The ``elixirml`` logger, looked up on first use so that ``import elixirml`` does not load :mod:`logging`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import logging


def logger(part: str | None = None) -> logging.Logger:
    """The ``elixirml`` logger (warnings of callbacks that raised, failed suggestions, ...).

    ``part`` names a child: ``logger("program")`` is ``elixirml.program``, where predictors
    report inputs that do not fit their signature.
    """
    import logging

    return logging.getLogger(f"elixirml.{part}" if part else "elixirml")
