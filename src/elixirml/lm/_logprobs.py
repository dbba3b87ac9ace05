"""Scoring continuations from the per-token log-probabilities of a generated answer.

Chat-completions servers (OpenAI, vLLM, llama.cpp's server) cannot be asked for the
probability of a given text, but they return, for each generated token, its log-probability
and the ``top_logprobs`` alternatives. :func:`score_continuations` reads the scores of the
allowed values off one greedy answer: it finds where the answer wrote the adapter's prefix
(``[[ ## sentiment ## ]]``, ``sentiment:``, ...) or, when the answer never wrote it ("The
sentence is positive."), the first token that starts one of the values; then it follows each
continuation along the greedy tokens while they agree with it and takes the alternative's
log-probability where it branches off. Tokens and values are compared without case. A
continuation the answer matches exactly gets its exact log-probability; one that branches off
gets the log-probability of the branching token (later tokens of a rare branch are not
visible); one absent from the listed alternatives gets the smallest listed log-probability, an
upper bound on its true one.
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


def _token_text(token: dict[str, Any], first: bool) -> str:
    text = str(token.get("token", "")).lower()
    return text.lstrip() if first else text


def _starts_a_value(text: str, continuations: Sequence[str]) -> bool:
    return bool(text) and any(c.strip().lower().startswith(text) for c in continuations)


def _first_value_token(tokens: Sequence[dict[str, Any]], continuations: Sequence[str]) -> int | None:
    """Where an answer without the prefix gives its value: the greedy token, else a listed one, starts a value."""
    for i, token in enumerate(tokens):
        if _starts_a_value(_token_text(token, True), continuations):
            return i
    for i, token in enumerate(tokens):
        if any(_starts_a_value(_token_text(alt, True), continuations) for alt in token.get("top_logprobs") or []):
            return i
    return None


def _branch_logprob(alternatives: Sequence[dict[str, Any]], remaining: str, first: bool) -> float | None:
    """The log-probability of the longest listed token that starts ``remaining``."""
    best: tuple[int, float] | None = None
    for alt in alternatives:
        text, logprob = _token_text(alt, first), float(alt["logprob"])
        if text and remaining.startswith(text) and (best is None or (len(text), logprob) > best):
            best = (len(text), logprob)
    return None if best is None else best[1]


def score_continuations(tokens: Sequence[dict[str, Any]], prefix: str, continuations: Sequence[str]) -> list[float]:
    """Log-probability of each continuation, read off one answer's token log-probabilities.

    ``tokens`` is the ``logprobs.content`` list of a chat completion: ``{"token", "logprob",
    "top_logprobs": [{"token", "logprob"}, ...]}`` per generated token.
    """
    start = value_start(tokens, prefix)
    if start is not None:
        while start < len(tokens) and not str(tokens[start].get("token", "")).strip():
            start += 1  # line breaks and spaces between the prefix and the value
    else:
        start = _first_value_token(tokens, continuations)
        if start is None:
            raise ProviderResponseError(
                f"cannot score: the answer neither wrote the prefix {prefix.strip()!r} nor started any of the "
                "values, so their position is unknown; use decoding='generate' with this model, or another adapter"
            )
    if start >= len(tokens):
        raise ProviderResponseError("cannot score: the answer ended right after the prefix; raise max_tokens")
    scores = []
    for continuation in continuations:
        remaining = continuation.strip().lower()
        total = 0.0
        position = start
        while remaining and position < len(tokens):
            token = tokens[position]
            text = _token_text(token, position == start)
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
