"""DSPy side of bench/overhead.py; runs inside bench/.venv-dspy. Prints JSON."""

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


result = {
    "version": dspy.__version__,
    "predict_s": per_call(dspy.Predict, {"answer": "x"}),
    "cot_s": per_call(dspy.ChainOfThought, {"reasoning": "r", "answer": "x"}),
}
print(json.dumps(result))
