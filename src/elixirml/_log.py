"""The ``elixirml`` logger, looked up on first use so that ``import elixirml`` does not load :mod:`logging`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import logging


def logger() -> logging.Logger:
    """The ``elixirml`` logger (warnings of callbacks that raised, failed suggestions, ...)."""
    import logging

    return logging.getLogger("elixirml")
