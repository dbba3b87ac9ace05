"""Bounded concurrency over many coroutines: in order, or as they finish."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

from ..errors import ConfigurationError

T = TypeVar("T")


def _check(concurrency: int) -> None:
    if concurrency < 1:
        raise ConfigurationError(f"concurrency must be >= 1, got {concurrency}")


async def gather_bounded(
    jobs: Sequence[Callable[[], Awaitable[T]]], concurrency: int, *, return_exceptions: bool = False
) -> list[T | BaseException]:
    """Run ``jobs`` with at most ``concurrency`` at once; results keep the input order.

    With ``return_exceptions`` a failed job's exception takes its place in the results;
    otherwise the first failure cancels the rest and is raised.
    """
    import asyncio

    _check(concurrency)
    sem = asyncio.Semaphore(concurrency)

    async def one(job: Callable[[], Awaitable[T]]) -> T | BaseException:
        async with sem:
            if not return_exceptions:
                return await job()
            try:
                return await job()
            except Exception as exc:
                return exc

    tasks = [asyncio.ensure_future(one(job)) for job in jobs]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def stream_bounded(
    jobs: Sequence[Callable[[], Awaitable[T]]], concurrency: int, *, return_exceptions: bool = False
) -> AsyncGenerator[tuple[int, T | BaseException], None]:
    """Run ``jobs`` with at most ``concurrency`` at once; yield ``(index, result)`` as each finishes."""
    import asyncio

    _check(concurrency)
    queue: asyncio.Queue[tuple[int, Any, BaseException | None]] = asyncio.Queue()
    sem = asyncio.Semaphore(concurrency)

    async def one(index: int, job: Callable[[], Awaitable[T]]) -> None:
        async with sem:
            try:
                queue.put_nowait((index, await job(), None))
            except Exception as exc:
                queue.put_nowait((index, None, exc))
            except BaseException as exc:  # a control-flow signal or a cancellation: never a result
                queue.put_nowait((index, None, exc))
                raise

    tasks = [asyncio.ensure_future(one(i, job)) for i, job in enumerate(jobs)]
    try:
        for _ in range(len(tasks)):
            index, result, error = await queue.get()
            if error is not None:
                if not return_exceptions or not isinstance(error, Exception):
                    raise error
                yield index, error
            else:
                yield index, result
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
