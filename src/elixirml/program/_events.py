"""Streaming: ``em.streamify(program)`` yields field chunks and status events, then the Prediction.

While a streamed run is in progress, predictors use the LM's streaming API and report each
piece of an output field as a :class:`FieldChunk`; modules and tools report
:class:`StatusEvent`. Nothing is collected when no stream is open.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any

from ..runtime import current_context, run_scope


@dataclasses.dataclass
class FieldChunk:
    """A piece of an output field, as the LM produced it.

    Attributes:
        predictor: the signature name of the predictor that is answering.
        field: the output field this text belongs to.
        text: the new text.
    """

    predictor: str
    field: str
    text: str


@dataclasses.dataclass
class StatusEvent:
    """Something happened: ``module_start``, ``module_end`` or ``tool_call``.

    Attributes:
        kind: the event kind.
        data: details (module name, tool name and arguments, ...).
    """

    kind: str
    data: dict[str, Any]


def streaming() -> bool:
    """Whether a streamed run is in progress here."""
    return current_context().stream is not None


def emit(kind: str, **data: Any) -> None:
    """Report a status event to the open stream, if any."""
    queue = current_context().stream
    if queue is not None:
        queue.put_nowait(StatusEvent(kind, data))


def emit_chunk(predictor: str, field: str, text: str) -> None:
    """Report a field chunk to the open stream, if any."""
    queue = current_context().stream
    if queue is not None and text:
        queue.put_nowait(FieldChunk(predictor, field, text))


def streamify(program: Any) -> Callable[..., AsyncIterator[Any]]:
    """Wrap a module so that calling it streams.

    ``await``-free use::

        stream = em.streamify(program)
        async for event in stream(question="..."):
            ...  # FieldChunk / StatusEvent objects, then the final Prediction

    Errors of the program are raised by the iterator after the events that came before.
    """

    async def run(**inputs: Any) -> AsyncIterator[Any]:
        import asyncio

        queue: asyncio.Queue[Any] = asyncio.Queue()
        with run_scope(stream=queue):
            task = asyncio.ensure_future(program.acall(**inputs))  # the task copies the context
        try:
            while True:
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    yield getter.result()
                    continue
                getter.cancel()
                while not queue.empty():
                    yield queue.get_nowait()
                break
            yield task.result()
        finally:
            if not task.done():
                task.cancel()

    return run
