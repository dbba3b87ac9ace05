"""The adapter protocol: a signature and inputs become messages; a completion becomes outputs.

An adapter owns the prompt format. It never sends a second LM request on its own: a parse
failure raises :class:`~elixirml.errors.AdapterParseError` (with the raw completion) unless the
user configured a ``fallback`` adapter.
"""

from __future__ import annotations

import dataclasses
import json
import re
import typing
from collections.abc import Awaitable, Sequence
from typing import Any

import pydantic

from .. import schema as _schema  # the rich types (_schema.Image, ...) load on first use, with pydantic's models
from ..errors import (
    AdapterParseError,
    OutputError,
    TruncatedResponseError,
    ValidationError,
    truncate,
)
from ..lm import LM, LMResponse, MergedSettings, Message, Usage
from ..runtime import active_callbacks, end_callback, observe_callbacks, start_callback
from ..schema import Example, FieldSpec, Signature, field_marker, literal_values, type_to_str
from ..schema import format_value as format_value  # re-exported: adapters and modules import them here
from ..schema import to_jsonable as to_jsonable
from ._escape import escape_markers

_FENCE_RE = re.compile(r"^\s*```[\w-]*\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)


def strip_fences(text: str) -> str:
    """Remove one surrounding markdown code fence, if present."""
    if "```" not in text:
        return text
    match = _FENCE_RE.match(text)
    return match.group(1) if match else text


def type_hint(spec: FieldSpec) -> str:
    """Words telling the LM what a field's value must look like."""
    allowed = literal_values(spec.annotation)
    if allowed is not None and spec.annotation is not bool:
        return "must be exactly one of: " + ", ".join(str(a) for a in allowed)
    if spec.annotation is str:
        return ""
    hint = getattr(spec.annotation, "prompt_hint", None)
    if hint is not None:  # a rich type that says how it is written (em.Code, em.ToolCalls)
        return str(hint())
    rules = []
    for key, word in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
        if key in spec.constraints:
            rules.append(f"{word} {spec.constraints[key]}")
    text = f"must be a value of type {type_to_str(spec.annotation)}"
    if rules:
        text += " (" + ", ".join(rules) + ")"
    return text


def describe_fields(fields: dict[str, FieldSpec]) -> str:
    """A numbered list of fields with types and descriptions."""
    lines = []
    for i, (name, spec) in enumerate(fields.items(), 1):
        line = f"{i}. `{name}` ({type_to_str(spec.annotation)})"
        if spec.desc:
            line += f": {spec.desc}"
        lines.append(line)
    return "\n".join(lines)


def output_names_lower(signature: type[Signature]) -> dict[str, str]:
    """Output field names by their lower-case form (what parsers match answer labels against)."""
    return {n.lower(): n for n in signature.output_fields}


def field_names(signature: type[Signature]) -> tuple[str, ...]:
    """Every field name of ``signature``, inputs and outputs (what an input value may not imitate)."""
    return tuple(signature.fields)


def input_markers(signature: type[Signature]) -> tuple[tuple[str, str], ...]:
    """The input fields with the heads of their sections: ``(name, marker + newline)``."""
    return tuple((name, field_marker(name) + "\n") for name in signature.input_fields)


def _normalise_literal(text: Any, allowed: tuple[Any, ...]) -> Any:
    if not isinstance(text, str):
        return text
    cleaned = text.strip().strip("'\"`*.").strip()
    for option in allowed:
        if isinstance(option, str) and option.lower() == cleaned.lower():
            return option
        if not isinstance(option, str) and str(option).lower() == cleaned.lower():
            return option
    return cleaned


def coerce_text(text: str, spec: FieldSpec) -> Any:
    """Turn a field's text from a completion into a value ready for validation."""
    annotation = spec.annotation
    text = text.strip()
    if annotation is str:
        return text
    from_text = getattr(annotation, "from_completion_text", None)
    if from_text is not None:  # a rich type that reads its own text (em.Code: fences stripped)
        return from_text(text)
    allowed = literal_values(annotation)
    if allowed is not None:
        return _normalise_literal(text, allowed)
    origin = typing.get_origin(annotation)
    structured = origin in (list, dict, tuple, set) or (
        isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel)
    )
    if structured:
        return parse_json_like(strip_fences(text))
    if annotation in (int, float):
        match = re.search(r"-?\d+(?:\.\d+)?(?:[eE]-?\d+)?", text.replace(",", ""))
        return match.group(0) if match else text
    return text


