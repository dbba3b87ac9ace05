"""Retrieval-augmented question answering on a SQuAD article, on the embedded model.

    python examples/rag.py [path/to/squad.json] [--questions N] [--dense]

Without a file it reads the SQuAD article bundled with the package (``em.data.squad()``).

``Retrieve -> ChainOfThought("context, question -> answer")``: BM25 (or, with ``--dense``,
embeddings from the embedded model) finds the paragraphs, the embedded SmolLM2 model answers.
The number of passages ``k`` and the strategy (direct or chain of thought) are Variables, so
``em.optimizers.MIPRO`` searches them (see bench/rag.py).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import elixirml as em


class RAG(em.Program):
    """Answer a question from the passages a retriever finds."""

    strategy = em.Variable.module({"direct": em.Predict, "cot": em.ChainOfThought}, default="cot")

    def __init__(self, retriever: em.retrievers.Retriever, k: int = 3) -> None:
        super().__init__()
        # k up to 5: five SQuAD paragraphs still fit the embedded model's 2048-token context
        self.retrieve = em.Retrieve(k=em.Variable.int(k, low=1, high=5), retriever=retriever)
        self.answer = self.strategy("context, question -> answer")

    def forward(self, question: str) -> em.Prediction:
        passages = self.retrieve(query=question).passages
        return self.answer(context="\n\n".join(passages), question=question)


def main(argv: Sequence[str] | None = None, lm: em.LM | None = None) -> None:
    """Answer the first questions of the file; ``lm`` replaces the embedded model."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", nargs="?", default=None, help="a SQuAD v1.1 JSON file (default: the bundled one)")
    parser.add_argument("--questions", type=int, default=5)
    parser.add_argument("--dense", action="store_true", help="retrieve with embeddings instead of BM25")
    args = parser.parse_args(argv)

    passages, questions = em.data.squad(args.data)
    if args.dense:
        retriever: em.retrievers.Retriever = em.retrievers.Embeddings(passages, em.Embedder("local"))
    else:
        retriever = em.retrievers.BM25(passages)
    em.configure(lm=lm or em.LM("local", temperature=0.0, max_tokens=256))
    program = RAG(retriever)
    f1 = em.metrics.F1(field="answers", pred_field="answer")
    for example in questions.to_list()[: args.questions]:
        found = program.retrieve(query=example.question).documents
        prediction = program(question=example.question)
        print(f"Q: {example.question}")
        print(f"   retrieved {[p.id for p in found]} (gold {example.passage_id})")
        print(f"   answer {prediction.answer!r}  gold {example.answers}  F1 {f1(example, prediction):.2f}")
    print(program.variable_space())


if __name__ == "__main__":
    main()
