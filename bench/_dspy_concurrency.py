"""DSPy side of bench/concurrency.py: Evaluate(num_threads=256) over N examples. Prints JSON."""

import json
import sys
import time

import dspy

url, n, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
lm = dspy.LM("openai/fake", api_base=url, api_key="not-a-key", cache=False, num_retries=0, max_tokens=64)
dspy.configure(lm=lm)
program = dspy.Predict("question -> answer")
devset = [dspy.Example(question=f"question {i}", answer="x").with_inputs("question") for i in range(n)]
evaluate = dspy.Evaluate(
    devset=devset,
    metric=lambda ex, pred, trace=None: ex.answer == pred.answer,
    num_threads=threads,
    display_progress=False,
)
start = time.perf_counter()
result = evaluate(program)
elapsed = time.perf_counter() - start
print(json.dumps({"seconds": elapsed, "score": float(result.score), "version": dspy.__version__}))