#: Most stop sequences an adapter sends (OpenAI's API takes up to 4).
MAX_STOP_SEQUENCES = 4

#: Deepest nesting of objects and arrays accepted in an answer's JSON.
MAX_JSON_DEPTH = 100


def json_depth_exceeds(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``text`` opens more than ``limit`` JSON objects or arrays inside each other.

    Brackets inside strings count too: the answer is an over-estimate, exact for text that
    has no brackets in its strings. It is cheap for ordinary answers (two counts).
    """
    if text.count("{") + text.count("[") <= limit:
        return False
    depth = 0
    for char in text:
        if char in "{[":
            depth += 1
            if depth > limit:
                return True
        elif char in "}]" and depth:
            depth -= 1
    return False


def json_cut_off(text: str) -> bool:
    """Whether ``text`` starts a JSON object or array (after any prose) that never closes.

    That is the sign of an answer cut off at the token limit: repairing it would turn half an
    answer into a complete-looking wrong one.
    """
    starts = [i for i in (text.find("{"), text.find("[")) if i >= 0]
    if not starts:
        return False
    depth = 0
    in_string = escaped = False
    for char in text[min(starts) :]:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
            if depth <= 0:
                return False
    return True


def parse_json_like(text: str) -> Any:
    """Parse JSON, repairing near-JSON (single quotes, trailing commas, a missing fence end).

    Raises:
        TruncatedResponseError: the text is a JSON value cut off before its end (no repair).

    Text nested deeper than :data:`MAX_JSON_DEPTH` is returned as it is, for the schema to reject.
    """
    if json_depth_exceeds(text):
        return text
    try:
        return json.loads(text)
    except (json.JSONDecodeError, ValueError):
        stripped = text.lstrip()
        if stripped[:1] in ("{", "[") and json_cut_off(stripped):
            raise TruncatedResponseError(
                f"The answer ends inside an unfinished JSON value (cut off?): {truncate(text, 200)}",
                completion=text,
            ) from None
        import json_repair

        return json_repair.loads(text)


def _rich(spec: FieldSpec, value: Any) -> Any:
    """A demo's value of a rich-type field (em.Image, em.Code, ...) as that type, even when it was loaded as JSON."""
    annotation = spec.annotation
    if typing.get_origin(annotation) is list and isinstance(value, list):
        (item,) = typing.get_args(annotation) or (Any,)
        if _is_rich(item):
            return [item.model_validate(v) if isinstance(v, dict) else v for v in value]
    if _is_rich(annotation) and isinstance(value, dict):
        return annotation.model_validate(value)
    return value


def _is_rich(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, (_schema.Image, _schema.ToolCalls, _schema.Code))


def _history_messages(value: Any) -> list[dict[str, Any]]:
    """The earlier turns an :class:`~elixirml.History` input holds (none for a missing value)."""
    if value is None:
        return []
    return list(_schema.History.model_validate(value).messages)


def _is_tool_class(annotation: Any) -> bool:
    return isinstance(annotation, type) and hasattr(annotation, "openai_schema") and hasattr(annotation, "describe")


def is_tools_field(spec: FieldSpec) -> bool:
    """Whether an input field holds tools (``Tool`` or ``list[Tool]``: native tool calling's input)."""
    annotation = spec.annotation
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation) or (None,)
        return _is_tool_class(item)
    return _is_tool_class(annotation)


