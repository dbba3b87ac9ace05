import time

start = time.perf_counter()
import dspy  # noqa: E402,F401

print(time.perf_counter() - start)
