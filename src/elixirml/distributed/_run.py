"""``em.distributed.run``: a program's predictions for a whole dataset, computed on an executor."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..runtime import ProgramSpec, call_program, gather_bounded, resolve_executor, run_sync
from ..schema import Example


async def arun(
    program: Any,
    dataset: Iterable[Example | Mapping[str, Any]],
    *,
    executor: Any = "ray",
    concurrency: int = 16,
) -> list[Any]:
    """Async form of :func:`run`."""
    items = list(enumerate(dataset))
    runner = resolve_executor(executor)
    if runner is None:
        jobs = [(lambda index=index, item=item: call_program(program, index, item)) for index, item in items]
        return await gather_bounded(jobs, concurrency)
    results: dict[int, Any] = {}
    async for index, prediction in runner.stream(ProgramSpec.of(program), call_program, items, concurrency=concurrency):
        results[index] = prediction
    return [results[index] for index, _ in items]


def run(
    program: Any,
    dataset: Iterable[Example | Mapping[str, Any]],
    *,
    executor: Any = "ray",
    concurrency: int = 16,
) -> list[Any]:
    """Run ``program`` on every example of ``dataset`` on ``executor``; predictions in input order.

    Args:
        program: a Module whose class is importable on the workers (its state travels as JSON).
        dataset: examples (their inputs are passed) or dicts of inputs.
        executor: ``"ray"`` (a default :class:`~elixirml.RayExecutor`), an executor object, or
            ``"local"`` (asyncio tasks in this process).
        concurrency: items in flight at once, over all workers.

    Returns:
        One prediction per example, in the dataset's order. The first program error raises.

    Raises:
        LoadError: a worker cannot import the program's module.
        DistributedError: workers kept dying.
    """
    return run_sync(arun(program, dataset, executor=executor, concurrency=concurrency))
