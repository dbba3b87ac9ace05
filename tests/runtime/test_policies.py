"""Request policies of the runtime layer."""

from __future__ import annotations

import asyncio
import gc

from elixirml.runtime import ConcurrencyLimiter


def test_a_concurrency_limiter_lets_closed_event_loops_go():
    """A semaphore that was waited on holds its loop: the limiter must not keep every loop it ever saw."""
    limiter = ConcurrencyLimiter(1)

    async def one():
        async with limiter.semaphore():
            await asyncio.sleep(0.001)

    async def contended():
        await asyncio.gather(one(), one(), one())

    for _ in range(5):
        asyncio.run(contended())  # each run is a new loop, closed at its end
    gc.collect()
    assert len(limiter._semaphores) <= 1  # at most the last loop's entry stays until the next loop comes
