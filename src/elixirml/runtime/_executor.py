"""The executor interface: where a batch of work items runs (this process, or a cluster).

Lower layers (evaluate, program pipelines) run work through an :class:`Executor` without
knowing what is behind it; the distributed layer implements it for Ray and registers it
under a name, so ``evaluate(..., executor="ray")`` finds it without importing upwards.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

from ..errors import ConfigurationError

#: What a worker runs for one item: ``work(program, index, item)``. It must be importable or
#: picklable by value (a module-level function, or a ``functools.partial`` of one).
Work = Callable[[Any, int, Any], Awaitable[Any]]


@dataclasses.dataclass(frozen=True)
class ProgramSpec:
    """How a worker rebuilds a program: its importable class path, its JSON state and its predictors' LMs.

    Attributes:
        class_path: ``"package.module:QualName"`` of the program's class.
        state: what ``program.dump_state()`` returned (JSON data, never a pickle).
        lms: the LMs the predictors carry, one entry per LM: ``{"predictors": [names], "lm":
            lm.describe()}`` (JSON data, never a key).
        secrets: for each entry of ``lms``, what its description leaves out (``lm.secret_options()``:
            an explicit key, headers). It stays in this process: it is not part of the spec's
            pickle, repr or equality; an executor hands it to its workers by its own means.
    """

    class_path: str
    state: dict[str, Any]
    lms: tuple[dict[str, Any], ...] = ()
    secrets: tuple[dict[str, Any], ...] = dataclasses.field(default=(), repr=False, compare=False)

    def __reduce__(self) -> tuple[Any, ...]:
        return (ProgramSpec, (self.class_path, self.state, self.lms))  # never the secrets

    @classmethod
    def of(cls, program: Any) -> ProgramSpec:
        """The spec of ``program`` (a :class:`~elixirml.Module`).

        Raises:
            ConfigurationError: a predictor carries an LM that cannot be described as data (a
                ``FunctionLM``, a ``DummyLM``); the message names the predictor and what to do.
        """
        kind = type(program)
        lms: list[dict[str, Any]] = []
        secrets: list[dict[str, Any]] = []
        seen: dict[int, int] = {}
        for name, predictor in program.named_predictors():
            lm = getattr(predictor, "lm", None)
            if lm is None:
                continue
            at = seen.get(id(lm))
            if at is None:
                try:
                    description = lm.describe()
                except ConfigurationError as exc:
                    raise ConfigurationError(
                        f"Predictor {name!r} carries its own LM, {exc}, so the workers cannot build it. Give that LM "
                        "to the executor instead (em.RayExecutor(lm=...), which also takes a function that builds "
                        "it on the worker) or configure it (em.configure(lm=...)), and leave the predictor without "
                        "one; or give the predictor an LM that is data, such as em.LM('openai/<model>', base_url=...)."
                    ) from None
                seen[id(lm)] = at = len(lms)
                lms.append({"predictors": [], "lm": description})
                secrets.append(lm.secret_options())
            lms[at]["predictors"].append(name)
        return cls(f"{kind.__module__}:{kind.__qualname__}", program.dump_state(), tuple(lms), tuple(secrets))

    @property
    def module(self) -> str:
        """The module that defines the program's class."""
        return self.class_path.partition(":")[0]


@runtime_checkable
class Executor(Protocol):
    """Runs ``work`` on every item and yields ``(index, result)`` as each one finishes.

    An implementation yields each index exactly once, whatever happens to the processes
    that run them (an item whose worker died runs again elsewhere), and raises when it
    cannot finish the batch.
    """

    def stream(
        self, program: ProgramSpec, work: Work, items: Sequence[tuple[int, Any]], *, concurrency: int
    ) -> AsyncGenerator[tuple[int, Any], None]:
        """Yield ``(index, work(rebuilt_program, index, item))`` for each ``(index, item)``, in finishing order."""
        ...


async def call_program(program: Any, index: int, item: Any) -> Any:
    """One item's prediction: ``program`` called with the item's inputs (an Example's marked inputs, or a dict)."""
    from ..schema import Example

    inputs = item.inputs() if isinstance(item, Example) and item.input_keys is not None else item
    return await program.acall(**dict(inputs.items()))


_FACTORIES: dict[str, Callable[..., Executor]] = {}


def register_executor(name: str, factory: Callable[..., Executor]) -> None:
    """Make ``executor=name`` mean ``factory()`` (the distributed layer registers ``"ray"``).

    ``factory(ephemeral=True)`` makes an executor whose workers stop when each run ends;
    :func:`open_executor` calls ``factory(ephemeral=False, **options)`` for many runs and then
    the executor's ``shutdown()``.
    """
    _FACTORIES[name] = factory


def _factory(name: str) -> Callable[..., Executor]:
    factory = _FACTORIES.get(name)
    if factory is None:
        known = ", ".join(sorted(["local", *_FACTORIES]))
        raise ConfigurationError(f"Unknown executor {name!r}; known: {known} (or pass an executor object)")
    return factory


def resolve_executor(executor: Any) -> Executor | None:
    """``None`` (run here), an :class:`Executor`, or the name of a registered one.

    Raises:
        ConfigurationError: an unknown name, or an object that is not an executor.
    """
    if executor is None or executor == "local":
        return None
    if isinstance(executor, str):
        return _factory(executor)()
    if not isinstance(executor, Executor):
        raise ConfigurationError(
            f"executor= takes 'local', 'ray' or an executor such as em.RayExecutor(...), got {executor!r}"
        )
    return executor


@contextlib.contextmanager
def open_executor(executor: Any, **options: Any) -> Iterator[Executor | None]:
    """One executor for many runs (an optimizer's trials): resolved once, its workers kept between runs.

    An executor named here (``"ray"``) is made with ``options`` (such as ``num_workers``) and
    shut down when the block ends; an executor object is used as it is and left running.
    """
    if not isinstance(executor, str) or executor == "local":
        if options and executor is not None and executor != "local":
            raise ConfigurationError(
                f"Options {sorted(options)} apply to an executor named by a string; set them on {executor!r} itself"
            )
        yield resolve_executor(executor)
        return
    made = _factory(executor)(ephemeral=False, **options)
    try:
        yield made
    finally:
        shutdown = getattr(made, "shutdown", None)
        if callable(shutdown):
            shutdown()
