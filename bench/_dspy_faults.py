"""DSPy side of bench/faults.py: Evaluate over N examples against the fault server. Prints JSON.

Usage: python _dspy_faults.py URL N THREADS TIMEOUT OUTAGE_SECONDS
"""

import json
import sys
import time
import urllib.request

import dspy

url, n, threads, timeout, outage = (
    sys.argv[1],
    int(sys.argv[2]),
    int(sys.argv[3]),
    float(sys.argv[4]),
    float(sys.argv[5]),
)


def value(i):
    return "-".join([str(i)] * 6)


lm = dspy.LM("openai/fake", api_base=url, api_key="not-a-key", cache=False, max_tokens=64, timeout=timeout)
dspy.configure(lm=lm)
program = dspy.Predict("question -> answer")
devset = [dspy.Example(question=f"question {i}", answer=value(i)).with_inputs("question") for i in range(n)]
evaluate = dspy.Evaluate(
    devset=devset,
    metric=lambda ex, pred, trace=None: ex.answer == pred.answer,
    num_threads=threads,
    display_progress=False,
    max_errors=n + 1,  # run to the end, as ElixirML does, instead of stopping at DSPy's default of 10
)
start = time.perf_counter()
if outage:
    root = url.removesuffix("/v1")
    urllib.request.urlopen(urllib.request.Request(f"{root}/_control/outage?seconds={outage}", method="POST")).read()
result = evaluate(program)
elapsed = time.perf_counter() - start
returned = sum(1 for _, prediction, _ in result.results if getattr(prediction, "answer", None) is not None)
print(
    json.dumps(
        {
            "returned": returned,
            "score": float(result.score),
            "seconds": elapsed,
            "errors": [],
            "version": dspy.__version__,
        }
    )
)
