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


async def gather_resubmitting(
    jobs: Sequence[Callable[[], Awaitable[T]]],
    concurrency: int,
    *,
    timeout: float,
    straggler_limit: int,
    return_exceptions: bool = False,
) -> list[T | BaseException]:
    """:func:`gather_bounded` with DSPy's rule for stragglers: a slow job is started once more.

    Once at most ``straggler_limit`` jobs are unfinished, a job that has been running for
    ``timeout`` seconds gets a second attempt (once; it does not wait for a slot); whichever
    attempt finishes first is the job's result, and the other is cancelled. Each job is a
    factory, called again for the second attempt.
    """
    import asyncio

    _check(concurrency)
    loop = asyncio.get_running_loop()
    sem = asyncio.Semaphore(concurrency)
    started: dict[int, float] = {}
    outcomes: dict[int, tuple[Any, BaseException | None]] = {}

    async def first(index: int) -> T:
        async with sem:
            started[index] = loop.time()
            return await jobs[index]()

    tries: dict[asyncio.Future[T], int] = {asyncio.ensure_future(first(i)): i for i in range(len(jobs))}
    again: set[int] = set()
    try:
        while len(outcomes) < len(jobs):
            done, _ = await asyncio.wait(tries, timeout=min(1.0, timeout / 4), return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                index = tries.pop(task)
                if index in outcomes or task.cancelled():
                    continue
                error = task.exception()
                if error is not None and not return_exceptions:
                    raise error
                outcomes[index] = (None if error is not None else task.result(), error)
                for other, other_index in list(tries.items()):  # the slower attempt of the same job
                    if other_index == index:
                        other.cancel()
            unfinished = [i for i in range(len(jobs)) if i not in outcomes]
            if len(unfinished) <= straggler_limit:
                now = loop.time()
                for index in unfinished:
                    if index in started and index not in again and now - started[index] >= timeout:
                        again.add(index)
                        tries[asyncio.ensure_future(jobs[index]())] = index
        return [error if error is not None else value for value, error in (outcomes[i] for i in range(len(jobs)))]
    finally:
        for task in tries:
            task.cancel()
        await asyncio.gather(*tries, return_exceptions=True)


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
