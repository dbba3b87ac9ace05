"""Predict and ChainOfThought: one LM step from a signature."""

from __future__ import annotations

import contextlib
import contextvars
import time
import typing
from collections.abc import Iterator, Sequence
from typing import Any

from .. import settings as _settings
from ..adapters import Adapter, adapter_for
from ..adapters._base import to_jsonable
from ..errors import ConfigurationError, LoadError, SignatureError
from ..lm import LM, Usage
from ..lm._types import estimate_tokens, messages_text
from ..runtime import run_sync
from ..schema import Example, OutputField, Prediction, Signature, ensure_signature
from . import _assertions, _events, _trace
from ._module import Module
from ._variable import Variable

_OVERRIDES: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("elixirml_overrides", default=None)


@contextlib.contextmanager
def call_overrides(**settings: Any) -> Iterator[None]:
    """Apply request settings (``rollout_id``, ``temperature``, ...) to every predictor call inside."""
    token = _OVERRIDES.set({**(_OVERRIDES.get() or {}), **settings})
    try:
        yield
    finally:
        _OVERRIDES.reset(token)


def _demo_to_json(demo: Any) -> dict[str, Any]:
    if isinstance(demo, Example):
        data = {"data": to_jsonable(demo.to_dict())}
        if demo.input_keys is not None:
            data["inputs"] = sorted(demo.input_keys)
        return data
    return {"data": to_jsonable(dict(demo))}


def _demo_from_json(item: Any) -> Example:
    if not isinstance(item, dict) or not isinstance(item.get("data"), dict):
        raise LoadError(f"Malformed demo in saved state: {item!r}")
    example = Example(item["data"])
    inputs = item.get("inputs")
    return example.with_inputs(*inputs) if inputs else example


