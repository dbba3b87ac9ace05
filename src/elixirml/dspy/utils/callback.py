"""``dspy.utils.callback``: DSPy's ``BaseCallback`` and ``ACTIVE_CALL_ID``, as ElixirML's callbacks."""

from __future__ import annotations

from ...callbacks import ACTIVE_CALL_ID, Callback

__all__ = ["ACTIVE_CALL_ID", "BaseCallback"]

#: DSPy's name of :class:`elixirml.callbacks.Callback` (the same method names).
BaseCallback = Callback
