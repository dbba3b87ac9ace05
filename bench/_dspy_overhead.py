"""DSPy side of bench/overhead.py; runs inside bench/.venv-dspy. Prints JSON."""

import asyncio
import json
import sys
import time

import dspy
from dspy.utils.dummies import DummyLM

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1000


def per_call(module_cls, answer, repeats=5):
    lm = DummyLM([answer] * (N * repeats + 50))
    dspy.configure(lm=lm)
    module = module_cls("question -> answer")
    for i in range(50):
        module(question=f"warm {i}")
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(N):
            module(question=f"question {i}")
        best = min(best, (time.perf_counter() - start) / N)
    return best


def per_acall(module_cls, answer, repeats=5):
    """The async path: ``await module.acall(...)`` inside a running event loop."""
    lm = DummyLM([answer] * (N * repeats + 50))
    dspy.configure(lm=lm)
    module = module_cls("question -> answer")

    async def main():
        for i in range(50):
            await module.acall(question=f"warm {i}")
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            for i in range(N):
                await module.acall(question=f"question {i}")
            best = min(best, (time.perf_counter() - start) / N)
        return best

    return asyncio.run(main())


result = {
    "version": dspy.__version__,
    "predict_s": per_call(dspy.Predict, {"answer": "x"}),
    "cot_s": per_call(dspy.ChainOfThought, {"reasoning": "r", "answer": "x"}),
    "predict_async_s": per_acall(dspy.Predict, {"answer": "x"}),
    "cot_async_s": per_acall(dspy.ChainOfThought, {"reasoning": "r", "answer": "x"}),
}
print(json.dumps(result))
