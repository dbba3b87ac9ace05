"""Predict and ChainOfThought: one LM step from a signature."""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import time
import typing
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from .. import settings as _settings
from .._log import logger
from ..adapters import Adapter, adapter_for
from ..errors import (
    AdapterParseError,
    ConfigurationError,
    LoadError,
    PositionalInputsError,
    SignatureError,
    ValidationError,
    VariableError,
    truncate,
)
from ..lm import (
    LM,
    History,
    LMResponse,
    Usage,
    check_settings,
    estimate_message_tokens,
    estimate_tokens,
    track_usage,
)
from ..runtime import current_context, run_scope, run_sync
from ..schema import (
    OutputField,
    Prediction,
    Signature,
    ensure_signature,
    literal_values,
    to_jsonable,
    type_to_str,
)
from ..variables import Variable
from . import _assertions, _events, _trace
from ._module import ANY_PREDICTOR, Module
from ._persist import refuse_unsafe_lm_state
from ._rebuild import constructing, variable_read_in_construction
from ._serialize import demos_from_state, demos_to_state

DECODING_MODES = ("auto", "generate", "score", "calibrated")
#: Prompt formats an implicit ``adapter`` variable chooses from ("auto": configured, else the LM's choice).
ADAPTER_CHOICES = ("auto", "chat", "json", "plain")
RESERVED_INPUTS = frozenset({"config", "lm", "demos"})


@contextlib.contextmanager
def forced_settings(*, best_effort: Iterable[str] = (), **settings: Any) -> Iterator[None]:
    """Force request settings (``rollout_id``, ``temperature``, ...) on every predictor call inside.

    Used by wrapper modules (BestOfN, Refine) and bootstrapping: forced values take precedence
    over everything else, including a per-call ``config=`` (see ``merge_settings``). Settings
    named in ``best_effort`` are sent only to LMs whose provider honours them (Anthropic's SDK
    takes no temperature: bootstrapping there samples at the provider's default); any other
    forced setting a provider cannot honour raises, as every setting does.
    """
    context = current_context()
    with run_scope(
        forced={**(context.forced or {}), **settings},
        best_effort=context.best_effort | frozenset(best_effort),
    ):
        yield


_UNSET = object()
# Request settings only code may give a predictor: a saved file that sets them is refused.
_CODE_ONLY_SETTINGS = frozenset({"cache", "rollout_id", "tools", "tool_choice"})
# Attributes whose changes a rebuild carries over one by one (see Predict._changes_since_construction).
_PREDICTOR_STATE = frozenset({"signature", "demos", "config", "lm", "decoding", "adapter", "history"})
#: The most characters (prompts and answers) a predictor's ``history`` keeps.
PREDICTOR_HISTORY_BYTES = 1024 * 1024


class PredictorHistory(History):
    """A predictor's recent LM calls (DSPy's per-module ``history``), newest last.

    At most the setting ``history_size`` entries (read at each call; 0 keeps none) and
    :data:`PREDICTOR_HISTORY_BYTES` characters. A copy of the predictor starts with an empty one.
    """

    def __deepcopy__(self, memo: dict[int, Any]) -> PredictorHistory:
        return PredictorHistory(maxlen=self.maxlen, max_bytes=self.max_bytes)

    def __copy__(self) -> PredictorHistory:
        return PredictorHistory(maxlen=self.maxlen, max_bytes=self.max_bytes)


def _names_adapters(variable: Variable) -> bool:
    """Whether ``variable`` chooses among adapter names (a prompt-format variable)."""
    options = variable.options if variable.kind == "choice" else None
    if not options or not all(isinstance(o, str) for o in options):
        return False
    for option in options:
        if option == "auto":
            continue
        try:
            adapter_for(None, option)
        except (ConfigurationError, TypeError):
            return False
    return True


def _closed_output(signature: type[Signature]) -> tuple[str, tuple[Any, ...]] | None:
    if len(signature.output_fields) != 1:
        return None
    name, spec = next(iter(signature.output_fields.items()))
    values = literal_values(spec.annotation)
    return (name, values) if values else None


