"""Running a module over many inputs: the one runner behind ``Module.batch`` and ``Parallel``.

Failures stop the run (the first is raised) unless tolerated (``max_errors``,
``return_failed_examples``, ``return_exceptions``); a tolerated failure is logged, with its
traceback when ``provide_traceback`` is set. ``timeout`` alone is a hard limit per input; with
``straggler_limit`` it is DSPy's straggler rule instead (a slow input is started once more).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from .._log import logger
from ..errors import BatchError, ConfigurationError
from ..runtime import gather_bounded, gather_resubmitting


async def run_batch(
    label: str,
    calls: Sequence[Callable[[], Awaitable[Any]]],
    items: Sequence[Any],
    *,
    concurrency: int,
    return_exceptions: bool = False,
    max_errors: int | None = None,
    return_failed_examples: bool = False,
    timeout: float | None = None,
    straggler_limit: int | None = None,
    provide_traceback: bool | None = None,
) -> Any:
    """Run ``calls`` (one per item of ``items``) at most ``concurrency`` at once; results in input order.

    Args:
        label: names the run in errors and logs (``"Predict.batch"``, ``"Parallel"``).
        calls: one factory per input, each starting that input's run (called again for a
            straggler's second attempt).
        items: the inputs, as given (returned as the failed examples).
        concurrency: inputs in flight at once.
        return_exceptions: a failure's exception takes its place in the results.
        max_errors: tolerate up to this many failures (their results are ``None``); one more
            raises :class:`~elixirml.errors.BatchError` with the first failure as its cause.
        return_failed_examples: return ``(results, failed_items, exceptions)``; failures are
            tolerated (up to ``max_errors`` when it is given).
        timeout: seconds an input may take (None or 0: no limit). Alone, a slower input fails
            with ``TimeoutError``; with ``straggler_limit``, see below.
        straggler_limit: DSPy's straggler rule: once at most this many inputs are unfinished, one
            running for ``timeout`` seconds is started once more and the first attempt to finish
            counts.
        provide_traceback: log a tolerated failure with its traceback (else one line).
    """
    if max_errors is not None and (isinstance(max_errors, bool) or max_errors < 0):
        raise ConfigurationError(f"{label}(max_errors=...) takes an int >= 0 or None, got {max_errors!r}")
    limit = timeout if timeout is not None and timeout > 0 else None  # DSPy's timeout=0 turns the limit off
    tolerate = max_errors is not None or return_failed_examples
    gather_exceptions = return_exceptions or tolerate
    if limit is not None and straggler_limit is not None:
        outcomes = await gather_resubmitting(
            calls, concurrency, timeout=limit, straggler_limit=straggler_limit, return_exceptions=gather_exceptions
        )
    else:
        jobs = calls if limit is None else [_limited(call, limit) for call in calls]
        outcomes = await gather_bounded(jobs, concurrency, return_exceptions=gather_exceptions)
    if not tolerate:
        return outcomes
    failed = [(i, item, out) for i, (item, out) in enumerate(zip(items, outcomes)) if isinstance(out, Exception)]
    for index, _, error in failed:
        if provide_traceback:
            logger().error("%s: input %d failed: %s: %s", label, index, type(error).__name__, error, exc_info=error)
        else:
            logger().error(
                "%s: input %d failed: %s: %s (provide_traceback=True logs the traceback)",
                label,
                index,
                type(error).__name__,
                error,
            )
    if max_errors is not None and len(failed) > max_errors:
        first = failed[0][2]
        raise BatchError(
            f"{label}: {len(failed)} of {len(outcomes)} inputs failed, more than max_errors={max_errors}; the "
            f"first: {type(first).__name__}: {first}. Fix the failing inputs or raise max_errors."
        ) from first
    results = [None if isinstance(out, Exception) and not return_exceptions else out for out in outcomes]
    if return_failed_examples:
        return results, [item for _, item, _ in failed], [error for _, _, error in failed]
    return results


def _limited(call: Callable[[], Awaitable[Any]], seconds: float) -> Callable[[], Awaitable[Any]]:
    async def run() -> Any:
        import asyncio  # loaded by the first call, not by `import elixirml`

        return await asyncio.wait_for(call(), seconds)

    return run