class Predict(Module):
    """Ask an LM to fill a signature's output fields from its inputs.

    Args:
        signature: a Signature class or its string form (``"question -> answer"``).
        instructions: replaces the signature's instructions.
        demos: examples shown to the LM before the input (``Example`` or dicts).
        lm: the LM to use; default: the configured one (``em.configure(lm=...)``).
        adapter: the adapter; default: the configured one, else the LM's preferred one.
        config: default request settings for this predictor (``temperature``, ``n``, ...).
        **config_kwargs: more request settings.

    Call with keyword inputs; per-call request settings go in ``config={...}``::

        predict = em.Predict("question -> answer")
        pred = predict(question="...", config={"temperature": 0.2})
    """

    def __init__(
        self,
        signature: Any,
        *,
        instructions: str | None = None,
        demos: Sequence[Any] | None = None,
        lm: LM | None = None,
        adapter: Adapter | None = None,
        config: dict[str, Any] | None = None,
        **config_kwargs: Any,
    ) -> None:
        sig = self._prepare_signature(ensure_signature(signature))
        if instructions is not None:
            sig = sig.with_instructions(instructions)
        self.signature: type[Signature] = sig
        self.demos: list[Any] = list(demos or [])
        self.lm = lm
        self.adapter = adapter
        self.config: dict[str, Any] = {**(config or {}), **config_kwargs}

    def _prepare_signature(self, signature: type[Signature]) -> type[Signature]:
        """Adjust the user's signature (subclasses add fields); the base keeps it as it is."""
        return signature

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.signature.signature})"

    @property
    def instructions(self) -> str:
        """The signature's instructions."""
        return self.signature.instructions

    @instructions.setter
    def instructions(self, text: str) -> None:
        self.signature = self.signature.with_instructions(text)

    def reset(self) -> None:
        """Forget learned demos."""
        self.demos = []

    # ------------------------------------------------------------------ implicit variables
    def _variables(self) -> dict[str, Variable]:
        own = super()._variables()
        return {
            **own,
            "instructions": Variable.text(self.signature.instructions, name="instructions"),
            "demos": Variable("demos", list(self.demos), name="demos"),
            **{k: v for k, v in own.items() if k in ("instructions", "demos")},
        }

    def variable_value(self, name: str, *, resolve: bool = True) -> Any:
        if name == "instructions" and "instructions" not in super()._variables():
            return self.signature.instructions
        if name == "demos" and "demos" not in super()._variables():
            return list(self.demos)
        return super().variable_value(name, resolve=resolve)

    def _set_variable(self, name: str, value: Any) -> None:
        if name == "instructions":
            self.instructions = value
        elif name == "demos":
            self.demos = list(value)
        else:
            super()._set_variable(name, value)

    def forward(self, *args: Any, **kwargs: Any) -> Prediction:
        """Run synchronously; see :meth:`aforward`."""
        return run_sync(self.aforward(*args, **kwargs))

    async def aforward(
        self,
        *args: Any,
        config: dict[str, Any] | None = None,
        lm: LM | None = None,
        demos: Sequence[Any] | None = None,
        **inputs: Any,
    ) -> Prediction:
        """Run the LM step.

        Args:
            *args: not accepted; inputs are keywords (a clear TypeError says so).
            config: request settings for this call only (merged over the predictor's).
            lm: an LM for this call only.
            demos: demos for this call only.
            **inputs: the signature's input fields.
        """
        if args:
            raise TypeError(
                f"{type(self).__name__} takes its inputs as keywords, e.g. predict("
                + ", ".join(f"{n}=..." for n in self.signature.input_fields)
                + ")"
            )
        current = _settings.current()
        model = lm or self.lm or current.lm
        if model is None:
            raise ConfigurationError(
                "No LM configured. Call em.configure(lm=em.LM('local')) or pass lm=... to the module."
            )
        adapter = adapter_for(model, self.adapter or current.adapter)
        values = self.signature.validate_inputs(inputs)
        overrides = _OVERRIDES.get()
        settings = {**self.config, **(overrides or {}), **(config or {})} if (config or overrides) else self.config
        run = _assertions.current_run()
        feedback = run.feedback_for(self) if run is not None else []
        use_demos = self.demos if demos is None else demos
        start = time.perf_counter()
        if _events.streaming():
            name = self.signature.__name__
            outputs, text, messages = await adapter.astream_call(
                model,
                self.signature,
                use_demos,
                values,
                settings,
                feedback=feedback,
                on_chunk=lambda field, piece: _events.emit_chunk(name, field, piece),
            )
            usage = Usage(estimate_tokens(messages_text(messages)), estimate_tokens(text), calls=1).as_dict()
            cached = False
        else:
            outputs, response, messages = await adapter.acall(
                model, self.signature, use_demos, values, settings, feedback=feedback
            )
            text, usage, cached = response.text, response.usage.as_dict(), response.cached
        prediction = Prediction.from_completions(outputs, usage)
        if run is not None:
            _assertions.note_call(self, text, prediction)
        _trace.notify(self, prediction)
        if current.trace and _trace.active():
            _trace.record(
                _trace.TraceEntry(
                    predictor=self,
                    inputs=values,
                    prediction=Prediction.from_completions(outputs, usage),  # a copy: no cycle via .trace
                    messages=messages,
                    usage=usage,
                    latency=time.perf_counter() - start,
                    cached=cached,
                    completion=text,
                )
            )
        return prediction

    # ------------------------------------------------------------------ state
    def dump_state(self) -> dict[str, Any]:
        """Signature (with instructions), demos, request config and the LM's model name."""
        return {
            "type": type(self).__name__,
            "signature": self.signature.dump_state(),
            "demos": [_demo_to_json(d) for d in self.demos],
            "config": to_jsonable(self.config),
            "lm": self.lm.dump_state() if self.lm is not None else None,
        }

    def load_state(self, state: dict[str, Any]) -> Predict:
        """Load instructions, field descriptions, demos and config; keep this predictor's types."""
        try:
            saved_sig = state["signature"]
            saved_fields = {f["name"]: f for f in saved_sig["fields"]}
        except (KeyError, TypeError) as exc:
            raise LoadError(f"Malformed predictor state: missing {exc}") from None
        if list(saved_fields) == list(self.signature.fields):
            sig = self.signature.with_instructions(saved_sig.get("instructions", self.signature.instructions))
            for name, item in saved_fields.items():
                if item.get("desc") != sig.fields[name].desc or item.get("prefix") != sig.fields[name].prefix:
                    sig = sig.with_updated_fields(name, desc=item.get("desc"), prefix=item.get("prefix"))
            self.signature = sig
        else:
            try:
                self.signature = Signature.from_state(saved_sig)
            except SignatureError as exc:
                raise LoadError(f"Cannot rebuild the saved signature: {exc}") from None
        self.demos = [_demo_from_json(d) for d in state.get("demos", [])]
        self.config = dict(state.get("config") or {})
        return self

    @classmethod
    def from_saved_state(cls, state: dict[str, Any]) -> Predict:
        """Build a predictor from a saved program file's state (used by ``em.load``)."""
        mine = state
        try:
            signature = Signature.from_state(mine["signature"])
        except (SignatureError, KeyError, TypeError) as exc:
            raise LoadError(f"Cannot rebuild the saved signature: {exc}") from None
        predictor = typing.cast(Predict, cls.__new__(cls))
        Predict.__init__(predictor, signature)
        predictor.signature = signature  # already includes any prepended fields
        predictor.demos = [_demo_from_json(d) for d in mine.get("demos", [])]
        predictor.config = dict(mine.get("config") or {})
        return predictor


class ChainOfThought(Predict):
    """Predict with a ``reasoning`` output field produced before the other outputs.

    Args:
        signature: as for :class:`Predict`.
        rationale_desc: the description of the reasoning field.
        **kwargs: as for :class:`Predict`.
    """

    REASONING_DESC = "Think step by step in order to produce the outputs."

    def __init__(self, signature: Any, *, rationale_desc: str | None = None, **kwargs: Any) -> None:
        self._rationale_desc = rationale_desc or self.REASONING_DESC
        super().__init__(signature, **kwargs)

    def _prepare_signature(self, signature: type[Signature]) -> type[Signature]:
        if "reasoning" in signature.fields:
            return signature
        desc = getattr(self, "_rationale_desc", self.REASONING_DESC)
        return signature.prepend("reasoning", OutputField(desc=desc), str)