def placeholder_outputs(signature: type[Signature]) -> dict[str, Any]:
    """A stand-in value of each output field's type (for probe calls, which never reach an LM)."""
    values: dict[str, Any] = {}
    for name, spec in signature.output_fields.items():
        annotation = spec.annotation
        allowed = literal_values(annotation)
        origin = typing.get_origin(annotation) or annotation
        if allowed:
            values[name] = allowed[0]
        elif origin is bool:
            values[name] = False
        elif origin in (int, float):
            values[name] = origin(0)
        elif origin in (list, tuple, set):
            values[name] = []
        elif origin is dict:
            values[name] = {}
        elif origin is str:
            values[name] = ""
        else:
            values[name] = None
    return values


def _honoured(forced: Mapping[str, Any], best_effort: frozenset[str], supported: frozenset[str]) -> dict[str, Any]:
    """The forced settings less the best-effort ones the LM does not honour."""
    return {k: v for k, v in forced.items() if k not in best_effort or k in supported}


def _correction(exc: ValidationError | AdapterParseError) -> str:
    """What a re-ask tells the LM about its answer that failed the schema."""
    if isinstance(exc, AdapterParseError):
        return f"the answer could not be read: {exc.reason}."
    if exc.field is None:
        return f"the answer breaks a rule of {exc.schema}: {exc.rule}."
    value = exc.value if isinstance(exc.value, str) else json.dumps(to_jsonable(exc.value), default=str)
    return f"the value of `{exc.field}` was {value}, which is invalid: {exc.rule}."


