"""Modules built from other modules: BestOfN, Refine, MultiChainComparison, Parallel."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

from ..errors import ConfigurationError, UserError
from ..schema import Example, InputField, OutputField, Prediction, ensure_signature, make_signature
from . import _assertions, _trace
from ._module import Module
from ._predict import ChainOfThought, Predict, forced_settings

RewardFn = Callable[[dict[str, Any], Prediction], Any]


class _DefaultTemperature(float):
    """BestOfN's default temperature, 1.0: applied where the provider can set one."""


DEFAULT_TEMPERATURE = _DefaultTemperature(1.0)


async def _reward(fn: RewardFn, inputs: dict[str, Any], prediction: Prediction) -> float:
    value = fn(inputs, prediction)
    if inspect.isawaitable(value):
        value = await value
    return float(value)


def _attempts(n: int | None, big_n: int | None, reward_fn: Any, owner: str) -> int:
    if n is not None and big_n is not None and n != big_n:
        raise ConfigurationError(f"{owner}: pass the number of attempts once (n= or DSPy's N=), got n={n}, N={big_n}")
    count = n if n is not None else big_n
    if count is None:
        raise ConfigurationError(f"{owner} needs the number of attempts: {owner}(module, N=3, reward_fn=...)")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ConfigurationError(f"{owner}: the number of attempts must be an int >= 1, got {count!r}")
    if reward_fn is None:
        raise ConfigurationError(f"{owner} needs reward_fn=(inputs, prediction) -> float")
    return count


class BestOfN(Module):
    """Run a module up to ``N`` times (each a different rollout) and keep the best answer.

    The attempts' sampling settings are forced: ``temperature`` here wins over any ``config=``
    the wrapped module passes (see "How settings flow" in docs/variables.md).

    Args:
        module: the module to run.
        n: the most attempts (``N=``, DSPy's name, works too).
        reward_fn: ``reward_fn(inputs, prediction) -> float`` (sync or async).
        threshold: stop at the first attempt whose reward reaches it.
        fail_count: failed attempts tolerated before the error is raised (default: n - 1).
        N: DSPy's name for ``n``.
        temperature: sampling temperature forced on the attempts (None keeps the module's own).
            The default, 1.0, applies where the LM's provider can set a temperature; a value
            passed explicitly is required, and a provider that cannot honour it raises.
    """

    def __init__(
        self,
        module: Module,
        n: int | None = None,
        reward_fn: RewardFn | None = None,
        threshold: float = 1.0,
        fail_count: int | None = None,
        *,
        N: int | None = None,  # noqa: N803 - DSPy's name
        temperature: float | None = DEFAULT_TEMPERATURE,
    ) -> None:
        n = _attempts(n, N, reward_fn, type(self).__name__)
        assert reward_fn is not None
        self.module = module
        self.n = n
        self.reward_fn = reward_fn
        self.threshold = threshold
        self.temperature = temperature
        self.fail_count = n - 1 if fail_count is None else fail_count

    def _feedback(self, attempt: int, prediction: Prediction, reward: float) -> str | None:
        return None

    async def aforward(self, **inputs: Any) -> Prediction:
        best: Prediction | None = None
        best_reward = float("-inf")
        failures: list[BaseException] = []
        run = _assertions.current_run()
        for attempt in range(self.n):
            settings: dict[str, Any] = {"rollout_id": attempt}
            if self.temperature is not None:
                settings["temperature"] = float(self.temperature)
            best_effort = ("temperature",) if isinstance(self.temperature, _DefaultTemperature) else ()
            open_entries = _trace.current_entries()
            entries = open_entries if open_entries is not None else []
            start = len(entries)
            try:
                with forced_settings(best_effort=best_effort, **settings):
                    prediction = await self.module.acall(**inputs)
            except UserError:  # a setup mistake or a spent budget: another attempt cannot help
                raise
            except Exception as exc:
                failures.append(exc)
                if len(failures) > self.fail_count:
                    raise
                continue
            reward = await _reward(self.reward_fn, inputs, prediction)
            if reward > best_reward:
                best, best_reward = prediction, reward
            if reward >= self.threshold:
                break
            message = self._feedback(attempt, prediction, reward)
            if message is not None and run is not None:
                for entry in entries[start:]:
                    run.feedback.setdefault(id(entry.predictor), []).append((entry.completion, message))
        if best is None:
            raise failures[-1]
        return best


