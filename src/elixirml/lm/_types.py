"""Value types of the LM layer: completions, responses, usage."""

from __future__ import annotations

import dataclasses
from typing import Any

Message = dict[str, Any]


@dataclasses.dataclass(slots=True)
class Usage:
    """Token counts of one or more LM calls."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    calls: int = 0
    cached_calls: int = 0

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens

    def add(self, other: Usage) -> None:
        """Add ``other`` into this one."""
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cost += other.cost
        self.calls += other.calls
        self.cached_calls += other.cached_calls

    def as_dict(self) -> dict[str, Any]:
        """The counts as a plain dict (with ``total_tokens``)."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "cost": self.cost,
            "calls": self.calls,
            "cached_calls": self.cached_calls,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Usage:
        """Inverse of :meth:`as_dict`."""
        return cls(
            prompt_tokens=int(data.get("prompt_tokens", 0)),
            completion_tokens=int(data.get("completion_tokens", 0)),
            cost=float(data.get("cost", 0.0)),
            calls=int(data.get("calls", 0)),
            cached_calls=int(data.get("cached_calls", 0)),
        )


@dataclasses.dataclass(slots=True)
class Completion:
    """One completion (a choice) of an LM response.

    Attributes:
        text: the generated text ("" when the model only called tools).
        tool_calls: native tool calls as ``{"id", "name", "arguments"}`` dicts, if any.
        logprobs: per-token log-probabilities when requested and supported.
        finish_reason: why generation stopped (``"stop"``, ``"length"``, ``"tool_calls"``).
    """

    text: str
    tool_calls: list[dict[str, Any]] | None = None
    logprobs: list[dict[str, Any]] | None = None
    finish_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (used by the cache)."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(slots=True)
class LMResponse:
    """What an LM request returns.

    Attributes:
        completions: one per requested completion (``n``).
        usage: token usage (zero for a cache hit).
        model: the model that answered.
        cached: whether the answer came from the cache.
        latency: seconds spent on the request (0 for a cache hit).
    """

    completions: list[Completion]
    usage: Usage = dataclasses.field(default_factory=Usage)
    model: str = ""
    cached: bool = False
    latency: float = 0.0

    @property
    def text(self) -> str:
        """The first completion's text."""
        return self.completions[0].text if self.completions else ""


def estimate_tokens(text: str) -> int:
    """A rough token count (about four characters per token) for LMs that report none."""
    return max(1, (len(text) + 3) // 4) if text else 0


def messages_text(messages: list[Message]) -> str:
    """All message contents joined, for token estimates."""
    parts = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "\n".join(parts)


def messages_length(messages: list[Message]) -> int:
    """``len(messages_text(messages))``, without joining the text (this runs on every request)."""
    length = count = 0
    for m in messages:
        content = m.get("content")
        if isinstance(content, str):
            length += len(content)
            count += 1
        elif isinstance(content, list):
            for p in content:
                if isinstance(p, dict):
                    length += len(str(p.get("text", "")))
                    count += 1
    return length + count - 1 if count else 0  # the parts and the newlines between them


def estimate_message_tokens(messages: list[Message]) -> int:
    """A rough token count of the messages' text."""
    length = messages_length(messages)
    return max(1, (length + 3) // 4) if length else 0


def has_images(messages: list[Message]) -> bool:
    """Whether any message carries an image content part."""
    for message in messages:  # loops, not any(...): this runs on every request
        content = message.get("content")
        if type(content) is str:
            continue
        if isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and part.get("type") in ("image_url", "image"):
                    return True
    return False
