"""The Module base class: calling (sync and async, callbacks, usage, bound variables, assertion retries) and batches.

What a module is made of, its variables, rebuilds and copies, and save/load are its bases, one
file each: ``_tree.py``, ``_state.py``, ``_rebuild.py``, ``_persist.py``.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from .. import settings as _settings
from .._log import logger
from ..errors import ConfigurationError
from ..lm import UsageTracker, track_usage
from ..runtime import aobserve_callbacks, current_context, observe_callbacks, run_scope, run_sync
from ..variables import Variable
from . import _assertions, _events
from ._persist import ModulePersistence

#: The key of :meth:`Module.bindings` for every predictor that has no entry of its own.
ANY_PREDICTOR = 0


class Module(ModulePersistence):
    """Base class of every program component.

    Write ``forward`` (sync) or ``aforward`` (async); call the module with ``module(...)`` or
    ``await module.acall(...)``. A module with only ``aforward`` gets a sync path that runs it;
    a module with only ``forward`` gets an async path that runs it in a worker thread.

    Variables declared as class attributes (``em.Variable.float(...)``) are discovered by
    :meth:`variable_space`; :meth:`with_variables` builds a configured copy.

    Calling ``module.forward(...)`` directly, outside any module call, logs DSPy's warning
    ("Calling module.forward(...) on X directly is discouraged"): it skips callbacks, usage,
    bound variables, assertion retries and the trace. A ``forward`` reached from another module's
    ``forward`` is not reported (it runs inside that call).
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        forward = cls.__dict__.get("forward")
        if inspect.isfunction(forward) and forward not in _CHECKED:
            cls.forward = _checked_forward(forward)  # type: ignore[method-assign]

    # ------------------------------------------------------------------ calling
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if _settings.callbacks_configured and (callbacks := _settings.current().callbacks):
            return observe_callbacks(
                callbacks, "module", self, {"args": args, "kwargs": kwargs}, self._call_with_usage, args, kwargs
            )
        return self._call_with_usage(args, kwargs)

    def _call_with_usage(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The body of ``__call__`` (what callbacks observe)."""
        if _settings.current().track_usage:
            with track_usage() as usage:
                result = self._call(args, kwargs)
            return _attach_usage(result, usage)
        return self._call(args, kwargs)

    def _call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        bound = self._binding_variables()
        if not bound:
            return _assertions.run_with_retries(self.forward, *args, **kwargs)
        with self._binding_scope(bound):
            return _assertions.run_with_retries(self.forward, *args, **kwargs)

    async def acall(self, *args: Any, **kwargs: Any) -> Any:
        """Run the module asynchronously."""
        if _settings.callbacks_configured and _settings.current().callbacks:
            return await self._aobserved(args, kwargs)
        return await self._acall_with_usage(args, kwargs)

    async def _aobserved(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """:meth:`acall` between the ``module`` callbacks."""
        return await aobserve_callbacks(
            _settings.current().callbacks,
            "module",
            self,
            {"args": args, "kwargs": kwargs},
            lambda: self._acall_with_usage(args, kwargs),
        )

    # The two steps below return the awaitable of the next one instead of awaiting it: a call
    # waiting on its LM (at a concurrency limit, or for the answer) holds no frame for them.
    def _acall_with_usage(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Awaitable[Any]:
        """The body of :meth:`acall` (what callbacks observe): usage tracked when the setting says so."""
        if _settings.current().track_usage:
            return self._acall_tracked(args, kwargs)
        return self._acall_bound(args, kwargs)

    async def _acall_tracked(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        with track_usage() as usage:
            result = await self._acall_bound(args, kwargs)
        return _attach_usage(result, usage)

    def _acall_bound(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Awaitable[Any]:
        """:meth:`aforward` with this module's bound variables applied, its stream events, assertion retries."""
        bound = self._binding_variables()
        if not bound and not _events.streaming():  # the common case: nothing to open around the call
            return _assertions.arun_with_retries(self.aforward, *args, **kwargs)
        return self._acall_scoped(bound, args, kwargs)

    async def _acall_scoped(self, bound: dict[str, Variable], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        with self._binding_scope(bound) if bound else contextlib.nullcontext():
            if not _events.streaming():
                return await _assertions.arun_with_retries(self.aforward, *args, **kwargs)
            _events.emit("module_start", module=type(self).__name__)
            result = await _assertions.arun_with_retries(self.aforward, *args, **kwargs)
            _events.emit("module_end", module=type(self).__name__)
            return result

    # ------------------------------------------------------------------ bound variables
    def _binding_variables(self) -> dict[str, Variable]:
        """Declared variables that bind (a predictor's implicit variables never do)."""
        cls = type(self)
        bound: dict[str, Variable] | None = cls.__dict__.get("_elixirml_binding_variables")
        if bound is None:
            bound = {local: v for local, v in Module._variables(self).items() if v.binds}
            type.__setattr__(cls, "_elixirml_binding_variables", bound)
        extra: dict[str, Variable] | None = self.__dict__.get("_instance_variables")
        if extra:
            return {**bound, **{local: v for local, v in extra.items() if v.binds}}
        return bound

    def _binding_scope(self, bound: Mapping[str, Variable]) -> contextlib.AbstractContextManager[Any]:
        """A scope in which this module's bound variables reach the predictors they target."""
        return run_scope(bindings=self.bindings(current_context().bindings, bound))

    def _target_predictors(self, variable: Variable) -> list[Any]:
        if variable.targets is None or variable.targets == ("*",):
            return self.predictors()
        modules = dict(self.named_modules())
        found: list[Any] = []
        for target in variable.targets:
            module = modules.get(target)
            if module is None:
                raise ConfigurationError(
                    f"Variable {variable.name!r} of {type(self).__name__} targets {target!r}, which is not a "
                    f"sub-module; sub-modules: {sorted(modules)}"
                )
            found.extend(module.predictors())
        return found

    def bindings(
        self,
        outer: Mapping[int, Mapping[str, Any]] | None = None,
        variables: Mapping[str, Variable] | None = None,
    ) -> dict[int, dict[str, Any]]:
        """What this module's bound variables set on each predictor: ``{id(predictor): {"settings", "lm"}}``.

        ``outer`` holds the bindings of enclosing modules; this module's own win over them for the
        predictors it targets (the closest declaration wins). A variable that targets every
        predictor also sets the entry ``ANY_PREDICTOR``, which a predictor with no entry of its
        own uses: one created inside ``forward`` gets the bound values too.
        """
        merged: dict[int, dict[str, Any]] = {key: dict(value) for key, value in (outer or {}).items()}
        for local, variable in (variables if variables is not None else self._binding_variables()).items():
            value = self.variable_value(local)
            keys = [id(predictor) for predictor in self._target_predictors(variable)]
            if variable.targets is None or variable.targets == ("*",):
                keys.append(ANY_PREDICTOR)  # predictors created while the module runs (inside forward)
            for key in keys:
                entry = merged.get(key)
                if entry is None:
                    wildcard = merged.get(ANY_PREDICTOR, {})
                    entry = merged[key] = {k: dict(v) if isinstance(v, dict) else v for k, v in wildcard.items()}
                if variable.setting is not None:
                    entry["settings"] = {**entry.get("settings", {}), variable.setting: value}
                else:
                    entry["lm"] = value
        return merged

    def batch(
        self,
        examples: Sequence[Any],
        concurrency: int = 8,
        *,
        num_threads: int | None = None,
        return_exceptions: bool = False,
        max_errors: int | None = None,
        return_failed_examples: bool = False,
        timeout: float | None = None,
        straggler_limit: int | None = None,
        provide_traceback: bool | None = None,
        disable_progress_bar: bool = False,
    ) -> Any:
        """Run on many inputs at once (Examples use their inputs; dicts are keyword arguments).

        Results keep the input order. By default the first failure stops the batch and is
        raised. DSPy's options tolerate failures instead:

        Args:
            examples: Examples (their inputs are used) or dicts of keyword arguments.
            concurrency: inputs in flight at once (``num_threads`` is DSPy's name for it).
            num_threads: same as ``concurrency``.
            return_exceptions: a failure's exception takes its place in the results.
            max_errors: tolerate up to this many failures (their results are ``None``); one
                more raises :class:`~elixirml.errors.BatchError` naming the count and the first error.
            return_failed_examples: return ``(results, failed_examples, exceptions)`` as DSPy does;
                failures are tolerated (up to ``max_errors`` when it is given).
            timeout: seconds one input may take (None or 0: no limit); a slower one fails with
                ``TimeoutError``, unless ``straggler_limit`` is given.
            straggler_limit: DSPy's straggler rule instead of the hard limit: once at most this
                many inputs are unfinished, one running for ``timeout`` seconds is started once
                more, and the first attempt to finish counts.
            provide_traceback: log each tolerated failure with its traceback (else one line).
            disable_progress_bar: accepted for DSPy's code; a batch shows no progress bar.

        Returns:
            The results, or ``(results, failed_examples, exceptions)`` with ``return_failed_examples``.
        """
        concurrency = num_threads if num_threads is not None else concurrency
        return run_sync(
            self.abatch(
                examples,
                concurrency,
                return_exceptions=return_exceptions,
                max_errors=max_errors,
                return_failed_examples=return_failed_examples,
                timeout=timeout,
                straggler_limit=straggler_limit,
                provide_traceback=provide_traceback,
            )
        )

    async def abatch(
        self,
        examples: Sequence[Any],
        concurrency: int = 8,
        *,
        num_threads: int | None = None,
        return_exceptions: bool = False,
        max_errors: int | None = None,
        return_failed_examples: bool = False,
        timeout: float | None = None,
        straggler_limit: int | None = None,
        provide_traceback: bool | None = None,
        disable_progress_bar: bool = False,
    ) -> Any:
        """Async :meth:`batch` (same options)."""
        from ..schema import Example
        from ._batch import run_batch

        def inputs(item: Any) -> dict[str, Any]:
            if isinstance(item, Example):
                return dict((item.inputs() if item.input_keys is not None else item).items())
            return dict(item)

        def call(item: Any) -> Callable[[], Awaitable[Any]]:
            return lambda: self.acall(**inputs(item))

        return await run_batch(
            f"{type(self).__name__}.batch",
            [call(item) for item in examples],
            examples,
            concurrency=num_threads if num_threads is not None else concurrency,
            return_exceptions=return_exceptions,
            max_errors=max_errors,
            return_failed_examples=return_failed_examples,
            timeout=timeout,
            straggler_limit=straggler_limit,
            provide_traceback=provide_traceback,
        )

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The sync body. Default: runs :meth:`aforward` to completion."""
        if type(self).aforward is Module.aforward:
            raise NotImplementedError(f"{type(self).__name__} must define forward() or aforward()")
        return run_sync(self.aforward(*args, **kwargs))

    async def aforward(self, *args: Any, **kwargs: Any) -> Any:
        """The async body. Default: runs a sync :meth:`forward` in a worker thread."""
        if type(self).forward is Module.forward:
            raise NotImplementedError(f"{type(self).__name__} must define forward() or aforward()")
        import asyncio  # loaded by the first call, not by `import elixirml`

        return await asyncio.to_thread(self.forward, *args, **kwargs)


_CHECKED: set[Callable[..., Any]] = set()


def _checked_forward(forward: Callable[..., Any]) -> Callable[..., Any]:
    """``forward`` that warns, as DSPy does, when it is called outside any module call.

    A module call (``module(...)``, ``acall``) always runs ``forward`` inside a run (the context's
    ``run``, set by the assertion scope every call opens), so the check is one context read.
    """

    @functools.wraps(forward)
    def checked(self: Module, *args: Any, **kwargs: Any) -> Any:
        if current_context().run is None:
            logger("program").warning(
                "Calling module.forward(...) on %s directly is discouraged. Please use module(...) instead.",
                type(self).__name__,
            )
        return forward(self, *args, **kwargs)

    _CHECKED.add(checked)
    return checked


def _attach_usage(result: Any, usage: UsageTracker) -> Any:
    """Give the Prediction a module returned its usage by model (``get_lm_usage``), as DSPy does."""
    from ..schema import Prediction

    target = result[0] if isinstance(result, tuple) and result else result
    if isinstance(target, Prediction):
        target.set_lm_usage(usage.get_total_tokens())
    return result
