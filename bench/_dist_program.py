"""The programs bench/distributed.py runs (importable by the Ray workers: the bench puts this folder on their path)."""

from __future__ import annotations

from typing import Any

import elixirml as em


class Answer(em.Program):
    def __init__(self) -> None:
        super().__init__()
        self.answer = em.Predict("question -> answer")

    def forward(self, question: str) -> Any:
        return self.answer(question=question)


class Sentiment(em.Program):
    def __init__(self) -> None:
        super().__init__()
        self.classify = em.Predict("sentence -> sentiment: bool")

    def forward(self, sentence: str) -> Any:
        return self.classify(sentence=sentence)


def local_lm() -> em.LM:
    return em.LM("local", n_threads=1, cache=False)
