"""The main job (interim): a sentiment program on the embedded local model.

Classifies held-out SST-2 sentences zero-shot with the embedded SmolLM2 model and prints
accuracy, LM calls, tokens and time. The optimization steps arrive with the optimizer issue.
"""

from __future__ import annotations

import csv
import random
import time
from importlib import resources
from typing import Literal

import elixirml as em


class Sentiment(em.Signature):
    """Classify the sentiment of the sentence."""

    sentence: str = em.InputField()
    sentiment: Literal["positive", "negative"] = em.OutputField()


def main() -> None:
    path = resources.files("elixirml.data") / "files" / "sst2_dev.tsv"
    with path.open(encoding="utf-8") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))[1:]
    random.Random(0).shuffle(rows)
    test = rows[400:440]
    em.configure(lm=em.LM("local", temperature=0.0, cache=False))
    program = em.Predict(Sentiment)
    start = time.perf_counter()
    correct = 0
    with em.track_usage() as usage:
        for i, (text, label) in enumerate(test, 1):
            gold = "positive" if label == "1" else "negative"
            correct += program(sentence=text).sentiment == gold
            print(f"\r{i}/{len(test)} accuracy so far {correct / i:.0%}", end="", flush=True)
    print()
    print(f"zero-shot accuracy {correct / len(test):.1%} on {len(test)} held-out SST-2 sentences")
    print(f"LM calls {usage.calls}, tokens {usage.total_tokens}, time {time.perf_counter() - start:.1f}s")


if __name__ == "__main__":
    main()
