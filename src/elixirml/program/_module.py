"""The Module base class: composition, discovery, copying, state and JSON save/load."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import settings as _settings
from ..errors import ConfigurationError, LoadError, VariableError
from ..lm import UsageTracker, track_usage
from ..runtime import aobserve_callbacks, current_context, observe_callbacks, run_scope, run_sync
from ..variables import Variable
from . import _assertions, _events
from ._rebuild import ModuleRebuild

#: The key of :meth:`Module.bindings` for every predictor that has no entry of its own.
ANY_PREDICTOR = 0

FORMAT = "elixirml.program"
FORMAT_VERSION = 1


def class_path(cls: type) -> str:
    """``"module:QualName"`` of a class (how saved files name it)."""
    return f"{cls.__module__}:{cls.__qualname__}"


class Module(ModuleRebuild):
    """Base class of every program component.

    Write ``forward`` (sync) or ``aforward`` (async); call the module with ``module(...)`` or
    ``await module.acall(...)``. A module with only ``aforward`` gets a sync path that runs it;
    a module with only ``forward`` gets an async path that runs it in a worker thread.

    Variables declared as class attributes (``em.Variable.float(...)``) are discovered by
    :meth:`variable_space`; :meth:`with_variables` builds a configured copy.
    """

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
        if _settings.callbacks_configured and (callbacks := _settings.current().callbacks):
            return await aobserve_callbacks(
                callbacks,
                "module",
                self,
                {"args": args, "kwargs": kwargs},
                lambda: self._acall_with_usage(args, kwargs),
            )
        return await self._acall_with_usage(args, kwargs)

    async def _acall_with_usage(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The body of :meth:`acall` (what callbacks observe)."""
        if _settings.current().track_usage:
            with track_usage() as usage:
                result = await self._acall_bound(args, kwargs)
            return _attach_usage(result, usage)
        return await self._acall_bound(args, kwargs)

    async def _acall_bound(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        bound = self._binding_variables()
        if not bound:
            return await self._acall(args, kwargs)
        with self._binding_scope(bound):
            return await self._acall(args, kwargs)

    async def _acall(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if not _events.streaming():
            return await _assertions.arun_with_retries(lambda: self.aforward(*args, **kwargs))
        _events.emit("module_start", module=type(self).__name__)
        result = await _assertions.arun_with_retries(lambda: self.aforward(*args, **kwargs))
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
            timeout: seconds one input may take; a slower one fails with ``TimeoutError``.
                (DSPy re-submits such stragglers instead; here it counts as a failure.)

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
    ) -> Any:
        """Async :meth:`batch` (same options)."""
        from ..runtime import gather_bounded
        from ..schema import Example

        concurrency = num_threads if num_threads is not None else concurrency
        if max_errors is not None and (isinstance(max_errors, bool) or max_errors < 0):
            raise ConfigurationError(f"batch(max_errors=...) takes an int >= 0 or None, got {max_errors!r}")
        if timeout is not None and timeout <= 0:
            timeout = None  # DSPy's timeout=0 turns the limit off

        def inputs(item: Any) -> dict[str, Any]:
            if isinstance(item, Example):
                return dict((item.inputs() if item.input_keys is not None else item).items())
            return dict(item)

        async def run_one(item: Any) -> Any:
            if timeout is None:
                return await self.acall(**inputs(item))
            import asyncio

            return await asyncio.wait_for(self.acall(**inputs(item)), timeout)

        tolerate = max_errors is not None or return_failed_examples
        jobs = [(lambda item=item: run_one(item)) for item in examples]
        outcomes = await gather_bounded(jobs, concurrency, return_exceptions=return_exceptions or tolerate)
        if not tolerate:
            return outcomes
        failed = [(item, out) for item, out in zip(examples, outcomes) if isinstance(out, Exception)]
        if max_errors is not None and len(failed) > max_errors:
            from ..errors import BatchError

            first = failed[0][1]
            raise BatchError(
                f"{type(self).__name__}.batch: {len(failed)} of {len(outcomes)} inputs failed, more than "
                f"max_errors={max_errors}; the first: {type(first).__name__}: {first}. Fix the failing inputs "
                "or raise max_errors."
            ) from first
        results = [None if isinstance(out, Exception) and not return_exceptions else out for out in outcomes]
        if return_failed_examples:
            return results, [item for item, _ in failed], [exc for _, exc in failed]
        return results

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

    # ------------------------------------------------------------------ state
    def dump_state(self) -> dict[str, Any]:
        """The learnable state as JSON-ready data.

        It holds the variable values, and each predictor's instructions, demos and config.
        """
        return {
            "configuration": self._own_configuration(),
            "predictors": {name: p.dump_state() for name, p in self.named_predictors()},
        }

    def load_state(self, state: dict[str, Any], *, allow_unsafe_lm_state: bool = False) -> Module:
        """Load state produced by :meth:`dump_state` into this module's structure; returns self.

        The LM is never rebuilt from the file: each predictor keeps the LM it has (set it in
        code with :meth:`set_lm`).

        Args:
            state: what :meth:`dump_state` returned.
            allow_unsafe_lm_state: DSPy's opt-in to build the LM (its class, endpoint) from the
                file. Refused: a file must not choose where requests go or what code runs.

        Raises:
            LoadError: the state does not fit this program.
            ConfigurationError: ``allow_unsafe_lm_state=True``.
        """
        refuse_unsafe_lm_state(allow_unsafe_lm_state)
        saved_config = state.get("configuration") or {}
        if saved_config:
            try:
                rebuilt = self.with_configuration(saved_config)
            except VariableError as exc:
                raise LoadError(f"Saved configuration does not fit this program: {exc}") from None
            self.__dict__.clear()
            self.__dict__.update(rebuilt.__dict__)
        saved = state.get("predictors")
        if not isinstance(saved, dict):
            raise LoadError("State has no 'predictors' mapping; was it written by dump_state()?")
        mine = dict(self.named_predictors())
        if set(saved) != set(mine):
            raise LoadError(
                f"Saved predictors {sorted(saved)} do not match this program's {sorted(mine)}; "
                "load the state into a program of the same structure."
            )
        for name, predictor in mine.items():
            predictor.load_state(saved[name])
        return self

    def save(self, path: str | os.PathLike[str], save_program: bool = False) -> Path:
        """Write this module's state to a JSON file (atomically). Never pickle.

        Args:
            path: the file to write.
            save_program: DSPy's whole-program save (with cloudpickle) is refused: a file that
                runs code when loaded is unsafe. Save the state and rebuild the program from
                its class (``em.load(path)`` with the class imported, or ``program.load(path)``).
        """
        if save_program:
            raise ConfigurationError(
                "save(path, save_program=True) would pickle the program, and loading a pickle runs code from the "
                "file. ElixirML saves state as JSON only: call save(path), then em.load(path) (with the program's "
                "module imported) or YourProgram().load(path)."
            )
        target = Path(path)
        document = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "class": class_path(type(self)),
            "state": self.dump_state(),
        }
        write_json_atomic(target, document)
        return target

    def load(self, path: str | os.PathLike[str]) -> Module:
        """Load state saved by :meth:`save` into this module; returns self.

        A file written by DSPy's ``Module.save(path)`` (its JSON state format) loads too, into a
        program of the same structure: demos, instructions, field descriptions and prefixes, and
        the saved LM's request settings (see docs/dspy.md). Nothing in either file is executed.
        """
        from ._dspy_state import is_dspy_state, load_dspy_state

        document = _read_json(path)
        if is_dspy_state(document):
            load_dspy_state(self, document, repr(os.fspath(path)))
            return self
        document = read_program_file(path, document)
        return self.load_state(document["state"])


