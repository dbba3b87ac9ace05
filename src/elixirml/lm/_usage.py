"""Usage tracking, the price table, and history printing."""

from __future__ import annotations

import contextlib
import contextvars
import json
from collections.abc import Iterator
from typing import Any

from ._types import Usage

# Dollars per million tokens (input, output). Users override per LM with LM(..., price=(i, o)).
PRICES: dict[str, tuple[float, float]] = {
    "local": (0.0, 0.0),
    "openai/gpt-4o": (2.50, 10.00),
    "openai/gpt-4o-mini": (0.15, 0.60),
    "openai/gpt-4.1": (2.00, 8.00),
    "openai/gpt-4.1-mini": (0.40, 1.60),
    "openai/gpt-4.1-nano": (0.10, 0.40),
    "anthropic/claude-3-5-haiku-latest": (0.80, 4.00),
    "anthropic/claude-sonnet-4-0": (3.00, 15.00),
}


def price_for(model: str) -> tuple[float, float] | None:
    """The (input, output) price per million tokens for ``model``, if the table knows it."""
    if model.startswith("local"):
        return PRICES["local"]
    return PRICES.get(model)


_TRACKERS: contextvars.ContextVar[tuple[Usage, ...]] = contextvars.ContextVar("elixirml_usage", default=())


@contextlib.contextmanager
def track_usage() -> Iterator[Usage]:
    """Sum the usage of every LM call made inside the block (this task/thread and its children).

    Example:
        >>> with track_usage() as usage:  # doctest: +SKIP
        ...     program(question="...")
        >>> usage.total_tokens  # doctest: +SKIP
    """
    usage = Usage()
    token = _TRACKERS.set((*_TRACKERS.get(), usage))
    try:
        yield usage
    finally:
        _TRACKERS.reset(token)


def record_usage(usage: Usage) -> None:
    """Add ``usage`` to every tracker open in this context."""
    for tracker in _TRACKERS.get():
        tracker.add(usage)


class CallBudget:
    """A hard cap on LM calls (answers not in the cache) made inside :func:`spending_limit`.

    Attributes:
        max_calls: the cap (None: no cap).
        used: calls reserved so far.
    """

    def __init__(self, max_calls: int | None) -> None:
        self.max_calls = max_calls
        self.used = 0

    @property
    def exhausted(self) -> bool:
        """Whether no call is left."""
        return self.max_calls is not None and self.used >= self.max_calls


_BUDGETS: contextvars.ContextVar[tuple[CallBudget, ...]] = contextvars.ContextVar("elixirml_budgets", default=())


@contextlib.contextmanager
def spending_limit(max_calls: int | None) -> Iterator[CallBudget]:
    """Refuse LM calls beyond ``max_calls`` inside the block (raises ``BudgetExceededError``)."""
    budget = CallBudget(max_calls)
    token = _BUDGETS.set((*_BUDGETS.get(), budget))
    try:
        yield budget
    finally:
        _BUDGETS.reset(token)


def reserve_call() -> None:
    """Count one LM call against every open budget; raise if any is spent (nothing is sent then)."""
    budgets = _BUDGETS.get()
    if not budgets:
        return
    for budget in budgets:
        if budget.exhausted:
            from ..errors import BudgetExceededError

            raise BudgetExceededError(f"LM call budget of {budget.max_calls} calls is spent")
    for budget in budgets:
        budget.used += 1


def format_history(entries: list[dict[str, Any]]) -> str:
    """Render history entries (prompts and answers) as readable text."""
    blocks: list[str] = []
    for i, entry in enumerate(entries, 1):
        lines = [f"=== call {i}/{len(entries)}: {entry['model']}" + (" (cached)" if entry.get("cached") else "")]
        for message in entry["messages"]:
            content = message.get("content")
            if not isinstance(content, str):
                content = json.dumps(content, default=str)
            lines.append(f"--- {message.get('role', '?')}\n{content}")
        for j, output in enumerate(entry["outputs"]):
            lines.append(f"--- answer{'' if len(entry['outputs']) == 1 else f' {j + 1}'}\n{output}")
        usage = entry.get("usage", {})
        lines.append(f"--- tokens: {usage.get('prompt_tokens', 0)} in, {usage.get('completion_tokens', 0)} out")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) if blocks else "(no calls recorded)"
