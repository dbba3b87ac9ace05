"""``dspy.utils.dummies``: DSPy's ``DummyLM``, ElixirML's scripted LM with DSPy's arguments."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ...lm import DummyLM as _EmDummyLM
from ..clients.base_lm import DSPyLMMixin

__all__ = ["DummyLM"]


class DummyLM(DSPyLMMixin, _EmDummyLM):
    """DSPy's ``DummyLM(answers, follow_examples=False, adapter=None)``.

    Args:
        answers: a list of answers (dicts of output values, or raw completion strings) used in
            order, or a mapping from text found in the request to its answer.
        follow_examples: answer with a demo's output when the request's inputs equal that demo's.
        adapter: accepted for DSPy's signature; answers are written in the format of the
            adapter that sent the request (the markers of its prompt, or JSON when it asked).
        **kwargs: passed to :class:`elixirml.DummyLM`.
    """

    def __init__(
        self,
        answers: Sequence[Any] | Mapping[str, Any],
        follow_examples: bool = False,
        adapter: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(answers, **kwargs)
        self.follow_examples = follow_examples
        self.adapter = adapter

    @property
    def supports_function_calling(self) -> bool:
        """False, as DSPy's ``DummyLM`` (a subclass may say otherwise)."""
        return False

    @property
    def supports_response_schema(self) -> bool:
        """False, as DSPy's ``DummyLM``."""
        return False

    @property
    def supported_params(self) -> set[str]:
        """None, as DSPy's ``DummyLM``: adapters add no provider options for it."""
        return set()

    def _pick(self, messages: list[Any]) -> Any:
        if self.follow_examples and messages:
            last = messages[-1].get("content")
            for i in range(len(messages) - 2, -1, -1):
                message = messages[i]
                if (
                    message.get("role") == "user"
                    and message.get("content") == last
                    and i + 1 < len(messages) - 1
                    and messages[i + 1].get("role") == "assistant"
                ):
                    return messages[i + 1]["content"]
        answer = super()._pick(messages)
        writer = getattr(self.adapter, "format_answer", None)
        if writer is not None and isinstance(answer, Mapping):  # written in the format of the adapter given
            return writer(answer)
        return answer