def refuse_unsafe_lm_state(allow_unsafe_lm_state: bool) -> None:
    """Raise unless ``allow_unsafe_lm_state`` is False (DSPy's keyword; ElixirML never loads an LM from a file)."""
    if allow_unsafe_lm_state:
        raise ConfigurationError(
            "load_state(..., allow_unsafe_lm_state=True) is refused: ElixirML never builds an LM (its class, "
            "endpoint or key) from a saved file, so a file cannot redirect requests or run code. Load the state "
            "without it and give the program its LM in code: program.set_lm(em.LM(...))."
        )


def _attach_usage(result: Any, usage: UsageTracker) -> Any:
    """Give the Prediction a module returned its usage by model (``get_lm_usage``), as DSPy does."""
    from ..schema import Prediction

    target = result[0] if isinstance(result, tuple) and result else result
    if isinstance(target, Prediction):
        target.set_lm_usage(usage.get_total_tokens())
    return result


def write_json_atomic(target: Path, document: Any) -> None:
    """Write JSON to ``target`` through a temporary file and a rename, so a crash leaves no half file."""
    import tempfile

    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2, ensure_ascii=False)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _read_json(path: str | os.PathLike[str]) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise LoadError(f"No saved program at {os.fspath(path)!r}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LoadError(f"{os.fspath(path)!r} is not a JSON program file: {exc}") from None


def read_program_file(path: str | os.PathLike[str], document: Any = None) -> dict[str, Any]:
    """Read and check a saved program file (JSON only; nothing in it is executed).

    ``document`` is the file's JSON when the caller has read it already.
    """
    if document is None:
        document = _read_json(path)
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        from ._dspy_state import is_dspy_state

        if is_dspy_state(document):
            raise LoadError(
                f"{os.fspath(path)!r} was written by DSPy's Module.save: it holds state, not a program. Build "
                "the equivalent program and load the file into it: YourProgram().load(path)"
            )
        raise LoadError(f"{os.fspath(path)!r} is not an ElixirML program file (format {FORMAT!r} expected)")
    if document.get("version") != FORMAT_VERSION:
        raise LoadError(
            f"{os.fspath(path)!r} has format version {document.get('version')}; this ElixirML reads {FORMAT_VERSION}"
        )
    if not isinstance(document.get("state"), dict):
        raise LoadError(f"{os.fspath(path)!r} has no state")
    return document


def _subclasses(cls: type[Module]) -> Iterator[type[Module]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def load(path: str | os.PathLike[str], cls: type[Module] | None = None) -> Module:
    """Load a saved program without executing any code from the file.

    Built-in modules (``Predict``, ``ChainOfThought``) are rebuilt from the file alone. For a
    program class of your own, its module must already be imported (ElixirML never imports
    what a file names) or passed as ``cls``; it is built with no arguments, then its state is
    loaded.
    """
    return build_program(read_program_file(path), cls)


def build_program(document: dict[str, Any], cls: type[Module] | None = None) -> Module:
    """Build a program from a checked saved document (``{"class": ..., "state": ...}``)."""
    name = str(document.get("class", ""))
    if cls is None:
        cls = next((c for c in _subclasses(Module) if class_path(c) == name), None)
        if cls is None:
            raise LoadError(
                f"The program class {name!r} is not loaded in this process. Import the module that "
                "defines it first, or pass cls=YourProgram. (ElixirML never imports what a file names.)"
            )
    state = document.get("state")
    if not isinstance(state, dict):
        raise LoadError("Saved program has no state object")
    rebuild = getattr(cls, "from_saved_state", None)
    if rebuild is not None:
        program: Module = rebuild(state)
        return program
    try:
        program = cls()
    except TypeError as exc:
        raise LoadError(
            f"Cannot build {cls.__name__}() without arguments ({exc}); build the program yourself "
            "and call program.load(path)."
        ) from None
    return program.load_state(state)
