"""Pipeline: a sequence of stages over a dict of values, with batch execution strategies.

pipeline = em.Pipeline(
em.stage.transform(lambda v: {**v, "question": v["question"].strip()}),
em.stage.validate(lambda v: len(v["question"]) > 0 or "empty question"),
em.stage.predict("question -> answer", strategy=em.Variable.module({...}), temperature=0.2),
em.stage.assert_output(lambda v: len(v["answer"]) < 200, message="Too long", retries=2),
)
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from .._log import logger
from ..errors import AssertionFailed, ConfigurationError, ValidationError
from ..runtime import ProgramSpec, call_program, gather_bounded, resolve_executor, run_sync, stream_bounded
from ..schema import Example, Prediction, ensure_signature
from ..variables import Variable
from . import _assertions
from ._module import Module
from ._predict import ChainOfThought, Predict

STRATEGIES: dict[str, type[Predict]] = {
    "predict": Predict,
    "direct": Predict,
    "cot": ChainOfThought,
    "chain_of_thought": ChainOfThought,
}


class Stage(Module):
    """Base class of pipeline stages: ``await stage.apply(values) -> values``."""

    async def apply(self, values: dict[str, Any]) -> dict[str, Any]:
        """Take the current values, return the new values."""
        raise NotImplementedError


class TransformStage(Stage):
    """Replace the values with ``fn(values)`` (sync or async function)."""

    def __init__(self, fn: Callable[[dict[str, Any]], Any]) -> None:
        self.fn = fn

    async def apply(self, values: dict[str, Any]) -> dict[str, Any]:
        result = self.fn(dict(values))
        if hasattr(result, "__await__"):
            result = await result
        if not isinstance(result, Mapping):
            raise ConfigurationError(f"A transform stage must return a dict, got {type(result).__name__}")
        return dict(result)


class ValidateStage(Stage):
    """Stop with a ValidationError unless ``fn(values)`` passes (False or a string fails)."""

    def __init__(self, fn: Callable[[dict[str, Any]], Any], name: str = "pipeline") -> None:
        self.fn = fn
        self.name = name

    async def apply(self, values: dict[str, Any]) -> dict[str, Any]:
        try:
            outcome = self.fn(dict(values))
        except ValueError as exc:
            raise ValidationError(self.name, None, values, str(exc)) from None
        if outcome is False or isinstance(outcome, str):
            rule = outcome if isinstance(outcome, str) else f"check {getattr(self.fn, '__name__', 'validate')} failed"
            raise ValidationError(self.name, None, values, rule)
        return values


class PredictStage(Stage):
    """Run a predictor built from ``signature`` by ``strategy``; merge its outputs into the values.

    ``strategy`` is a name (``"predict"``, ``"cot"``), a module class, or a
    ``Variable.module``; request settings may be values or Variables. Variables given here are
    part of the pipeline's variable space (``stages.N.strategy``, ``stages.N.temperature``).
    """

    def __init__(self, signature: Any, strategy: Any = "predict", **settings: Any) -> None:
        self.signature = ensure_signature(signature)
        if isinstance(strategy, Variable):
            self.register_variable("strategy", strategy)
            module_cls = self.variable_value("strategy")
        elif isinstance(strategy, str):
            if strategy not in STRATEGIES:
                raise ConfigurationError(f"Unknown strategy {strategy!r}; known: {sorted(STRATEGIES)}")
            module_cls = STRATEGIES[strategy]
        elif isinstance(strategy, type) and issubclass(strategy, Module):
            module_cls = strategy
        else:
            raise ConfigurationError(f"strategy must be a name, a module class or a Variable.module, got {strategy!r}")
        self.settings: dict[str, Any] = {}
        for key, value in settings.items():
            if isinstance(value, Variable):
                self.register_variable(key, value)
            else:
                self.settings[key] = value
        self.predictor = module_cls(self.signature)

    def _request_settings(self) -> dict[str, Any]:
        values = dict(self.settings)
        for key, variable in self._variables().items():
            if key != "strategy" and variable.kind != "module":
                values[key] = self.variable_value(key)
        return values

    async def apply(self, values: dict[str, Any]) -> dict[str, Any]:
        inputs = {f: values[f] for f in self.signature.input_fields if f in values}
        prediction = await self.predictor.acall(**inputs, config=self._request_settings())
        return {**values, **prediction.to_dict()}


class AssertStage(Stage):
    """Check ``fn(values)``; on failure retry the previous predict stage with feedback.

    Args:
        fn: the check; truthy passes.
        message: what was wrong (shown to the LM on retry).
        action: ``"retry"`` (re-run the previous predict stage, then raise), ``"raise"``
            (raise at once) or ``"warn"`` (log and go on).
        retries: re-runs allowed with ``action="retry"``.
    """

    def __init__(
        self, fn: Callable[[dict[str, Any]], Any], message: str, action: str = "retry", retries: int = 2
    ) -> None:
        if action not in ("retry", "raise", "warn"):
            raise ConfigurationError(f"action must be 'retry', 'raise' or 'warn', got {action!r}")
        self.fn = fn
        self.message = message
        self.action = action
        self.retries = retries

    async def apply(self, values: dict[str, Any]) -> dict[str, Any]:
        """Check once, without retries (a Pipeline adds the retries)."""
        if self.fn(dict(values)):
            return values
        if self.action == "warn":
            logger().warning("Pipeline assertion failed: %s", self.message)
            return values
        raise AssertionFailed(self.message, [dict(values)])


class ModuleStage(Stage):
    """Run any Module on the values; merge a Prediction/dict result into them."""

    def __init__(self, module: Module) -> None:
        self.module = module

    async def apply(self, values: dict[str, Any]) -> dict[str, Any]:
        result = await self.module.acall(**values)
        if isinstance(result, (Example, Mapping)):
            return {**values, **dict(result.items())}
        raise ConfigurationError(f"Module stage {type(self.module).__name__} returned {result!r}, not a dict")


class stage:  # noqa: N801 - used as a namespace: em.stage.transform(...)
    """Constructors for pipeline stages."""

    @staticmethod
    def transform(fn: Callable[[dict[str, Any]], Any]) -> TransformStage:
        """A stage that maps the values dict to a new one."""
        return TransformStage(fn)

    @staticmethod
    def validate(fn: Callable[[dict[str, Any]], Any]) -> ValidateStage:
        """A stage that stops the run unless ``fn(values)`` passes."""
        return ValidateStage(fn)

    @staticmethod
    def predict(signature: Any, strategy: Any = "predict", **settings: Any) -> PredictStage:
        """A stage that runs a predictor (see :class:`PredictStage`)."""
        return PredictStage(signature, strategy, **settings)

    @staticmethod
    def assert_output(
        fn: Callable[[dict[str, Any]], Any],
        message: str = "output check failed",
        action: str = "retry",
        retries: int = 2,
    ) -> AssertStage:
        """A stage that checks the values (see :class:`AssertStage`)."""
        return AssertStage(fn, message, action, retries)

    @staticmethod
    def module(module: Module) -> ModuleStage:
        """A stage that runs any Module."""
        return ModuleStage(module)


def _as_stage(item: Any) -> Stage:
    if isinstance(item, Stage):
        return item
    if isinstance(item, Module):
        return ModuleStage(item)
    if callable(item):
        return TransformStage(item)
    raise ConfigurationError(f"Not a pipeline stage: {item!r}")


class Pipeline(Module):
    """Stages run in order over a dict of values; the result is a Prediction of the final values.

    A Pipeline is a Module: it can be a Program's body, and its variables are discovered.
    """

    def __init__(self, *stages: Any) -> None:
        if not stages:
            raise ConfigurationError("A Pipeline needs at least one stage")
        self.stages = [_as_stage(s) for s in stages]

    async def aforward(self, **inputs: Any) -> Prediction:
        if _assertions.current_run() is None:
            return await _assertions.arun_with_retries(lambda: self._execute(dict(inputs)))
        return await self._execute(dict(inputs))

    async def _execute(self, values: dict[str, Any]) -> Prediction:
        last_predict: tuple[PredictStage, dict[str, Any]] | None = None
        for item in self.stages:
            if isinstance(item, AssertStage):
                values = await self._check(item, values, last_predict)
                continue
            if isinstance(item, PredictStage):
                last_predict = (item, values)
            values = await item.apply(values)
        return Prediction(values)

    async def _check(
        self, check: AssertStage, values: dict[str, Any], last_predict: tuple[PredictStage, dict[str, Any]] | None
    ) -> dict[str, Any]:
        attempts: list[Any] = []
        used = 0
        while True:
            if check.fn(dict(values)):
                return values
            attempts.append(dict(values))
            if check.action == "warn":
                logger().warning("Pipeline assertion failed: %s", check.message)
                return values
            if check.action == "raise" or used >= check.retries or last_predict is None:
                raise AssertionFailed(check.message, attempts)
            used += 1
            predict_stage, before = last_predict
            run = _assertions.current_run()
            assert run is not None and run.last_call is not None
            run.feedback.setdefault(id(predict_stage.predictor), []).append((run.last_call.completion, check.message))
            values = await predict_stage.apply(before)

    # ------------------------------------------------------------------ batches
    async def arun_batch(
        self,
        inputs: Sequence[Mapping[str, Any]],
        strategy: str = "parallel",
        concurrency: int = 8,
        *,
        return_exceptions: bool = False,
        executor: Any = None,
    ) -> list[Any]:
        """Run every input; results keep the input order.

        ``sequential`` runs one at a time, ``parallel`` up to ``concurrency`` at once,
        ``distributed`` on ``executor`` (``"ray"`` or an executor such as ``em.RayExecutor(...)``).
        """
        if strategy == "distributed":
            return await self._arun_distributed(inputs, concurrency, executor, return_exceptions)
        jobs = [(lambda item=item: self.acall(**dict(item))) for item in inputs]
        if strategy == "sequential":
            return await gather_bounded(jobs, 1, return_exceptions=return_exceptions)
        if strategy == "parallel":
            return await gather_bounded(jobs, concurrency, return_exceptions=return_exceptions)
        raise ConfigurationError(
            f"Unknown batch strategy {strategy!r}; use 'sequential', 'parallel', 'streaming' or 'distributed'"
        )

    async def _arun_distributed(
        self, inputs: Sequence[Mapping[str, Any]], concurrency: int, executor: Any, return_exceptions: bool
    ) -> list[Any]:
        if type(self) is Pipeline:
            raise ConfigurationError(
                "run_batch(strategy='distributed') rebuilds the pipeline on each worker from its class and JSON "
                "state, and an em.Pipeline(...) built inline has no class that makes it. Define it as a subclass "
                "in an importable module (class MyPipeline(em.Pipeline): def __init__(self): "
                "super().__init__(...stages...)) and run that."
            )
        runner = resolve_executor("ray" if executor is None else executor)
        if runner is None:
            return await self.arun_batch(inputs, "parallel", concurrency, return_exceptions=return_exceptions)
        work = functools.partial(_call_catching, return_exceptions=return_exceptions)
        items = [(index, dict(item)) for index, item in enumerate(inputs)]
        results: dict[int, Any] = {}
        async for index, outcome in runner.stream(ProgramSpec.of(self), work, items, concurrency=concurrency):
            results[index] = outcome
        return [results[index] for index, _ in items]

    def run_batch(
        self,
        inputs: Sequence[Mapping[str, Any]],
        strategy: str = "parallel",
        concurrency: int = 8,
        *,
        return_exceptions: bool = False,
        executor: Any = None,
    ) -> Any:
        """Run a batch of inputs.

        Returns a list for ``sequential``/``parallel``/``distributed``; for ``streaming`` an
        async iterator of ``(index, result)`` pairs in the order they finish. ``distributed``
        runs on ``executor`` (default ``"ray"``): each worker rebuilds the pipeline from its
        class path and JSON state, so the pipeline's class must be importable on the workers.
        """
        if strategy == "streaming":
            return self.stream_batch(inputs, concurrency, return_exceptions=return_exceptions)
        return run_sync(
            self.arun_batch(inputs, strategy, concurrency, return_exceptions=return_exceptions, executor=executor)
        )

    def stream_batch(
        self, inputs: Sequence[Mapping[str, Any]], concurrency: int = 8, *, return_exceptions: bool = False
    ) -> AsyncIterator[tuple[int, Any]]:
        """Yield ``(index, result)`` as each input finishes (an async iterator)."""
        jobs = [(lambda item=item: self.acall(**dict(item))) for item in inputs]
        return stream_bounded(jobs, concurrency, return_exceptions=return_exceptions)


async def _call_catching(program: Any, index: int, item: Any, *, return_exceptions: bool) -> Any:
    """A distributed batch item: the program's result, or its exception when ``return_exceptions``."""
    try:
        return await call_program(program, index, item)
    except Exception as exc:
        if not return_exceptions:
            raise
        return exc