def native_tool_fields(signature: type[Signature]) -> tuple[str, str] | None:
    """The tools input and the ``ToolCalls`` output of a signature, when it has both."""
    tools = next((n for n, s in signature.input_fields.items() if is_tools_field(s)), None)
    calls = next((n for n, s in signature.output_fields.items() if s.annotation is _schema.ToolCalls), None)
    return (tools, calls) if tools and calls else None


class Adapter:
    """Base class of adapters. Subclasses implement :meth:`format` and :meth:`parse`.

    Args:
        fallback: another adapter to try, with a second LM request, when parsing fails.
            Off by default: no hidden second call.
        use_json_adapter_fallback: DSPy's spelling of ``fallback=JSONAdapter()`` (DSPy turns it
            on by default; here it is asked for).
        use_native_function_calling: with a ``list[Tool]`` input and a ``ToolCalls`` output in the
            signature, and an LM that calls tools natively (``supports_tools``), the tools go in
            the request's ``tools`` (both fields leave the prompt) and the LM's own calls fill the
            ``ToolCalls`` field (no calls: an empty ``ToolCalls``). Other signatures and LMs are
            sent as without it.
    """

    name = "Adapter"

    #: How many times a predictor re-asks the LM, with the error as feedback, when an answer read
    #: by this adapter fails the signature's schema. ``None`` (ElixirML's adapters): the setting
    #: ``output_retries`` (2 by default). DSPy's formats (``DSPyChatAdapter`` and its siblings) set
    #: 0, as DSPy never re-asks. An ``output_retries`` set explicitly (``configure``, ``context``,
    #: a settings file or ``ELIXIRML_OUTPUT_RETRIES``) wins over this attribute.
    output_retries: int | None = None

    def __init__(
        self,
        fallback: Adapter | None = None,
        *,
        use_json_adapter_fallback: bool = False,
        use_native_function_calling: bool = False,
    ) -> None:
        self.use_native_function_calling = use_native_function_calling
        if use_json_adapter_fallback and fallback is None:
            from ._json import JSONAdapter

            fallback = JSONAdapter()
        self.fallback = fallback

    def __call__(
        self,
        lm: LM,
        lm_kwargs: dict[str, Any],
        signature: type[Signature],
        demos: Sequence[Example],
        inputs: dict[str, Any],
    ) -> list[dict[str, Any]]:
        """Format, send, parse, as DSPy's ``adapter(lm, lm_kwargs, signature, demos, inputs)``.

        Returns one dict of output values per completion. The sync form of :meth:`acall`.
        """
        from ..runtime import run_sync

        outputs, _, _ = run_sync(self.acall(lm, signature, demos, dict(inputs), dict(lm_kwargs or {})))
        return outputs

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    # -- to implement
    def system_message(self, signature: type[Signature]) -> str:
        """The system prompt for ``signature``."""
        raise NotImplementedError

    def user_turn(self, signature: type[Signature], inputs: dict[str, Any], final: bool) -> str:
        """A user turn holding input values (``final``: the turn the LM must answer)."""
        return self._format_inputs(signature, inputs)

    def format_outputs(self, signature: type[Signature], outputs: dict[str, Any]) -> str:
        """Output values written the way the LM is asked to answer (demos' assistant turns)."""
        raise NotImplementedError

    def format(
        self,
        signature: type[Signature],
        demos: Sequence[Example],
        inputs: dict[str, Any],
    ) -> list[Message]:
        """Build the chat messages for one call: system prompt, demos as turns, then the inputs."""
        messages: list[Message] = [{"role": "system", "content": self.system_message(signature)}]
        for demo_in, demo_out in self._demo_pairs(signature, demos) if demos else ():
            messages.append({"role": "user", "content": self.user_turn(signature, demo_in, False)})
            messages.append({"role": "assistant", "content": self.format_outputs(signature, demo_out)})
        history = signature.memo("history_inputs", _history_inputs, signature)
        if history:  # earlier turns (em.History) become prior user/assistant messages
            turns = [turn for name in history for turn in _history_messages(inputs.get(name))]
            inputs = {k: v for k, v in inputs.items() if k not in history}
            for turn_in, turn_out in self._demo_pairs(signature, turns):
                messages.append({"role": "user", "content": self.user_turn(signature, turn_in, False)})
                messages.append({"role": "assistant", "content": self.format_outputs(signature, turn_out)})
        messages.append({"role": "user", "content": self.user_turn(signature, inputs, True)})
        return messages

    def parse(self, signature: type[Signature], completion: str) -> dict[str, Any]:
        """Parse a completion into validated output values."""
        raise NotImplementedError

    def request_settings(self, signature: type[Signature], lm: LM) -> dict[str, Any]:
        """Extra request settings this adapter needs (for example ``response_format``)."""
        return {}

    def stop_sequences(self, signature: type[Signature]) -> tuple[str, ...]:
        """Where the prompt format says the answer has ended (sent as ``stop``; none by default).

        At most :data:`MAX_STOP_SEQUENCES` (OpenAI's limit). A ``stop`` the caller sets wins,
        and an LM whose provider takes no ``stop`` gets none.
        """
        return ()

    def _prepare(
        self,
        lm: LM,
        signature: type[Signature],
        demos: Sequence[Example],
        inputs: dict[str, Any],
        settings: dict[str, Any],
        feedback: Sequence[tuple[str, str]],
    ) -> tuple[list[Message], dict[str, Any]]:
        native = self._native_tools(lm, signature)
        if native is not None:  # the tools go in the request; both tool fields leave the prompt
            tools_field, calls_field = native
            tools = inputs.get(tools_field) or []
            signature = signature.delete(calls_field).delete(tools_field)
            schemas = [t.openai_schema() for t in (tools if isinstance(tools, list) else [tools])]
            settings = type(settings)({"tools": schemas, **settings})  # keeps its type: merged stays merged
        messages = self.build_messages(signature, demos, inputs, feedback)
        extra = self.request_settings(signature, lm)
        stops = None
        if "stop" not in settings and "stop" in lm.supported_settings:
            stops = signature.memo((type(self), "stop"), _stop_list, self, signature)
        if not extra and not stops:
            return messages, settings
        request = type(settings)(settings)  # keeps its type: merged stays merged (the adapter's come under them)
        for key, value in extra.items():
            request.setdefault(key, value)
        if stops:
            request["stop"] = list(stops)  # the caller set none (checked above)
            if not extra and isinstance(request, MergedSettings):
                # only stop, which this LM takes (checked above): still checked for it, not checked again
                request.checked_for = getattr(settings, "checked_for", None)
        return messages, request

    def build_messages(
        self,
        signature: type[Signature],
        demos: Sequence[Example],
        inputs: dict[str, Any],
        feedback: Sequence[tuple[str, str]] = (),
    ) -> list[Message]:
        """The messages of one call, with any assertion feedback turns appended."""
        messages = self.format(signature, demos, inputs)
        for previous, message in feedback:
            messages.append({"role": "assistant", "content": previous})
            messages.append({"role": "user", "content": self.feedback_message(signature, message)})
        if demos:
            images = _schema.images_in([inputs, self._demo_pairs(signature, demos)])
        elif _may_hold_images(inputs):
            images = _schema.images_in(inputs)
        else:
            return messages
        if images:  # each image marker in a user turn becomes an image content part
            for m in messages:
                if m["role"] == "user" and isinstance(m["content"], str):
                    m["content"] = _schema.split_image_parts(m["content"], images)
        return messages

    def scoring_messages(
        self,
        signature: type[Signature],
        demos: Sequence[Example],
        inputs: dict[str, Any],
        feedback: Sequence[tuple[str, str]] = (),
    ) -> list[Message]:
        """The messages of a call whose answer is scored, not generated: :meth:`scoring_system_message` first."""
        messages = self.build_messages(signature, demos, inputs, feedback)
        messages[0] = {"role": "system", "content": self.scoring_system_message(signature)}
        return messages

    def scoring_system_message(self, signature: type[Signature]) -> str:
        """The system prompt when the answer is scored (default: the one for generation)."""
        return self.system_message(signature)

    def scoring_parts(self, signature: type[Signature], field: str, values: Sequence[Any]) -> tuple[str, list[str]]:
        """The assistant prefix and one continuation per allowed value, for log-probability scoring."""
        return f"{field_marker(field)}\n", [format_value(to_jsonable(v)) for v in values]

    def stream_parser(self, signature: type[Signature]) -> Any:
        """An incremental parser splitting streamed text into output-field pieces."""
        from ._stream import ChatStreamParser

        return ChatStreamParser(list(signature.output_fields))

    async def astream_call(
        self,
        lm: LM,
        signature: type[Signature],
        demos: Sequence[Example],
        inputs: dict[str, Any],
        settings: dict[str, Any],
        *,
        on_chunk: Any,
        feedback: Sequence[tuple[str, str]] = (),
    ) -> tuple[list[dict[str, Any]], str, list[Message]]:
        """Like :meth:`acall`, streaming: ``on_chunk(field, text)`` is called as output arrives.

        Returns (outputs, the full completion text, messages).
        """
        callbacks = active_callbacks()
        if callbacks:
            messages, request = self._observed_prepare(callbacks, lm, signature, demos, inputs, settings, feedback)
        else:
            messages, request = self._prepare(lm, signature, demos, inputs, settings, feedback)
        parser = self.stream_parser(signature)
        parts: list[str] = []
        parsed: list[dict[str, Any]] = []

        def validate(response: LMResponse) -> None:  # the completed answer, parsed before it is cached
            text = response.text
            if callbacks:
                parsed.append(
                    observe_callbacks(
                        callbacks,
                        "adapter_parse",
                        self,
                        {"signature": signature, "completion": text},
                        self.parse,
                        signature,
                        text,
                    )
                )
            else:
                parsed.append(self.parse(signature, text))

        async for piece in lm.astream(messages, validate=validate, settings=request):
            parts.append(piece)
            for field, text in parser.feed(piece):
                on_chunk(field, text)
        return [parsed[-1]], "".join(parts), messages

    def _observed_prepare(
        self,
        callbacks: Sequence[Any],
        lm: LM,
        signature: type[Signature],
        demos: Sequence[Example],
        inputs: dict[str, Any],
        settings: dict[str, Any],
        feedback: Sequence[tuple[str, str]],
    ) -> tuple[list[Message], dict[str, Any]]:
        """:meth:`_prepare` between the ``adapter_format`` callbacks (whose outputs are the messages)."""
        call_id = start_callback(
            callbacks, "adapter_format", self, {"signature": signature, "demos": demos, "inputs": inputs}
        )
        try:
            messages, request = self._prepare(lm, signature, demos, inputs, settings, feedback)
        except BaseException as exc:
            end_callback(callbacks, "adapter_format", call_id, None, exc)
            raise
        end_callback(callbacks, "adapter_format", call_id, messages)
        return messages, request

    def _observed_parse_all(
        self, callbacks: Sequence[Any], signature: type[Signature], response: LMResponse
    ) -> list[dict[str, Any]]:
        """:meth:`parse_all`, each completion parsed between the ``adapter_parse`` callbacks."""
        if not response.completions:
            return self.parse_all(signature, response)
        return [
            observe_callbacks(
                callbacks,
                "adapter_parse",
                self,
                {"signature": signature, "completion": completion.text},
                self.parse,
                signature,
                completion.text,
            )
            for completion in response.completions
        ]

    def feedback_message(self, signature: type[Signature], message: str) -> str:
        """The user turn that follows a previous answer that failed a check."""
        fields = ", ".join(f"`{n}`" for n in signature.output_fields)
        return (
            f"Your previous answer failed a check: {message}\n"
            f"Answer again, fixing this, with the same output fields ({fields}) in the same format."
        )

    # -- shared
    def validate_sections(
        self, signature: type[Signature], sections: dict[str, str], completion: str
    ) -> dict[str, Any]:
        """Coerce and validate the text found for each output field; a required field missing is a parse error."""
        fields = signature.output_fields
        if len(sections) < len(fields):  # sections only ever hold output fields
            missing = [n for n, spec in fields.items() if n not in sections and spec.required]
            if missing:
                raise AdapterParseError(self.name, signature.__name__, completion, f"missing output field(s) {missing}")
        values = {name: coerce_text(text, fields[name]) for name, text in sections.items()}
        return signature.validate_outputs(values)

    def parse_all(self, signature: type[Signature], response: LMResponse) -> list[dict[str, Any]]:
        """Parse every completion of a response (the first failure raises)."""
        completions = response.completions
        if not completions:
            raise AdapterParseError(self.name, signature.__name__, "", "the LM returned no completions")
        tool_fields = [n for n, spec in signature.output_fields.items() if spec.annotation is _schema.ToolCalls]
        if tool_fields and (
            any(c.tool_calls for c in completions)
            or (getattr(self, "use_native_function_calling", False) and native_tool_fields(signature))
        ):
            return [self._parse_with_tool_calls(signature, c, tool_fields) for c in completions]
        if len(completions) == 1:
            return [self.parse(signature, completions[0].text)]
        return [self.parse(signature, c.text) for c in completions]

    def _native_tools(self, lm: Any, signature: type[Signature]) -> tuple[str, str] | None:
        """The tools input and ToolCalls output to call natively with ``lm``, if native calling applies."""
        if not getattr(self, "use_native_function_calling", False) or not getattr(lm, "supports_tools", False):
            return None
        return native_tool_fields(signature)

    def _parse_with_tool_calls(
        self, signature: type[Signature], completion: Any, tool_fields: list[str]
    ) -> dict[str, Any]:
        """A completion with native tool calls: the :class:`ToolCalls` fields from them, the rest from its text.

        With native calling on, a completion that made no calls has an empty ``ToolCalls``.
        """
        if not completion.tool_calls and not getattr(self, "use_native_function_calling", False):
            return self.parse(signature, completion.text)
        calls = _schema.ToolCalls.from_native(completion.tool_calls or [])
        rest = signature
        for name in tool_fields:
            rest = rest.delete(name)
        values = self.parse(rest, completion.text) if rest.output_fields else {}
        return signature.validate_outputs({**values, **dict.fromkeys(tool_fields, calls)})

    async def acall(
        self,
        lm: LM,
        signature: type[Signature],
        demos: Sequence[Example],
        inputs: dict[str, Any],
        settings: dict[str, Any],
        *,
        feedback: Sequence[tuple[str, str]] = (),
    ) -> tuple[list[dict[str, Any]], LMResponse, list[Message]]:
        """Format, send, parse and validate. Returns (outputs per completion, response, messages).

        ``feedback`` holds ``(previous answer, what was wrong)`` pairs from failed output
        assertions; each becomes an assistant turn and a user turn asking for a better answer.
        """
        callbacks = active_callbacks()
        if callbacks:
            messages, request = self._observed_prepare(callbacks, lm, signature, demos, inputs, settings, feedback)
        else:
            messages, request = self._prepare(lm, signature, demos, inputs, settings, feedback)
        try:
            outputs, response = await self._send_and_parse(lm, signature, messages, request, callbacks)
        except OutputError as failed:
            if self.fallback is None:
                raise
            return await after_failed_answer(
                failed, self.fallback.acall(lm, signature, demos, inputs, settings, feedback=feedback)
            )
        return outputs, response, messages

    async def _send_and_parse(
        self,
        lm: LM,
        signature: type[Signature],
        messages: list[Message],
        request: dict[str, Any],
        callbacks: Sequence[Any],
    ) -> tuple[list[dict[str, Any]], LMResponse]:
        """Send the prepared request and parse every completion (what :meth:`acall` wraps).

        The parser runs as the LM's ``validate``, so only an answer that parses is cached. An
        :class:`~elixirml.errors.OutputError` raised here sends :meth:`acall` to the fallback.
        """
        parse = _Parse(self, signature, callbacks)
        response = await lm.arequest(messages, validate=parse, settings=request)
        return parse.outputs, response

    def _demo_pairs(
        self, signature: type[Signature], demos: Sequence[Example] | Sequence[dict[str, Any]]
    ) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        pairs = []
        fields = {**signature.input_fields, **signature.output_fields}
        for demo in demos:
            ins = {k: _rich(fields[k], demo[k]) for k in signature.input_fields if k in demo}
            outs = {k: _rich(fields[k], demo[k]) for k in signature.output_fields if k in demo}
            if ins and outs:
                pairs.append((ins, outs))
        return pairs

    @staticmethod
    def _format_inputs(signature: type[Signature], inputs: dict[str, Any]) -> str:
        parts = []
        for name, head in signature.memo("input_markers", input_markers, signature):
            value = inputs.get(name)
            if value is not None:
                parts.append(head + escape_markers(format_value(value)))
        return "\n\n".join(parts)


