"""Usage tracking, the price table, and history printing."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

from ..runtime import current_context, reset_context, set_context
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


class UsageTracker(Usage):
    """The usage summed inside a :func:`track_usage` block, in total and by model.

    It is a :class:`Usage` (``prompt_tokens``, ``total_tokens``, ``cost``, ``calls``) of every
    call together; :meth:`get_total_tokens` splits it by model, as DSPy's tracker does.
    """

    def __init__(self) -> None:
        super().__init__()
        self.by_model: dict[str, Usage] = {}

    def add_model_usage(self, model: str, usage: Usage) -> None:
        """Count ``usage`` of one call to ``model``."""
        self.add(usage)
        by_model = self.by_model.get(model)
        if by_model is None:
            by_model = self.by_model[model] = Usage()
        by_model.add(usage)

    def get_total_tokens(self) -> dict[str, dict[str, Any]]:
        """DSPy's shape: ``{model: {"prompt_tokens", "completion_tokens", "total_tokens", ...}}``."""
        return {model: usage.as_dict() for model, usage in self.by_model.items()}


class _Tracking:
    """The scope of :func:`track_usage` (a class: the generator-based context manager costs more per call)."""

    __slots__ = ("token", "tracker")

    def __init__(self, tracker: UsageTracker) -> None:
        self.tracker = tracker

    def __enter__(self) -> UsageTracker:
        self.token = set_context(current_context().with_usage(self.tracker))
        return self.tracker

    def __exit__(self, *exc: object) -> None:
        reset_context(self.token)


def track_usage(tracker: UsageTracker | None = None) -> contextlib.AbstractContextManager[UsageTracker]:
    """Sum the usage of every LM call made inside the block (this task/thread and its children).

    The tracker is a :class:`Usage` of all calls together, and
    ``tracker.get_total_tokens()`` gives DSPy's per-model dict. Blocks nest: a call counts
    in every block open around it.

    Example:
        >>> with track_usage() as usage:  # doctest: +SKIP
        ...     program(question="...")
        >>> usage.total_tokens  # doctest: +SKIP
        >>> usage.get_total_tokens()  # doctest: +SKIP
        {'openai/gpt-4o-mini': {'prompt_tokens': 52, 'completion_tokens': 9, 'total_tokens': 61, ...}}

    Args:
        tracker: the tracker to count into (a subclass of :class:`UsageTracker`, such as
            ``elixirml.dspy``'s); default a new one.
    """
    return _Tracking(tracker if tracker is not None else UsageTracker())


def record_usage(usage: Usage, model: str = "unknown") -> None:
    """Add ``usage`` of a call to ``model`` to every tracker open in this context."""
    for tracker in current_context().usage:
        tracker.add_model_usage(model, usage)


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

    def take(self) -> None:
        """Count one call (the caller checked :attr:`exhausted`); a shared budget may still refuse it.

        Raises:
            BudgetExceededError: the budget is spent.
        """
        if self.exhausted:
            from ..errors import BudgetExceededError

            raise BudgetExceededError(f"LM call budget of {self.max_calls} calls is spent")
        self.used += 1

    async def atake(self) -> None:
        """:meth:`take` for callers on an event loop (a shared budget asks its owner without blocking)."""
        self.take()


@contextlib.contextmanager
def spending_limit(max_calls: int | None) -> Iterator[CallBudget]:
    """Refuse LM calls beyond ``max_calls`` inside the block (raises ``BudgetExceededError``)."""
    with limit_calls(CallBudget(max_calls)) as budget:
        yield budget


@contextlib.contextmanager
def limit_calls(budget: CallBudget) -> Iterator[CallBudget]:
    """Count every LM call made inside the block against ``budget`` (as :func:`spending_limit` does).

    For a budget object of one's own, such as a distributed worker's view of a budget the
    driver holds.
    """
    token = set_context(current_context().with_budget(budget))
    try:
        yield budget
    finally:
        reset_context(token)


def open_budgets() -> tuple[CallBudget, ...]:
    """The call budgets open around this context, outermost first."""
    budgets: tuple[CallBudget, ...] = current_context().budgets
    return budgets


async def reserve_call() -> None:
    """Count one LM call against every open budget; raise if any is spent (nothing is sent then)."""
    budgets: tuple[CallBudget, ...] = current_context().budgets
    if not budgets:
        return
    for budget in budgets:
        if budget.exhausted:
            from ..errors import BudgetExceededError

            raise BudgetExceededError(f"LM call budget of {budget.max_calls} calls is spent")
    for budget in budgets:
        await budget.atake()


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