class Refine(BestOfN):
    """Like :class:`BestOfN`, but each new attempt sees feedback about the previous one.

    After an attempt below ``threshold``, every predictor it called is shown its previous answer
    and a message saying how it scored (or ``feedback_fn(inputs, prediction, reward)``'s text).

    Args:
        module: the module to run.
        n: the most attempts (``N=``, DSPy's name, works too).
        reward_fn: ``reward_fn(inputs, prediction) -> float``.
        threshold: stop at the first attempt whose reward reaches it.
        fail_count: failed attempts tolerated before the error is raised.
        N: DSPy's name for ``n``.
        feedback_fn: optional ``(inputs, prediction, reward) -> str`` advice for the next attempt.
        temperature: sampling temperature forced on the attempts.
    """

    def __init__(
        self,
        module: Module,
        n: int | None = None,
        reward_fn: RewardFn | None = None,
        threshold: float = 1.0,
        fail_count: int | None = None,
        *,
        N: int | None = None,  # noqa: N803 - DSPy's name
        feedback_fn: Callable[[dict[str, Any], Prediction, float], str] | None = None,
        temperature: float | None = DEFAULT_TEMPERATURE,
    ) -> None:
        super().__init__(module, n, reward_fn, threshold, fail_count, N=N, temperature=temperature)
        self.feedback_fn = feedback_fn
        self._inputs: dict[str, Any] = {}

    async def aforward(self, **inputs: Any) -> Prediction:
        self._inputs = inputs
        return await super().aforward(**inputs)

    def _feedback(self, attempt: int, prediction: Prediction, reward: float) -> str | None:
        if self.feedback_fn is not None:
            return self.feedback_fn(self._inputs, prediction, reward)
        return f"Attempt {attempt + 1} scored {reward:.2f}, below the required {self.threshold:.2f}. Improve on it."


def _format_attempt(completion: dict[str, Any]) -> str:
    reasoning = completion.get("reasoning", "")
    outputs = ", ".join(f"{k}: {v}" for k, v in completion.items() if k != "reasoning")
    return f"«I'm trying to {reasoning} I'm not sure but my prediction is {outputs}»"


class MultiChainComparison(Module):
    """Generate ``M`` reasoning attempts, then compare them to produce the final outputs.

    Args:
        signature: the task's signature.
        M: how many attempts to compare.
        temperature: sampling temperature of the attempts, forced on them (0.7 by default, applied
            where the LM's provider can set a temperature; a value passed explicitly is required).
    """

    def __init__(
        self,
        signature: Any,
        M: int = 3,  # noqa: N803 - DSPy's name
        temperature: float = _DefaultTemperature(0.7),
    ) -> None:
        sig = ensure_signature(signature)
        if M < 2:
            raise ConfigurationError("MultiChainComparison needs M >= 2")
        self.M = M
        self.signature = sig
        self.temperature = temperature
        self.generate = ChainOfThought(sig)
        fields: dict[str, Any] = {name: (spec.annotation, spec) for name, spec in sig.input_fields.items()}
        for i in range(1, M + 1):
            fields[f"attempt_{i}"] = (str, InputField(desc=f"student attempt #{i}"))
        fields["rationale"] = (str, OutputField(desc="compare the attempts and reason about the correct outputs"))
        fields.update({name: (spec.annotation, spec) for name, spec in sig.output_fields.items()})
        self.compare = Predict(
            make_signature(
                fields,
                f"{sig.instructions}\n\nSeveral student attempts are given. Compare them, then give the best outputs.",
                name=f"{sig.__name__}Comparison",
            )
        )

    async def aforward(self, completions: Sequence[dict[str, Any]] | None = None, **inputs: Any) -> Prediction:
        if completions is None:
            best_effort = ("temperature",) if isinstance(self.temperature, _DefaultTemperature) else ()
            with forced_settings(temperature=float(self.temperature), best_effort=best_effort):
                generated = await self.generate.acall(**inputs, config={"n": self.M})
            completions = generated.completions
        attempts = [dict(c) for c in completions[: self.M]]
        while len(attempts) < self.M:
            attempts.append(attempts[-1] if attempts else {})
        fields = {f"attempt_{i}": _format_attempt(c) for i, c in enumerate(attempts, 1)}
        result: Prediction = await self.compare.acall(**inputs, **fields)
        return result


async def _in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn`` in a worker thread, with the caller's context (asyncio is loaded on first use, not at import)."""
    import asyncio

    return await asyncio.to_thread(fn, *args, **kwargs)


def _starter(module: Any) -> Callable[..., Awaitable[Any]]:
    """How a pair's "module" is started: a module (or anything with ``acall``) by ``acall``.

    A plain function, as DSPy's ``Parallel`` takes too: an ``async def`` one is awaited, any
    other callable runs in a worker thread (it sees this task's settings and context).
    """
    acall = getattr(module, "acall", None)
    if callable(acall):
        return cast("Callable[..., Awaitable[Any]]", acall)
    if inspect.iscoroutinefunction(module):
        return cast("Callable[..., Awaitable[Any]]", module)
    if callable(module):
        return lambda *args, **kwargs: _in_thread(module, *args, **kwargs)
    raise ConfigurationError(
        f"Parallel: the first item of a pair must be a module or a function, got {type(module).__name__}"
    )


