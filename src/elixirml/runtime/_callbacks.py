"""Callbacks: be told when modules, LM calls, adapters, tools, evaluations and optimizer trials run.

A :class:`Callback` has DSPy 3.4's ``BaseCallback`` method names and arguments
(``on_module_start(call_id, instance, inputs)``, ``on_module_end(call_id, outputs, exception)``,
...), plus ``on_trial_end`` for optimizers. Callbacks are registered with
``em.configure(callbacks=[...])`` or ``with em.context(callbacks=[...])``.

When no callback was ever configured, the hooks in the layers above cost one read of a
module-level flag (:data:`elixirml.settings.callbacks_configured`); only then are the settings
read. A callback that raises is logged once (per callback and method, with its traceback) and
never breaks the call it observes. Control-flow signals (an assertion's retry) are not errors:
an attempt ended by one is reported with ``outputs=None`` and ``exception=None``.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import itertools
import threading
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar

from .. import settings as _settings
from .._log import logger

__all__ = [
    "Callback",
    "CompletionTexts",
    "ControlFlowSignal",
    "active",
    "aobserve",
    "end",
    "instrument",
    "instrument_async",
    "notify",
    "observe",
    "start",
]

T = TypeVar("T")
P = ParamSpec("P")


class ControlFlowSignal(BaseException):
    """Base of signals that steer a run (an assertion's retry); never reported as an exception."""


class Callback:
    """Base class of callbacks: override the methods you need; the others do nothing.

    ``call_id`` pairs a ``*_start`` with its ``*_end``; ``instance`` is the object called (the
    module, LM, adapter, tool, the program evaluated, or the optimizer); ``inputs`` what it was
    called with, in DSPy's shapes: a module's ``{"args": (...), "kwargs": {...}}``, an LM's
    ``{"prompt": None, "messages": [...], "kwargs": {settings}}``, an adapter's format
    ``{"signature", "demos", "inputs"}`` and parse ``{"signature", "completion"}``, a tool's
    ``{"kwargs": {arguments}}``. ``exception`` is the error the call raised, else None.

    Calls nest: a module's start comes before the starts of the LM calls it makes, and its end
    after their ends. End methods of several callbacks run in reverse order of registration.
    """

    def on_module_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        """A module call starts (any Module, Predict included)."""

    def on_module_end(self, call_id: str, outputs: Any | None, exception: BaseException | None = None) -> None:
        """A module call ended with ``outputs`` (the Prediction) or ``exception``."""

    def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        """An LM request starts; ``inputs["kwargs"]`` holds its effective request settings."""

    def on_lm_end(self, call_id: str, outputs: Any | None, exception: BaseException | None = None) -> None:
        """An LM request ended.

        ``outputs`` is the list of completion texts, as in DSPy: a :class:`CompletionTexts`, whose
        ``response`` is the :class:`~elixirml.LMResponse` with usage and finish reasons.
        """

    def on_adapter_format_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        """An adapter starts building the messages of a call."""

    def on_adapter_format_end(
        self, call_id: str, outputs: dict[str, Any] | None, exception: BaseException | None = None
    ) -> None:
        """An adapter built the messages (``outputs`` is the message list)."""

    def on_adapter_parse_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        """An adapter starts parsing a completion."""

    def on_adapter_parse_end(
        self, call_id: str, outputs: dict[str, Any] | None, exception: BaseException | None = None
    ) -> None:
        """An adapter parsed a completion into output values (or raised)."""

    def on_tool_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        """A tool call starts."""

    def on_tool_end(self, call_id: str, outputs: dict[str, Any] | None, exception: BaseException | None = None) -> None:
        """A tool call ended with its result or error."""

    def on_evaluate_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        """An evaluation starts; ``instance`` is the program evaluated, ``inputs`` holds devset and metric."""

    def on_evaluate_end(self, call_id: str, outputs: Any | None, exception: BaseException | None = None) -> None:
        """An evaluation ended (``outputs`` is the :class:`~elixirml.EvaluationResult`)."""

    def on_compile_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        """An optimizer's ``compile`` starts (``instance`` is the optimizer)."""

    def on_compile_end(self, call_id: str, outputs: Any | None, exception: BaseException | None = None) -> None:
        """An optimizer's ``compile`` ended (``outputs`` is the optimized program)."""

    def on_trial_end(self, call_id: str, instance: Any, trial: Any) -> None:
        """An optimizer recorded a trial (ElixirML's own; DSPy has no trials).

        ``instance`` is the optimizer; ``trial`` the ``em.optimizers`` ``Trial``: its number,
        variable values (``configuration``), score, cost and wall time.
        """


class CompletionTexts(list[str]):
    """The completion texts of an LM call (what DSPy's ``on_lm_end`` receives), with the full response.

    Attributes:
        response: the :class:`~elixirml.LMResponse` (usage, finish reasons, model).
    """

    def __init__(self, texts: Sequence[str], response: Any) -> None:
        super().__init__(texts)
        self.response = response


_ids = itertools.count(1)
#: The call id of the call being observed here (``None`` outside any): a callback's ``*_start``
#: reads its parent's id, as with DSPy's ``ACTIVE_CALL_ID``.
ACTIVE_CALL_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("elixirml_active_call_id", default=None)
_reported: set[tuple[int, str]] = set()
_reported_lock = threading.Lock()


def active() -> tuple[Any, ...]:
    """The callbacks in force here (an empty tuple, after one flag read, when none was ever configured)."""
    if not _settings.callbacks_configured:
        return ()
    callbacks: tuple[Any, ...] = _settings.current().callbacks
    return callbacks


def _invoke(callback: Any, method: str, **arguments: Any) -> None:
    handler = getattr(callback, method, None)
    if handler is None:  # a DSPy callback has no on_trial_end
        return
    try:
        handler(**arguments)
    except Exception:
        key = (id(callback), method)
        with _reported_lock:
            first = key not in _reported
            _reported.add(key)
        if first:
            logger().warning(
                "Callback %r raised in %s; the call goes on without it (further errors of this method are "
                "logged at debug level). Fix the callback or remove it from em.configure(callbacks=...).",
                callback,
                method,
                exc_info=True,
            )
        else:
            logger().debug("Callback %r raised in %s again", callback, method, exc_info=True)


def start(callbacks: Sequence[Any], kind: str, instance: Any, inputs: Mapping[str, Any]) -> str:
    """Tell each callback that a call of ``kind`` (``"module"``, ``"lm"``, ...) starts; returns its call id."""
    call_id = f"{next(_ids):x}"
    method = f"on_{kind}_start"
    for callback in callbacks:
        _invoke(callback, method, call_id=call_id, instance=instance, inputs=inputs)
    return call_id


def end(
    callbacks: Sequence[Any], kind: str, call_id: str, outputs: Any, exception: BaseException | None = None
) -> None:
    """Tell each callback, last registered first, that the call ``call_id`` ended."""
    method = f"on_{kind}_end"
    for callback in reversed(callbacks):
        _invoke(callback, method, call_id=call_id, outputs=outputs, exception=exception)


def notify(callbacks: Sequence[Any], method: str, **arguments: Any) -> None:
    """Call ``method`` on each callback (an event without a start, such as ``on_trial_end``)."""
    call_id = f"{next(_ids):x}"
    for callback in callbacks:
        _invoke(callback, method, call_id=call_id, **arguments)


def observe(
    callbacks: Sequence[Any],
    kind: str,
    instance: Any,
    inputs: Mapping[str, Any],
    call: Callable[..., T],
    /,
    *args: Any,
    **kwargs: Any,
) -> T:
    """Run ``call(*args, **kwargs)`` between the start and end callbacks of ``kind``."""
    call_id = start(callbacks, kind, instance, inputs)
    token = ACTIVE_CALL_ID.set(call_id)
    try:
        result = call(*args, **kwargs)
    except ControlFlowSignal:
        end(callbacks, kind, call_id, None)
        raise
    except BaseException as exc:
        end(callbacks, kind, call_id, None, exc)
        raise
    finally:
        ACTIVE_CALL_ID.reset(token)
    end(callbacks, kind, call_id, result)
    return result


async def aobserve(
    callbacks: Sequence[Any],
    kind: str,
    instance: Any,
    inputs: Mapping[str, Any],
    call: Callable[[], Awaitable[T]],
) -> T:
    """Await ``call()`` between the start and end callbacks of ``kind``."""
    call_id = start(callbacks, kind, instance, inputs)
    token = ACTIVE_CALL_ID.set(call_id)
    try:
        result = await call()
    except ControlFlowSignal:
        end(callbacks, kind, call_id, None)
        raise
    except BaseException as exc:
        end(callbacks, kind, call_id, None, exc)
        raise
    finally:
        ACTIVE_CALL_ID.reset(token)
    end(callbacks, kind, call_id, result)
    return result


def _call_inputs(signature: inspect.Signature, args: Any, kwargs: Any) -> dict[str, Any]:
    bound = signature.bind(*args, **kwargs)
    inputs = dict(bound.arguments)
    for name, parameter in signature.parameters.items():  # **options spread out, as DSPy passes them
        if parameter.kind is inspect.Parameter.VAR_KEYWORD and name in inputs:
            inputs.update(inputs.pop(name))
    return inputs


def instrument(kind: str, instance: str) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Decorate a function so that callbacks of ``kind`` observe it, told its argument ``instance`` as the instance.

    For calls off the hot path (``compile``, ``aevaluate``): ``inputs`` are the function's
    arguments by name (``self`` left out, as DSPy does).
    """

    def decorate(fn: Callable[P, T]) -> Callable[P, T]:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            callbacks = active()
            if not callbacks:
                return fn(*args, **kwargs)
            inputs = _call_inputs(signature, args, kwargs)
            target = inputs.get(instance) if instance != "self" else inputs.pop("self", None)
            return observe(callbacks, kind, target, inputs, fn, *args, **kwargs)

        return wrapper

    return decorate


def instrument_async(
    kind: str, instance: str
) -> Callable[[Callable[P, Coroutine[Any, Any, T]]], Callable[P, Coroutine[Any, Any, T]]]:
    """Async :func:`instrument` (``aevaluate``)."""

    def decorate(fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            callbacks = active()
            if not callbacks:
                return await fn(*args, **kwargs)
            inputs = _call_inputs(signature, args, kwargs)
            target = inputs.get(instance) if instance != "self" else inputs.pop("self", None)
            return await aobserve(callbacks, kind, target, inputs, lambda: fn(*args, **kwargs))

        return wrapper

    return decorate
