"""``em.distributed.run``: a program's predictions for a whole dataset, computed on an executor."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..runtime import ProgramSpec, ProgressDisplay, call_program, resolve_executor, run_sync, stream_bounded
from ..schema import Example


async def arun(
    program: Any,
    dataset: Iterable[Example | Mapping[str, Any]],
    *,
    executor: Any = "ray",
    concurrency: int = 16,
    display_progress: bool | None = None,
) -> list[Any]:
    """Async form of :func:`run`."""
    items = list(enumerate(dataset))
    runner = resolve_executor(executor)
    if runner is None:
        jobs = [(lambda index=index, item=item: call_program(program, index, item)) for index, item in items]
        finished = stream_bounded(jobs, concurrency)
    else:
        finished = runner.stream(ProgramSpec.of(program), call_program, items, concurrency=concurrency)
    where = "here" if runner is None else f"on {type(runner).__name__}"
    progress = ProgressDisplay("distributed run", display_progress, total=len(items), unit="examples", label="running")
    progress.note(f"distributed run: {len(items)} examples to run {where}")
    results: dict[int, Any] = {}
    try:
        async for index, prediction in finished:
            results[index] = prediction
            progress.update(len(results))
    finally:
        progress.close()
        progress.note(
            f"distributed run: {'done' if len(results) == len(items) else 'stopped'} in {progress.elapsed():.0f}s: "
            f"{len(results)} of {len(items)} examples"
        )
    return [results[index] for index, _ in items]


def run(
    program: Any,
    dataset: Iterable[Example | Mapping[str, Any]],
    *,
    executor: Any = "ray",
    concurrency: int = 16,
    display_progress: bool | None = None,
) -> list[Any]:
    """Run ``program`` on every example of ``dataset`` on ``executor``; predictions in input order.

    Args:
        program: a Module whose class is importable on the workers (its state travels as JSON).
        dataset: examples (their inputs are passed) or dicts of inputs.
        executor: ``"ray"`` (a default :class:`~elixirml.RayExecutor`), an executor object, or
            ``"local"`` (asyncio tasks in this process).
        concurrency: items in flight at once, over all workers.
        display_progress: ``None`` (the default): a bar on a terminal, else plain lines on stderr
            (the count to run first, then at most one per 10% or 30 s, and the end); ``True``: the
            bar; ``False``: nothing.

    Returns:
        One prediction per example, in the dataset's order. The first program error raises.

    Raises:
        LoadError: a worker cannot import the program's module.
        DistributedError: workers kept dying.
    """
    return run_sync(
        arun(program, dataset, executor=executor, concurrency=concurrency, display_progress=display_progress)
    )