class Parallel(Module):
    """Run many ``(module, inputs)`` pairs concurrently; results keep the input order.

    A pair's module may be a plain function too (as in DSPy): an ``async def`` one is awaited,
    any other runs in a worker thread.

    The inputs of a pair, as in DSPy: an :class:`~elixirml.Example` gives its inputs as keywords
    (the example itself, positionally, with ``access_examples=False``); a dict gives keywords;
    a tuple gives positional arguments; a list is the pairs of a nested ``Parallel``. Callbacks
    see each pair's call as a child of the module that called the ``Parallel`` (which is a
    runner, not a step of its own, as in DSPy).

    Args:
        concurrency: pairs in flight at once (``num_threads`` is accepted as an alias).
        num_threads: DSPy's name for ``concurrency``.
        max_errors: tolerate up to this many failures (their results are ``None``); one more
            raises :class:`~elixirml.errors.BatchError`. By default the first failure is raised.
        access_examples: pass an Example's inputs as keywords (True) or the Example itself.
        return_failed_examples: return ``(results, failed_inputs, exceptions)`` as DSPy does.
        provide_traceback: log each tolerated failure with its traceback.
        disable_progress_bar: accepted for DSPy's code; no progress bar is shown.
        timeout: with ``straggler_limit``, DSPy's straggler rule: once at most
            ``straggler_limit`` pairs are unfinished, one running for ``timeout`` seconds (0:
            never) is started once more and the first attempt to finish counts.
        straggler_limit: see ``timeout``.
        return_exceptions: put a failure's exception in its place instead of raising.
    """

    def __init__(
        self,
        concurrency: int = 8,
        *,
        num_threads: int | None = None,
        max_errors: int | None = None,
        access_examples: bool = True,
        return_failed_examples: bool = False,
        provide_traceback: bool | None = None,
        disable_progress_bar: bool = False,
        timeout: float = 120,
        straggler_limit: int = 3,
        return_exceptions: bool = False,
    ) -> None:
        self.concurrency = num_threads or concurrency
        self.max_errors = max_errors
        self.access_examples = access_examples
        self.return_failed_examples = return_failed_examples
        self.provide_traceback = provide_traceback
        self.disable_progress_bar = disable_progress_bar
        self.timeout = timeout
        self.straggler_limit = straggler_limit
        self.return_exceptions = return_exceptions

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the pairs. Callbacks see each pair's module, not this runner (DSPy's ``Parallel`` is no module)."""
        return self._call_with_usage(args, kwargs)

    async def acall(self, *args: Any, **kwargs: Any) -> Any:
        """Run the pairs asynchronously (callbacks see each pair's module, as with calling it)."""
        return await self._acall_with_usage(args, kwargs)

    @property
    def num_threads(self) -> int:
        """DSPy's name for :attr:`concurrency`."""
        return self.concurrency

    @num_threads.setter
    def num_threads(self, value: int) -> None:
        self.concurrency = value

    def _pair_call(self, module: Any, inputs: Any) -> Callable[[], Any]:
        start = _starter(module)
        if isinstance(inputs, Example):
            if not self.access_examples:
                return lambda: start(inputs)
            values = dict((inputs.inputs() if inputs.input_keys is not None else inputs).items())
            return lambda: start(**values)
        if isinstance(inputs, dict):
            return lambda: start(**inputs)
        if isinstance(inputs, list) and isinstance(module, Parallel):
            return lambda: start(inputs)
        if isinstance(inputs, tuple):
            return lambda: start(*inputs)
        raise ConfigurationError(
            f"Parallel: the inputs of a pair must be an Example, a dict, a tuple, or a list of pairs for a nested "
            f"Parallel; got {type(inputs).__name__}"
        )

    async def aforward(self, exec_pairs: Sequence[tuple[Any, Any]], num_threads: int | None = None) -> Any:
        from ._batch import run_batch

        pairs = list(exec_pairs)
        return await run_batch(
            "Parallel",
            [self._pair_call(module, inputs) for module, inputs in pairs],
            [inputs for _, inputs in pairs],
            concurrency=num_threads or self.concurrency,
            return_exceptions=self.return_exceptions,
            max_errors=self.max_errors,
            return_failed_examples=self.return_failed_examples,
            timeout=self.timeout,
            straggler_limit=self.straggler_limit,
            provide_traceback=self.provide_traceback,
        )
