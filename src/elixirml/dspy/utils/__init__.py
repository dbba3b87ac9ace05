"""``dspy.utils``: ``DummyLM``, usage tracking, callbacks, DSPy's errors and saving helpers."""

from __future__ import annotations

from . import callback, dummies, exceptions, inspect_history, saving, usage_tracker
from .callback import ACTIVE_CALL_ID, BaseCallback
from .dummies import DummyLM
from .exceptions import AdapterParseError, ContextWindowExceededError, LMUnexpectedError
from .saving import get_dependency_versions, load
from .usage_tracker import UsageTracker, track_usage

__all__ = [
    "ACTIVE_CALL_ID",
    "AdapterParseError",
    "BaseCallback",
    "ContextWindowExceededError",
    "DummyLM",
    "LMUnexpectedError",
    "UsageTracker",
    "callback",
    "dummies",
    "exceptions",
    "get_dependency_versions",
    "inspect_history",
    "load",
    "saving",
    "track_usage",
    "usage_tracker",
]
