"""``dspy.utils.dummies``: DSPy's ``DummyLM``, ElixirML's scripted LM with DSPy's arguments."""

from __future__ import annotations

import collections
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ...lm import DummyLM as _EmDummyLM
from ..clients.base_lm import DSPyLMMixin

__all__ = ["DummyLM"]

#: DSPy's answer once the script is used up.
NO_MORE_RESPONSES = "No more responses"

#: A field's header at the start of a message, as DSPy's chat format writes it.
_FIELD_HEADER = re.compile(r"\[\[ ## (\w+) ## \]\]")


def _follow_example(messages: list[Any]) -> str | None:
    """The answer of the demo whose input the last message repeats, as DSPy's ``DummyLM`` finds it.

    The output headers are those that open fewer messages than the most common header (the
    inputs open every user turn); walking back, the first turn that holds such a header and
    follows a turn containing the last message's first paragraph is the answer.
    """
    contents = [m.get("content") if isinstance(m.get("content"), str) else "" for m in messages]
    counts = collections.Counter(found.group(0) for c in contents if (found := _FIELD_HEADER.match(c)))
    if not counts:
        return None
    most = max(counts.values())
    outputs = [header for header, count in counts.items() if count != most]
    final_input = contents[-1].split("\n\n")[0]
    for i in range(len(contents) - 2, -1, -1):
        if any(header in contents[i + 1] for header in outputs) and final_input in contents[i]:
            return contents[i + 1]
    return None


class DummyLM(DSPyLMMixin, _EmDummyLM):
    """DSPy's ``DummyLM(answers, follow_examples=False, adapter=None)``.

    Args:
        answers: a list of answers (dicts of output values, or raw completion strings) used in
            order, or a mapping from text found in the request to its answer. As in DSPy, a used-up
            list answers ``{"answer": "No more responses"}`` and a mapping without a match
            ``"No more responses"`` (``default=`` sets another).
        follow_examples: answer with a demo's output when the request's inputs equal that demo's.
        adapter: accepted for DSPy's signature; answers are written in the format of the
            adapter that sent the request (the markers of its prompt, or JSON when it asked).
        **kwargs: passed to :class:`elixirml.DummyLM`.

    As DSPy's, ``n > 1`` completions take the next ``n`` answers of a list.
    """

    def __init__(
        self,
        answers: Sequence[Any] | Mapping[str, Any],
        follow_examples: bool = False,
        adapter: Any = None,
        **kwargs: Any,
    ) -> None:
        # as DSPy's: no error when the script is used up (or no key matches), a fixed answer instead
        kwargs.setdefault(
            "default", NO_MORE_RESPONSES if isinstance(answers, Mapping) else {"answer": NO_MORE_RESPONSES}
        )
        kwargs.setdefault("advance_per_completion", True)
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
            followed = _follow_example(messages)
            if followed is not None:
                return followed
        answer = super()._pick(messages)
        writer = getattr(self.adapter, "format_answer", None)
        if writer is not None and isinstance(answer, Mapping):  # written in the format of the adapter given
            return writer(answer)
        return answer