class Predict(Module):
    """Ask an LM to fill a signature's output fields from its inputs.

    Args:
        signature: a Signature class or its string form (``"question -> answer"``).
        instructions: replaces the signature's instructions.
        demos: examples shown to the LM before the input (``Example`` or dicts).
        lm: the LM to use, or a model name (built as ``em.LM(name)``); default: the configured
            one (``em.configure(lm=...)``).
        adapter: the prompt format: an instance, or a name (``"chat"``, ``"json"``, ``"plain"``),
            or a ``Variable.choice`` of names; default: the configured one, else the LM's choice
            (the local model: ``"plain"`` for a single closed-set output, else ``"json"``). A named
            format is also the implicit variable ``adapter``, which optimizers search.
        config: default request settings for this predictor (``temperature``, ``n``, ...).
        decoding: for a single closed-set output (``Literal``, enum, ``bool``): ``"generate"``
            the answer, ``"score"`` each allowed value by log-probability and take the best, or
            ``"calibrated"`` scores (divided by the scores of a content-free input, Zhao et al.
            2021). Scoring needs an LM with ``supports_scoring`` (the local model). ``"auto"``
            (default): the LM's choice for closed-set outputs (``"score"`` on the local model,
            which measured 15-20 points better there), else ``"generate"``.
        **config_kwargs: more request settings.

    Call with keyword inputs; per-call request settings go in ``config={...}``::

        predict = em.Predict("question -> answer")
        pred = predict(question="...", config={"temperature": 0.2})
    """

    _elixirml_predictor = True

    def __init__(
        self,
        signature: Any,
        *,
        instructions: str | None = None,
        demos: Sequence[Any] | None = None,
        lm: LM | str | None = None,
        adapter: Adapter | str | Variable | None = None,
        config: dict[str, Any] | None = None,
        decoding: str = "auto",
        **config_kwargs: Any,
    ) -> None:
        if decoding not in DECODING_MODES:
            raise ConfigurationError(f"decoding must be one of {DECODING_MODES}, got {decoding!r}")
        self.decoding = decoding
        sig = self._prepare_signature(ensure_signature(signature))
        clash = sorted(set(sig.input_fields) & RESERVED_INPUTS)
        if clash:
            raise SignatureError(
                f"Input field(s) {clash} of {sig.__name__} clash with {type(self).__name__}'s own keywords "
                f"{sorted(RESERVED_INPUTS)}; rename them."
            )
        if instructions is not None:
            sig = sig.with_instructions(instructions)
        self.signature: type[Signature] = sig
        if isinstance(demos, (str, bytes, Mapping)):
            raise ConfigurationError(f"demos= takes a list of examples, got {type(demos).__name__}")
        for i, demo in enumerate(demos or []):
            if not isinstance(demo, Mapping) and not callable(getattr(demo, "items", None)):
                raise ConfigurationError(
                    f"demos[{i}] of {type(self).__name__}({sig.signature}) is {demo!r}; "
                    "each demo is an em.Example or a dict of field values"
                )
        self.demos: list[Any] = list(demos or [])
        self.history = PredictorHistory(maxlen=_settings.current().history_size, max_bytes=PREDICTOR_HISTORY_BYTES)
        if isinstance(lm, str):
            lm = LM(lm)  # a model name: built now, so a name that names no LM fails here, not at the first call
        elif lm is not None and not isinstance(lm, LM):
            raise ConfigurationError(
                f"lm= of {type(self).__name__}({sig.__name__}) takes an em.LM or a model name such as "
                f"'openai/gpt-4o-mini'; got {lm!r} ({type(lm).__name__})"
            )
        self.lm = lm
        self._adapter_choice: Variable | None = None
        # True when the adapter comes from a variable of an enclosing module (``adapter=self.fmt``
        # in a program's __init__): that variable owns the choice, and no implicit one competes.
        self._adapter_from_variable = False
        if isinstance(adapter, Variable) and adapter.name:
            owner = variable_read_in_construction(_names_adapters, variable=adapter)
            if owner is not None:
                adapter = owner[0].variable_value(owner[1], resolve=False)  # read: a rebuild re-runs __init__
                self._adapter_from_variable = True
            else:
                adapter = copy.copy(adapter)  # another module's variable keeps its own name
        if isinstance(adapter, Variable):
            if adapter.kind != "choice" or not all(isinstance(o, str) for o in adapter.options or ()):
                raise ConfigurationError("adapter=Variable.choice([...]) takes adapter names, e.g. ['chat', 'plain']")
            for option in adapter.options or ():
                adapter_for(None, option)  # an unknown name fails here, not at the first call
            adapter.name = "adapter"
            self._adapter_choice = adapter
            self.adapter: Adapter | str | None = str(adapter.default)
        else:
            if isinstance(adapter, str):
                adapter_for(None, adapter)
                if not self._adapter_from_variable and constructing()[:-1]:
                    found = variable_read_in_construction(_names_adapters, value=adapter)
                    self._adapter_from_variable = found is not None
            self.adapter = adapter
        if config is not None and not isinstance(config, dict):
            raise ConfigurationError(
                f"config= of {type(self).__name__}({sig.__name__}) takes a dict of request settings, e.g. "
                f"{{'temperature': 0.2}}; got {config!r}"
            )
        where = f"config of {type(self).__name__}({sig.__name__})"
        self.config: dict[str, Any] = dict(check_settings({**(config or {}), **config_kwargs}, where=where))

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
        """Forget what was learned or set after construction, as DSPy's ``reset``: demos and the predictor's own LM.

        The lists DSPy code keeps on a predictor (``traces``, ``train``), where a program set
        them, are emptied too. (``program.reset_copy()`` forgets demos only: the copy keeps its LMs.)
        """
        self.demos = []
        self.lm = None
        for name in ("traces", "train"):
            if name in self.__dict__:
                setattr(self, name, [])

    def update_config(self, **settings: Any) -> None:
        """Change some of this predictor's default request settings (DSPy's ``update_config``).

        Raises:
            ConfigurationError: an unknown setting or a bad value, as in the constructor.
        """
        where = f"config of {type(self).__name__}({self.signature.__name__})"
        self.config = {**self.config, **check_settings(settings, where=where)}

    def get_config(self) -> dict[str, Any]:
        """The predictor's default request settings (DSPy's ``get_config``)."""
        return self.config

    # ------------------------------------------------------------------ implicit variables
    def closed_output(self) -> tuple[str, tuple[Any, ...]] | None:
        """``(field, allowed values)`` when the only output is a closed set, else None."""
        return self.signature.memo("closed_output", _closed_output, self.signature)

    def _variables(self) -> dict[str, Variable]:
        own = super()._variables()
        implicit = {
            "instructions": Variable.text(self.signature.instructions, name="instructions"),
            "demos": Variable("demos", list(self.demos), name="demos"),
        }
        if self.decoding not in ("auto", "generate") or self.closed_output() is not None:
            implicit["decoding"] = Variable.choice(list(DECODING_MODES), default=self.decoding, name="decoding")
        choice = self.__dict__.get("_adapter_choice")
        if choice is not None:
            implicit["adapter"] = choice
        elif self.__dict__.get("_adapter_from_variable"):
            pass  # the enclosing module's variable chooses the format
        elif not isinstance(self.adapter, Adapter):  # a custom adapter object is not a choice of name
            implicit["adapter"] = Variable.choice(list(ADAPTER_CHOICES), default=self.adapter or "auto", name="adapter")
        return {**own, **implicit, **{k: v for k, v in own.items() if k in implicit}}

    def variable_value(self, name: str, *, resolve: bool = True) -> Any:
        declared = super()._variables()
        if name == "instructions" and name not in declared:
            return self.signature.instructions
        if name == "demos" and name not in declared:
            return list(self.demos)
        if name == "decoding" and name not in declared:
            return self.decoding
        if name == "adapter" and name not in declared and not isinstance(self.adapter, Adapter):
            if self.__dict__.get("_adapter_from_variable"):
                raise VariableError(
                    f"{self!r} takes its adapter from a variable of the module that builds it; set that one"
                )
            return self.adapter or "auto"
        return super().variable_value(name, resolve=resolve)

    def _set_variable(self, name: str, value: Any) -> None:
        if name == "instructions":
            self.instructions = value
        elif name == "demos":
            self.demos = list(value)
        elif name == "decoding":
            self.decoding = value
        elif name == "adapter" and not isinstance(self.adapter, Adapter):
            self.adapter = None if value == "auto" else value
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
            *args: not accepted; inputs are keywords (``PositionalInputsError``, a ValueError and a TypeError, says so).
            config: request settings for this call only (merged over the predictor's).
            lm: an LM for this call only.
            demos: demos for this call only.
            **inputs: the signature's input fields.
        """
        if args:
            raise self._positional_error()
        current = _settings.current()
        context = current_context()
        bindings = context.bindings
        bound = (bindings.get(id(self)) or bindings.get(ANY_PREDICTOR)) if bindings else None
        model = lm or (bound and bound.get("lm")) or self.lm or current.lm
        if model is None:
            raise ConfigurationError(
                "No LM configured. Call em.configure(lm=em.LM('local')) or pass lm=... to the module."
            )
        closed = self.closed_output() is not None
        adapter = adapter_for(model, self.adapter or current.adapter or (model.closed_set_adapter if closed else None))
        decoding = self.decoding
        if decoding == "auto":
            decoding = model.closed_set_decoding if closed and model.supports_scoring else "generate"
        if current.warn_on_type_mismatch or not inputs.keys() <= self.signature.input_fields.keys():
            self._report_inputs(inputs, current.warn_on_type_mismatch)
        values = self.signature.validate_inputs(inputs)
        forced = context.forced
        if forced and context.best_effort and not context.best_effort <= model.supported_settings:
            forced = _honoured(forced, context.best_effort, model.supported_settings)
        settings = model.merge_settings(  # the one merge of every layer, each checked
            forced=forced,
            call=config,
            bound=bound.get("settings") if bound else None,
            predictor=self.config,
            owner=self,
        )
        run: _assertions.RunState | None = context.run
        feedback = run.feedback.get(id(self), ()) if run is not None else ()
        use_demos = self.demos if demos is None else demos
        if context.probe is not None:
            return self._probe(context.probe, model, adapter, decoding, use_demos, values, settings)
        start = time.perf_counter()
        if decoding != "generate":
            outputs, text, messages, usage = await self._score_decode(
                model, adapter, decoding, use_demos, values, feedback
            )
            cached = False
        elif context.stream is not None:  # a streamed run (em.streamify)
            outputs, text, messages = await adapter.astream_call(
                model,
                self.signature,
                use_demos,
                values,
                settings,
                feedback=feedback,
                on_chunk=functools.partial(_events.emit_chunk, self.signature.__name__),
            )
            usage = Usage(estimate_message_tokens(messages), estimate_tokens(text), calls=1).as_dict()
            cached = False
        else:
            retries = adapter.output_retries
            if retries is None or "output_retries" in current.layers:  # a setting given explicitly wins
                retries = current.output_retries
            outputs, response, messages, usage = await self._generate(
                model, adapter, use_demos, values, settings, feedback, retries
            )
            text, cached = response.text, response.cached
        if current.history_size or self.__dict__.get("history"):
            self._remember(current.history_size, model, messages, settings, text, usage, cached)
        prediction = Prediction.from_completions(outputs, usage)
        if run is not None:
            run.last_call = _assertions.LastCall(self, text, prediction)
        for listener in context.listeners:
            listener(self, prediction)
        entries = context.trace if current.trace else None
        if entries is not None:
            entries.append(
                _trace.TraceEntry(
                    self,
                    values,
                    None,
                    messages,
                    usage,
                    time.perf_counter() - start,
                    cached,
                    completion=text,
                    outputs=outputs,
                )
            )
            if len(entries) > current.max_trace_size:
                del entries[: len(entries) - current.max_trace_size]
        return prediction

    def _positional_error(self) -> PositionalInputsError:
        """DSPy's error for positional arguments (its exact words): what to call instead."""
        names = list(self.signature.input_fields)
        example = f"{names[0]}=input_value, ..." if names else "..."
        cls = type(self)
        shown = f"dspy.{cls.__name__}" if cls.__module__.startswith("elixirml.") else cls.__name__
        return PositionalInputsError(
            f"Positional arguments are not allowed when calling `{shown}`, must use keyword "
            f"arguments that match your signature input fields: '{', '.join(names)}'. For example: "
            f"`predict({example})`."
        )

    def _remember(
        self,
        size: int,
        model: LM,
        messages: list[dict[str, Any]],
        settings: dict[str, Any],
        text: str,
        usage: dict[str, Any],
        cached: bool,
    ) -> None:
        """Add this call to the predictor's ``history`` (bounded by the setting ``history_size``)."""
        history = self.__dict__.get("history")
        if not isinstance(history, PredictorHistory) or history.maxlen != size:
            history = self.history = PredictorHistory(history or (), maxlen=size, max_bytes=PREDICTOR_HISTORY_BYTES)
        if size:
            history.append(
                {
                    "model": model.model,
                    "messages": messages,
                    "settings": dict(settings),
                    "outputs": [text],
                    "usage": usage,
                    "cached": cached,
                    "timestamp": time.time(),
                }
            )

    def _report_inputs(self, inputs: dict[str, Any], mismatches: bool) -> None:
        """Log, as DSPy does, inputs the signature does not have and (when asked) inputs of the wrong type."""
        fields = self.signature.input_fields
        extra = [name for name in inputs if name not in fields]
        if extra:
            logger("program").warning(
                "Input contains fields not in signature. These fields will be ignored: %s. Expected fields: %s.",
                extra,
                list(fields),
            )
        if not mismatches:
            return
        for name in self.signature.input_type_mismatches(inputs):
            value = inputs[name]
            logger("program").warning(
                "Type mismatch for field '%s': expected %s based on the signature of %s, but the provided value "
                "is incompatible: %s (%s).",
                name,
                type_to_str(fields[name].annotation),
                self.signature.__name__,
                truncate(value),
                type(value).__name__,
            )

    async def _generate(
        self,
        model: LM,
        adapter: Adapter,
        demos: Sequence[Any],
        values: dict[str, Any],
        settings: dict[str, Any],
        feedback: Sequence[tuple[str, str]],
        retries: int,
    ) -> tuple[list[dict[str, Any]], LMResponse, list[dict[str, Any]], dict[str, Any]]:
        """Ask the LM; an answer that fails the schema is asked again with the error as feedback.

        At most ``retries`` (the adapter's ``output_retries``, else the setting, default 2) re-asks, as Instructor
        re-asks on Pydantic errors; each is an LM call, so it counts in usage and call budgets.
        The returned usage is the sum over the attempts: the answer returned and every answer
        re-asked before it (each error carries its answer's usage, so a call answered at once
        opens no usage tracker). After the last, the error is raised with the number of
        attempts and what to do. Values are never clamped or coerced into range.
        """
        asked: Sequence[tuple[str, str]] = feedback
        failures = 0
        spent: Usage | None = None
        while True:
            try:
                outputs, response, messages = await adapter.acall(
                    model, self.signature, demos, values, settings, feedback=asked
                )
            except (ValidationError, AdapterParseError) as exc:
                if exc.completion is None:  # not an answer the LM gave: nothing to correct
                    raise
                failures += 1
                if exc.usage is not None:
                    spent = Usage() if spent is None else spent
                    spent.add(exc.usage)
                if failures > retries:
                    raise self._gave_up(exc, failures, retries, spent) from exc
                asked = [*asked, (exc.completion, _correction(exc))]
                continue
            break
        if spent is None:
            return outputs, response, messages, response.usage.as_dict()
        spent.add(response.usage)
        return outputs, response, messages, spent.as_dict()

    def _gave_up(
        self, exc: ValidationError | AdapterParseError, attempts: int, retries: int, spent: Usage | None
    ) -> Exception:
        """The error raised when every answer failed the schema: the last failure, with what to do.

        Its ``usage`` is that of every answer (``spent``).
        """
        tried = (
            f"The LM gave {attempts} answer(s), re-asked {retries} time(s) with the error as feedback "
            "(setting output_retries)"
            if retries
            else "The LM was not re-asked (output_retries=0)"
        )
        what = (
            "What to do: state the rule in the field's description (OutputField(desc=...)), show demos with "
            "valid values, use a stronger LM, or raise output_retries"
        )
        error: ValidationError | AdapterParseError
        if isinstance(exc, ValidationError):
            error = ValidationError(exc.schema, exc.field, exc.value, exc.rule, hint=f"{tried}. {what}.")
        else:
            error = AdapterParseError(exc.adapter, exc.signature, exc.completion, exc.reason, hint=f"{tried}. {what}.")
        error.completion = exc.completion
        error.attempts = attempts
        error.usage = spent
        return error

    def _probe(
        self,
        probe: Any,
        model: LM,
        adapter: Adapter,
        decoding: str,
        demos: Sequence[Any],
        values: dict[str, Any],
        settings: dict[str, Any],
    ) -> Prediction:
        """Record the request this call would send and answer with placeholder outputs (no LM call).

        Optimizers probe a program this way to find variables that change no request.
        """
        if decoding != "generate":
            if self.closed_output() is None or not model.supports_scoring:
                self._score_decode_check(model, decoding)
            messages = adapter.scoring_messages(self.signature, demos, values)
            request: dict[str, Any] = {}
        else:
            messages, request = adapter._prepare(model, self.signature, demos, values, settings, ())
        probe.record(
            {
                "module": type(self).__name__,
                "lm": id(model),
                "adapter": type(adapter).__name__,
                "decoding": decoding,
                "messages": messages,
                "settings": dict(request) if request else {},
            }
        )
        return Prediction.from_completions([placeholder_outputs(self.signature)], {})

    def _score_decode_check(self, model: LM, decoding: str) -> None:
        if self.closed_output() is None:
            raise ConfigurationError(
                f"decoding={decoding!r} needs a single closed-set output field (Literal, enum or bool); "
                f"{self.signature.__name__} has {list(self.signature.output_fields)}"
            )
        if not model.supports_scoring:
            raise ConfigurationError(
                f"decoding={decoding!r} needs an LM that can score continuations; {model!r} cannot "
                "(use decoding='generate' or an LM with supports_scoring, such as em.LM('local'))"
            )

    async def _score_decode(
        self,
        model: LM,
        adapter: Adapter,
        decoding: str,
        demos: Sequence[Any],
        values: dict[str, Any],
        feedback: Any,
    ) -> tuple[list[dict[str, Any]], str, list[dict[str, Any]], dict[str, Any]]:
        closed = self.closed_output()
        if closed is None:
            self._score_decode_check(model, decoding)
        assert closed is not None
        field, allowed = closed
        messages = adapter.scoring_messages(self.signature, demos, values, feedback)
        prefix, continuations = adapter.scoring_parts(self.signature, field, allowed)
        with track_usage() as usage:
            scores = await model.ascore(messages, prefix, continuations)
            if decoding == "calibrated":
                content_free = {name: "N/A" for name in self.signature.input_fields}
                cf_messages = adapter.scoring_messages(self.signature, demos, content_free)
                prior = await model.ascore(cf_messages, prefix, continuations)
                scores = [s - p for s, p in zip(scores, prior)]
        best = max(range(len(allowed)), key=lambda i: scores[i])
        outputs = self.signature.validate_outputs({field: allowed[best]})
        text = json.dumps({"scores": {str(v): s for v, s in zip(allowed, scores)}})
        return [outputs], text, messages, usage.as_dict()

    # ------------------------------------------------------------------ rebuilds
    def _snapshot(self) -> dict[str, Any]:
        base = super()._snapshot()
        base["attrs"] = {k: v for k, v in base["attrs"].items() if k not in _PREDICTOR_STATE}
        return {
            **base,
            "instructions": self.signature.instructions,
            "demos": list(self.demos),
            "settings": dict(self.config),
            "lm": self.lm,
            "decoding": self.decoding,
            "adapter": self.adapter,
        }

    def _changes_since_construction(self) -> dict[str, Any]:
        changes = super()._changes_since_construction()
        baseline = self.__dict__.get("_baseline")
        if baseline is None:
            return changes
        if self.signature.instructions != baseline["instructions"]:
            changes["instructions"] = self.signature.instructions
        if self.demos != baseline["demos"]:
            changes["demos"] = list(self.demos)
        settings = {k: v for k, v in self.config.items() if baseline["settings"].get(k, _UNSET) != v}
        if settings:
            changes["settings"] = settings
        if self.lm is not baseline["lm"]:
            changes["lm"] = self.lm
        for name in ("decoding", "adapter"):
            if getattr(self, name) != baseline[name]:
                changes[name] = getattr(self, name)
        return changes

    def _restore_changes(self, old: Any, changes: Any) -> None:
        super()._restore_changes(old, changes)
        if "instructions" in changes:
            self.instructions = changes["instructions"]
        if "demos" in changes:
            self.demos = list(changes["demos"])
        if "settings" in changes:
            self.config = {**self.config, **changes["settings"]}
        for name in ("lm", "decoding", "adapter"):
            if name in changes:
                setattr(self, name, changes[name])

    # ------------------------------------------------------------------ state
    def dump_state(self) -> dict[str, Any]:
        """Signature (with instructions), demos, request config and the LM's model name."""
        return {
            "type": type(self).__name__,
            "signature": self.signature.dump_state(),
            **demos_to_state(self.demos),
            "config": to_jsonable(self.config),
            "decoding": self.decoding,
            **({"adapter": self.adapter} if isinstance(self.adapter, str) else {}),
            "lm": self.lm.dump_state() if self.lm is not None else None,
        }

    def load_state(self, state: dict[str, Any], *, allow_unsafe_lm_state: bool = False) -> Predict:
        """Load instructions, field descriptions, demos and config; keep this predictor's types and LM.

        ``allow_unsafe_lm_state=True`` (DSPy's opt-in to build the LM from the file) is refused
        with :class:`~elixirml.errors.ConfigurationError`; set the LM in code.
        """
        refuse_unsafe_lm_state(allow_unsafe_lm_state)
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
            saved_name = saved_sig.get("name")
            if isinstance(saved_name, str) and saved_name.isidentifier():  # a new class: renaming it is safe
                sig.__name__ = sig.__qualname__ = saved_name
            self.signature = sig
        else:
            try:
                self.signature = Signature.from_state(saved_sig)
            except SignatureError as exc:
                raise LoadError(f"Cannot rebuild the saved signature: {exc}") from None
        self.demos = demos_from_state(state, list(self.signature.input_fields))
        self.config = self._loaded_config(state)
        decoding = state.get("decoding", "auto")
        if decoding not in DECODING_MODES:
            raise LoadError(f"Unknown decoding mode {decoding!r} in saved state")
        self.decoding = decoding
        self._load_adapter(state)
        return self

    def _loaded_config(self, state: dict[str, Any]) -> dict[str, Any]:
        """The request settings of a saved predictor, checked like code's (a file never steers requests).

        Refused with ``LoadError``: unknown keys (``model``, ``messages``, ``api_base``, ...),
        values of the wrong type, and what only code may set: the cache, rollout ids, tools.
        """
        raw = state.get("config") or {}
        where = f"saved config of {type(self).__name__}({self.signature.__name__})"
        if not isinstance(raw, dict):
            raise LoadError(f"{where} must be a mapping of request settings, got {type(raw).__name__}")
        refused = sorted(_CODE_ONLY_SETTINGS & set(raw))
        if refused:
            raise LoadError(
                f"{where} sets {refused}, which a saved file may not set (they choose files, rollouts or "
                "tools); set them in code after loading"
            )
        return dict(check_settings(raw, where=where, error=LoadError))

    def _load_adapter(self, state: dict[str, Any]) -> None:
        name = state.get("adapter")
        if name is None:
            return
        try:
            adapter_for(None, name)
        except (TypeError, ConfigurationError) as exc:
            raise LoadError(f"Saved predictor state names an unknown adapter: {exc}") from None
        self.adapter = name

    @classmethod
    def from_saved_state(cls, state: dict[str, Any]) -> Predict:
        """Build a predictor from a saved program file's state (used by ``em.load``)."""
        mine = state
        try:
            signature = Signature.from_state(mine["signature"])
        except (SignatureError, KeyError, TypeError) as exc:
            raise LoadError(f"Cannot rebuild the saved signature: {exc}") from None
        predictor = cls.__new__(cls)
        Predict.__init__(predictor, signature)
        predictor.signature = signature  # already includes any prepended fields
        predictor.demos = demos_from_state(mine, list(signature.input_fields))
        predictor.config = predictor._loaded_config(mine)
        predictor.decoding = mine.get("decoding", "auto") if mine.get("decoding") in DECODING_MODES else "auto"
        predictor._load_adapter(mine)
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

    @property
    def predict(self) -> ChainOfThought:
        """DSPy's inner ``Predict`` of a ChainOfThought: here, the module itself (``cot.predict.demos = [...]``)."""
        return self

    def _prepare_signature(self, signature: type[Signature]) -> type[Signature]:
        if "reasoning" in signature.fields:
            return signature
        desc = getattr(self, "_rationale_desc", self.REASONING_DESC)
        return signature.prepend("reasoning", OutputField(desc=desc), str)
