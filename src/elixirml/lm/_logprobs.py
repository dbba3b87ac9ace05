"""Scoring continuations from the per-token log-probabilities of a generated answer.

Chat-completions servers (OpenAI, vLLM, llama.cpp's server) cannot be asked for the
probability of a given text, but they return, for each generated token, its log-probability
and the ``top_logprobs`` alternatives. :func:`score_continuations` reads the scores of the
allowed values off one greedy answer: it finds where the answer wrote the adapter's prefix
(``[[ ## sentiment ## ]]``, ``sentiment:``, ...), then follows each continuation along the
greedy tokens while they agree with it and takes the alternative's log-probability where it
branches off. A continuation the answer matches exactly gets its exact log-probability; one
that branches off gets the log-probability of the branching token (later tokens of a rare
branch are not visible); one absent from the listed alternatives gets the smallest listed
log-probability, an upper bound on its true one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ..errors import ProviderResponseError

_SPACE = re.compile(r"\s+")


def _squash(text: str) -> str:
    return _SPACE.sub("", text).lower()


def value_start(tokens: Sequence[dict[str, Any]], prefix: str) -> int | None:
    """Index of the first token after ``prefix`` (compared without whitespace or case), or None."""
    target = _squash(prefix)
    if not target:
        return 0
    written = ""
    for i, token in enumerate(tokens):
        written += _squash(str(token.get("token", "")))
        if target in written:
            return i + 1
    return None


def _branch_logprob(alternatives: Sequence[dict[str, Any]], remaining: str, first: bool) -> float | None:
    """The log-probability of the longest listed token that starts ``remaining``."""
    best: tuple[int, float] | None = None
    for alt in alternatives:
        text = str(alt.get("token", ""))
        if first:
            text = text.lstrip()
        if text and remaining.startswith(text) and (best is None or len(text) > best[0]):
            best = (len(text), float(alt["logprob"]))
    return None if best is None else best[1]


def score_continuations(tokens: Sequence[dict[str, Any]], prefix: str, continuations: Sequence[str]) -> list[float]:
    """Log-probability of each continuation, read off one answer's token log-probabilities.

    ``tokens`` is the ``logprobs.content`` list of a chat completion: ``{"token", "logprob",
    "top_logprobs": [{"token", "logprob"}, ...]}`` per generated token.
    """
    start = value_start(tokens, prefix)
    if start is None:
        raise ProviderResponseError(
            f"cannot score: the answer never wrote the prefix {prefix.strip()!r}, so the position of the value "
            "is unknown; use decoding='generate' with this model, or another adapter"
        )
    while start < len(tokens) and not str(tokens[start].get("token", "")).strip():
        start += 1  # line breaks and spaces between the prefix and the value
    if start >= len(tokens):
        raise ProviderResponseError("cannot score: the answer ended right after the prefix; raise max_tokens")
    scores = []
    for continuation in continuations:
        remaining = continuation.strip()
        total = 0.0
        position = start
        while remaining and position < len(tokens):
            token = tokens[position]
            text = str(token.get("token", ""))
            text = text.lstrip() if position == start else text
            if text and remaining.startswith(text):
                total += float(token["logprob"])
                remaining = remaining[len(text) :]
                position += 1
                continue
            alternatives = token.get("top_logprobs") or []
            branch = _branch_logprob(alternatives, remaining, position == start)
            if branch is None:
                listed = [float(a["logprob"]) for a in alternatives] + [float(token["logprob"])]
                branch = min(listed)
            total += branch
            break
        scores.append(total)
    return scores
