"""``dspy.utils.usage_tracker``: DSPy's ``UsageTracker`` (usage entries by model) and ``track_usage``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from ...lm import Usage
from ...lm import UsageTracker as _EmUsageTracker
from ...lm import track_usage as _em_track_usage

__all__ = ["UsageTracker", "track_usage"]


def _plain(value: Any) -> Any:
    """A usage entry's value as plain data (pydantic models, such as LiteLLM's details, become dicts)."""
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        value = dump()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _merge(total: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    for key, value in entry.items():
        if value is None:
            continue
        if isinstance(value, dict):
            total[key] = _merge(dict(total.get(key) or {}), value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            current = total.get(key)
            total[key] = (current if isinstance(current, (int, float)) else 0) + value
        else:
            total[key] = value
    return total


class UsageTracker(_EmUsageTracker):
    """DSPy's tracker: every call's usage entry kept by model (``usage_data``), summed by :meth:`get_total_tokens`.

    It is also ElixirML's :class:`~elixirml.lm.UsageTracker` (``total_tokens``, ``cost``, ``calls``),
    so LM calls inside :func:`track_usage` are counted in both shapes.
    """

    def __init__(self) -> None:
        super().__init__()
        self.usage_data: dict[str, list[dict[str, Any]]] = {}

    def add_usage(self, lm: str, usage_entry: dict[str, Any]) -> None:
        """Keep one usage entry (DSPy's shape: ``prompt_tokens``, ``completion_tokens``, details) for ``lm``."""
        if usage_entry:
            self.usage_data.setdefault(lm, []).append(_plain(dict(usage_entry)))

    def add_model_usage(self, model: str, usage: Usage) -> None:
        """Count one LM call's :class:`~elixirml.Usage` (what ElixirML's LMs report)."""
        super().add_model_usage(model, usage)
        entry = usage.as_dict()
        self.add_usage(
            model,
            {k: entry[k] for k in ("prompt_tokens", "completion_tokens", "total_tokens") if k in entry},
        )

    def get_total_tokens(self) -> dict[str, dict[str, Any]]:
        """The usage entries summed by model, nested details included."""
        totals: dict[str, dict[str, Any]] = {}
        for lm, entries in self.usage_data.items():
            total: dict[str, Any] = {}
            for entry in entries:
                total = _merge(total, entry)
            totals[lm] = total
        return totals


@contextlib.contextmanager
def track_usage() -> Iterator[UsageTracker]:
    """Count the usage of every LM call inside the block (this thread or task and what it starts)."""
    with _em_track_usage(UsageTracker()) as tracker:
        assert isinstance(tracker, UsageTracker)
        yield tracker