_PLAIN = frozenset({str, int, float, bool, type(None)})


def _may_hold_images(inputs: dict[str, Any]) -> bool:
    """Whether an input value is anything but plain text, numbers or None (only those can hold images)."""
    for value in inputs.values():  # noqa: SIM110 (a loop, not any(...): this runs on every call)
        if type(value) not in _PLAIN:
            return True
    return False


def _history_inputs(signature: type[Signature]) -> list[str]:
    """The inputs of type :class:`~elixirml.schema.History` (their turns become prior messages)."""
    return [n for n, spec in signature.input_fields.items() if spec.annotation is _schema.History]


def _stop_list(adapter: Adapter, signature: type[Signature]) -> tuple[str, ...]:
    """The stop sequences ``adapter`` sends for ``signature``, at most :data:`MAX_STOP_SEQUENCES`."""
    return tuple(adapter.stop_sequences(signature))[:MAX_STOP_SEQUENCES]


class _Parse:
    """The ``validate`` of one request: every completion parsed (through the callbacks, when set) into ``outputs``.

    An object, not a closure: one per request in flight, where a closure's cells are several.
    """

    __slots__ = ("adapter", "callbacks", "outputs", "signature")

    def __init__(self, adapter: Adapter, signature: type[Signature], callbacks: Sequence[Any]) -> None:
        self.adapter = adapter
        self.signature = signature
        self.callbacks = callbacks
        self.outputs: list[dict[str, Any]] = []

    def __call__(self, response: LMResponse) -> None:
        try:
            if self.callbacks:
                self.outputs = self.adapter._observed_parse_all(self.callbacks, self.signature, response)
            else:
                self.outputs = self.adapter.parse_all(self.signature, response)
        except ValidationError as exc:  # keep the answer that broke the rule, for feedback
            exc.completion = response.text
            raise


async def after_failed_answer(
    failed: OutputError, fallback: Awaitable[tuple[list[dict[str, Any]], LMResponse, list[Message]]]
) -> tuple[list[dict[str, Any]], LMResponse, list[Message]]:
    """A fallback adapter's answer (or error) in place of one that failed, with that answer's usage counted too."""
    try:
        outputs, response, messages = await fallback
    except OutputError as exc:
        exc.usage = _summed(failed.usage, exc.usage)
        raise
    total = _summed(failed.usage, response.usage)
    if failed.usage is not None and total is not None:  # a copy: the cache may hold this response
        response = dataclasses.replace(response, usage=total)
    return outputs, response, messages


def _summed(*usages: Usage | None) -> Usage | None:
    """The usage of several answers together (None when none is known)."""
    known = [u for u in usages if u is not None]
    if not known:
        return None
    total = Usage()
    for usage in known:
        total.add(usage)
    return total
