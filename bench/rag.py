"""Retrieval and RAG on the two SQuAD v1.1 subsets in ``shared/data/squad``, on the embedded model.

1. Retrieval: recall@1/3/5 (the question's own paragraph among the top k) of BM25 and of
   dense retrieval with ``em.Embedder("local")`` (SmolLM2-135M mean-pooled through llama.cpp),
   on every question of both subsets (810 + 269), with the time to index and to search.
2. Answers: ``Retrieve -> ChainOfThought("context, question -> answer")`` (examples/rag.py) with
   BM25 on the Notre Dame subset: token F1 and exact match on held-out questions, before and
   after MIPRO light, which searches ``retrieve.k`` (1-5), the strategy (direct or chain of
   thought), the prompt format, instructions and demos.

The embedded model answers about one question every few seconds on two shared CPU cores, so
part 2 runs on a subsample, fixed by seed 0: the questions are shuffled with
``random.Random(0)``, the first ``--train`` are the training set, the next ``--val`` the
validation set, the next ``--test`` the held-out set; MIPRO runs ``--trials`` trials with
minibatches of the whole validation set. Every LM call is really made (a fresh cache).

Usage: python bench/rag.py [--part retrieval|answers|both] [--train 10 --val 10 --test 20 --trials 6]
(writes bench/results/rag.json; run it under ``flock /tmp/elixirml-heavy.lock``).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import elixirml as em

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1] / "shared" / "data" / "squad"
OUT = HERE / "results" / "rag.json"
SUBSETS = {"dev (Super_Bowl_50)": "dev-subset.json", "train (University_of_Notre_Dame)": "train-subset.json"}

sys.path.insert(0, str(HERE.parent / "examples"))
from rag import RAG  # noqa: E402  (the example's program, exactly)


def recall(retriever: em.retrievers.Retriever, questions: list[em.Example], ks: tuple[int, ...]) -> dict[str, float]:
    hits = dict.fromkeys(ks, 0)
    for example in questions:
        found = [p.id for p in retriever.search(example.question, k=max(ks))]
        for k in ks:
            hits[k] += example.passage_id in found[:k]
    return {f"recall@{k}": round(100 * hits[k] / len(questions), 1) for k in ks}


def retrieval_part(cache_dir: Path) -> dict[str, dict[str, object]]:
    embedder = em.Embedder("local", cache=cache_dir / "embeddings.sqlite")
    results: dict[str, dict[str, object]] = {}
    for name, file in SUBSETS.items():
        passages, dataset = em.data.squad(DATA / file)
        questions = dataset.to_list()
        for label in ("bm25", "embeddings (local SmolLM2, mean-pooled)"):
            start = time.perf_counter()
            retriever: em.retrievers.Retriever
            if label == "bm25":
                retriever = em.retrievers.BM25(passages)
            else:
                retriever = em.retrievers.Embeddings(passages, embedder)
            indexed = time.perf_counter() - start
            start = time.perf_counter()
            scores = recall(retriever, questions, (1, 3, 5))
            searched = time.perf_counter() - start
            row = {
                **scores,
                "passages": len(passages),
                "questions": len(questions),
                "index_seconds": round(indexed, 2),
                "search_ms_per_query": round(1000 * searched / len(questions), 2),
            }
            results[f"{name}: {label}"] = row
            print(f"{name:<34} {label:<40} {row}", flush=True)
    return results


def answers_part(args: argparse.Namespace, cache_dir: Path) -> dict[str, object]:
    passages, dataset = em.data.squad(DATA / SUBSETS["train (University_of_Notre_Dame)"])
    rows = dataset.to_list()
    random.Random(0).shuffle(rows)
    train = rows[: args.train]
    val = rows[args.train : args.train + args.val]
    test = rows[args.train + args.val : args.train + args.val + args.test]
    em.configure(
        lm=em.LM("local", temperature=0.0, max_tokens=192, cache=cache_dir / "lm.sqlite"),
        store=f"sqlite:///{cache_dir / 'store.db'}",
    )
    retriever = em.retrievers.BM25(passages)
    f1 = em.metrics.F1(field="answers", pred_field="answer")
    exact = em.metrics.ExactMatch(field="answers", pred_field="answer")
    results: dict[str, object] = {
        "split": {"train": len(train), "val": len(val), "test": len(test), "seed": 0, "questions_total": len(rows)}
    }

    def held_out(name: str, program: em.Module, extra: dict[str, object]) -> None:
        start = time.perf_counter()
        with em.track_usage() as usage:
            by_f1 = em.evaluate(program, test, f1, concurrency=1, display_progress=False)
            by_em = em.evaluate(program, test, exact, concurrency=1, display_progress=False)  # cached: no new calls
        results[name] = {
            "test_f1": round(by_f1.score, 1),
            "test_exact_match": round(by_em.score, 1),
            "test_errors": by_f1.errors,
            "test_error_kinds": dict(Counter(type(r.error).__name__ for r in by_f1.results if r.error is not None)),
            "test_lm_calls": usage.calls,
            "test_seconds": round(time.perf_counter() - start, 1),
            **extra,
        }
        print(f"{name:<28} {results[name]}", flush=True)

    held_out("before (k=3, cot)", RAG(retriever), {})
    mipro = em.optimizers.MIPRO(
        f1, auto="light", num_trials=args.trials, minibatch_size=len(val), seed=0, concurrency=1
    )
    start = time.perf_counter()
    best = mipro.compile(RAG(retriever), trainset=train, valset=val)
    seconds = time.perf_counter() - start
    result = mipro.last_result
    chosen = {k: (v if not k.endswith("demos") else f"{len(v)} demos") for k, v in result.best_configuration.items()}
    held_out(
        "after MIPRO light",
        best,
        {
            "val_f1": round(result.best_score, 1),
            "chosen": chosen,
            "trials": len(result.trials),
            "optimize_seconds": round(seconds, 1),
            "optimize_lm_calls": result.lm_calls,
            "inert_variables": result.inert_variables,
        },
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["retrieval", "answers", "both"], default="both")
    parser.add_argument("--train", type=int, default=10)
    parser.add_argument("--val", type=int, default=10)
    parser.add_argument("--test", type=int, default=20)
    parser.add_argument("--trials", type=int, default=6)
    args = parser.parse_args()
    cache_dir = Path(tempfile.mkdtemp(prefix="rag-bench-"))
    existing = json.loads(OUT.read_text()) if OUT.exists() else {}
    start = time.perf_counter()
    if args.part in ("retrieval", "both"):
        existing["retrieval"] = retrieval_part(cache_dir)
        save(existing)
    if args.part in ("answers", "both"):
        existing["answers"] = answers_part(args, cache_dir)
    existing["seconds"] = round(time.perf_counter() - start, 1)
    save(existing)


def save(results: dict[str, object]) -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
