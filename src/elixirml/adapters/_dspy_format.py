"""DSPy 3.4's prompt formats: the messages DSPy's ``ChatAdapter``, ``JSONAdapter`` and ``XMLAdapter`` build.

A program optimized in DSPy sends the same messages here: the field list, the structure block
with its type notes and JSON schemas, demos (incomplete ones marked), history turns and the
closing reminder are written word for word as DSPy 3.4.1 writes them. Values are written as
DSPy writes them (lists of strings numbered, models as JSON, images and other media as content
parts), and answers are read as DSPy reads them (missing optional fields take their defaults).

Native features work as in DSPy: with ``use_native_function_calling=True`` a ``list[Tool]`` input
and a ``ToolCalls`` output become the request's ``tools`` and the LM's own tool calls;
``native_response_types`` name the output types an LM may fill natively (DSPy's ``Reasoning``
and ``Citations`` in ``elixirml.dspy``).

Types may take part through these optional hooks (duck-typed, so any layer can define them):
``description()`` (a class method: the type's description in the field list), ``format()`` (an
instance method: a string, a dict, or a list of content parts such as ``{"type": "image_url",
...}``), ``adapter_type_name`` (the name shown for the type), ``adapter_text_type`` (written as
text, with no JSON schema note), and for native response types ``adapt_to_native_lm_feature``
and ``parse_lm_response``.
"""

from __future__ import annotations

import ast
import enum
import inspect
import json
import re
import textwrap
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

import pydantic
import pydantic_core

from ..errors import AdapterParseError
from ..lm import LM, LMResponse, Message
from ..schema import Code, FieldSpec, History, Image, Signature, ToolCalls, allows_none
from ._base import Adapter, after_failed_answer, is_tools_field
from ._chat import ChatAdapter

__all__ = ["DSPyChatAdapter", "DSPyJSONAdapter", "DSPyXMLAdapter"]

_HEADER_RE = re.compile(r"\[\[ ## (\w+) ## \]\]")
_PART_RE = re.compile("\ue000(\\d+)\ue001")
_TOOL_KWARGS = ("tools", "tool_choice", "parallel_tool_calls")
_PROVIDER_OPTIONS = ("parallel_tool_calls", "reasoning_effort")
_INCOMPLETE_DEMO = "This is an example of the task, though some input or output fields are not supplied."
_STRUCTURE = "All interactions will be structured in the following way, with the appropriate values filled in."
_TOOL_CALLS_NOTE = ' (must be a JSON object like {"tool_calls": [{"name": "...", "args": {...}}]})'


# -- type names and descriptions


def _quoted(text: str) -> str:
    """A string as it appears inside ``Literal[...]`` (Python's own quoting)."""
    if "'" in text and '"' not in text:
        return f'"{text}"'
    return "'" + text.replace("'", "\\'") + "'" if '"' in text and "'" in text else f"'{text}'"


def annotation_name(annotation: Any) -> str:
    """A type as DSPy names it in prompts: ``str``, ``list[float]``, ``Literal['a', 'b']``, ``Union[int, NoneType]``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is types.UnionType:
        origin = typing.Union
    if origin is None:
        named = getattr(annotation, "adapter_type_name", None)
        if isinstance(named, str):
            return named
        if isinstance(annotation, type) and issubclass(annotation, Code):
            return f"Code_{annotation.default_language}" if annotation.default_language else "Code"
        return str(getattr(annotation, "__name__", annotation))
    if origin is typing.Literal:
        shown = ", ".join(_quoted(a) if isinstance(a, str) else annotation_name(a) for a in args)
        return f"Literal[{shown}]"
    return f"{annotation_name(origin)}[{', '.join(annotation_name(a) for a in args)}]"


def _type_description(annotation: type) -> str:
    if issubclass(annotation, (Image, History)):
        return ""
    describe = getattr(annotation, "description", None)
    if inspect.ismethod(describe):  # a class method (not a Tool's instance attribute)
        text = describe()
        return text if isinstance(text, str) else ""
    return ""


def _custom_types(annotation: Any) -> list[type]:
    """The described types inside an annotation (``Tool`` in ``list[dict[str, Tool]]``)."""
    if isinstance(annotation, type) and typing.get_origin(annotation) is None:
        return [annotation] if _type_description(annotation) else []
    found: list[type] = []
    for arg in typing.get_args(annotation):
        found.extend(_custom_types(arg))
    return found


def field_descriptions(fields: Mapping[str, FieldSpec]) -> str:
    """DSPy's numbered field list: name, type, description, the descriptions of custom types, constraints."""
    lines = []
    for i, (name, spec) in enumerate(fields.items(), 1):
        desc = spec.desc if spec.desc and spec.desc != f"${{{name}}}" else ""
        for custom in _custom_types(spec.annotation):
            desc += f"\n    Type description of {annotation_name(custom)}: {_type_description(custom)}"
        line = f"{i}. `{name}` ({annotation_name(spec.annotation)}): {desc}"
        constraints = spec.json_schema_extra.get("constraints") if spec.constraints else None
        if constraints:  # DSPy's wording ("minimum length: 5"), as DSPy writes it
            line += "\nConstraints: " + constraints
        lines.append(line)
    return "\n".join(lines).strip()


def _type_first(schema: Any) -> Any:
    if isinstance(schema, Mapping):
        return {k: _type_first(v) for k, v in sorted(schema.items(), key=lambda kv: (kv[0] != "type", kv[0]))}
    if isinstance(schema, list):
        return [_type_first(v) for v in schema]
    return schema


class _DSPyToolCall(pydantic.BaseModel):
    name: str
    args: dict[str, Any] = pydantic.Field(json_schema_extra={"additionalProperties": True})


class _DSPyToolCalls(pydantic.BaseModel):
    tool_calls: list[_DSPyToolCall]


_DSPyToolCall.__name__ = "ToolCall"
_DSPyToolCalls.__name__ = "ToolCalls"


def json_schema(annotation: Any) -> dict[str, Any]:
    """The JSON schema of a type, ``type`` first and the other keys sorted (as DSPy writes it)."""
    if annotation is ToolCalls:  # DSPy's ToolCalls schema: a call's id is not asked for
        annotation = _DSPyToolCalls
    schema = pydantic.TypeAdapter(annotation).json_schema()
    if annotation is _DSPyToolCalls:
        schema = json.loads(json.dumps(schema).replace("_DSPyToolCall", "ToolCall"))
    return typing.cast(dict[str, Any], _type_first(schema))


def _is_text_type(annotation: Any) -> bool:
    return annotation is str or bool(getattr(annotation, "adapter_text_type", False))


def field_placeholder(name: str, spec: FieldSpec) -> str:
    """``{name}`` with DSPy's note on the value an output field must have."""
    annotation = spec.annotation
    if spec.kind == "input" or _is_text_type(annotation):
        note = ""
    elif annotation is bool:
        note = "must be True or False"
    elif annotation in (int, float):
        note = f"must be a single {annotation.__name__} value"
    elif isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        note = "must be one of: " + "; ".join(str(m.value) for m in annotation)
    elif typing.get_origin(annotation) is typing.Literal:
        note = "must exactly match (no extra characters) one of: " + "; ".join(
            str(a) for a in typing.get_args(annotation)
        )
    elif isinstance(annotation, type) and issubclass(annotation, Code):
        note = ""
    else:
        note = "must adhere to the JSON schema: " + json.dumps(json_schema(annotation), ensure_ascii=False)
    return f"{{{name}}}" + (" " * 8 + f"# note: the value you produce {note}" if note else "")


def reminder_type(spec: FieldSpec) -> str:
    """The type note after a field in the closing reminder."""
    if spec.annotation is ToolCalls:
        return _TOOL_CALLS_NOTE
    if spec.annotation is not str:
        return f" (must be formatted as a valid Python {annotation_name(spec.annotation)})"
    return ""


# -- values


def _tool_args(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """A tool's arguments as DSPy lists them: each one's schema without its title, its default last."""
    args = {}
    for name, schema in (parameters.get("properties") or {}).items():
        entry = {k: v for k, v in schema.items() if k not in ("title", "default")}
        if "default" in schema:
            entry["default"] = schema["default"]
        args[name] = entry
    return args


def tool_text(tool: Any) -> str:
    """A tool as DSPy writes it in a prompt: name, description, arguments."""
    desc = tool.description
    shown = f", whose description is <desc>{desc}</desc>.".replace("\n", "  ") if desc else "."
    return f"{tool.name}{shown} It takes arguments {_tool_args(tool.parameters)}."


def tool_function(tool: Any) -> dict[str, Any]:
    """A tool as an entry of the request's ``tools`` (DSPy's ``format_as_litellm_function_call``)."""
    args = _tool_args(tool.parameters)
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": {
                "type": "object",
                "properties": args,
                "required": [k for k, v in args.items() if "default" not in v],
            },
        },
    }


class _Parts:
    """Content parts met while writing one message (images, audio, files): each leaves a mark in the text."""

    def __init__(self) -> None:
        self.items: list[list[dict[str, Any]]] = []

    def mark(self, parts: list[dict[str, Any]]) -> str:
        self.items.append(parts)
        return f"\ue000{len(self.items) - 1}\ue001"

    def split(self, text: str) -> str | list[dict[str, Any]]:
        """The message content: the text itself, or text parts around the content parts."""
        if not self.items or "\ue000" not in text:
            return text
        blocks: list[dict[str, Any]] = []
        last = 0
        for match in _PART_RE.finditer(text):
            if match.start() > last:
                blocks.append({"type": "text", "text": text[last : match.start()]})
            blocks.extend(self.items[int(match.group(1))])
            last = match.end()
        if last < len(text):
            blocks.append({"type": "text", "text": text[last:]})
        return blocks


def _is_tool(value: Any) -> bool:
    return callable(value) and hasattr(value, "parameters") and hasattr(value, "openai_schema")


def jsonable(value: Any, parts: _Parts | None = None) -> Any:
    """A value as JSON-ready data, as DSPy serializes it (media become content-part marks when ``parts`` is given)."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, Image):
        block = [{"type": "image_url", "image_url": {"url": value.url}}]
        return parts.mark(block) if parts is not None else _marked(block)
    if isinstance(value, Code):
        return value.code
    if isinstance(value, ToolCalls):
        data: dict[str, Any] = {
            "tool_calls": [{"name": c.name, "args": jsonable(c.args, parts)} for c in value.tool_calls]
        }
        if value.tool_call_results is not None:
            data["tool_call_results"] = jsonable(value.tool_call_results, parts)
        return data
    if _is_tool(value):
        return tool_text(value)
    if isinstance(value, enum.Enum):
        return jsonable(value.value, parts)
    if isinstance(value, pydantic.BaseModel):
        formatter = getattr(value, "format", None)
        if callable(formatter):
            try:
                formatted = formatter()
            except NotImplementedError:
                formatted = None
            if isinstance(formatted, list):
                blocks = [b if isinstance(b, dict) else {"type": "text", "text": str(b)} for b in formatted]
                return parts.mark(blocks) if parts is not None else _marked(blocks)
            if formatted is not None:
                return jsonable(formatted, parts)
        if _holds_special(value):
            return {name: jsonable(getattr(value, name), parts) for name in type(value).model_fields}
        return value.model_dump(mode="json", fallback=str)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, parts) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v, parts) for v in value]
    try:
        return pydantic_core.to_jsonable_python(value, fallback=str)
    except (TypeError, ValueError, pydantic_core.PydanticSerializationError):  # written as its str(), as DSPy does
        return str(value)


def _marked(blocks: list[dict[str, Any]]) -> str:
    """Content parts outside a user turn: the JSON between DSPy's custom-type markers, as DSPy leaves it."""
    return f"<<CUSTOM-TYPE-START-IDENTIFIER>>{json.dumps(blocks, ensure_ascii=False)}<<CUSTOM-TYPE-END-IDENTIFIER>>"


def _holds_special(model: pydantic.BaseModel) -> bool:
    for name in type(model).model_fields:
        item = getattr(model, name, None)
        items = item if isinstance(item, (list, tuple)) else item.values() if isinstance(item, dict) else [item]
        for v in items:
            if isinstance(v, (Image, Code, ToolCalls)) or (
                isinstance(v, pydantic.BaseModel) and (callable(getattr(v, "format", None)) or _holds_special(v))
            ):
                return True
    return False


def _blob(value: Any) -> str:
    text = str(value)
    if "\n" not in text and "«" not in text and "»" not in text:
        return f"«{text}»"
    return "«««\n    " + text.replace("\n", "\n    ") + "\n»»»"


def format_field_value(spec: FieldSpec, value: Any, parts: _Parts | None = None) -> str:
    """A field's value as DSPy writes it: a list for a ``str`` field numbered, containers as JSON, the rest as text."""
    if isinstance(value, list) and spec.annotation is str:
        if not value:
            return "N/A"
        if len(value) == 1:
            return _blob(value[0])
        return "\n".join(f"[{i}] {_blob(v)}" for i, v in enumerate(value, 1))
    data = jsonable(value, parts)
    if isinstance(data, (dict, list)):
        return json.dumps(data, ensure_ascii=False)
    return str(data)


# -- reading answers

_ADAPTERS: dict[Any, pydantic.TypeAdapter[Any]] = {}


def _type_adapter(annotation: Any) -> pydantic.TypeAdapter[Any]:
    try:
        made = _ADAPTERS.get(annotation)
    except TypeError:  # an unhashable annotation
        return pydantic.TypeAdapter(annotation)
    if made is None:
        made = _ADAPTERS[annotation] = pydantic.TypeAdapter(annotation)
    return made


def _enum_member(annotation: type[enum.Enum], value: Any) -> Any:
    for member in annotation:
        if member.value == value:
            return member
    if isinstance(value, str) and value in annotation.__members__:
        return annotation[value]
    raise ValueError(f"{value} is not a valid name or value for the enum {annotation.__name__}")


def parse_value(value: Any, annotation: Any) -> Any:
    """A field's text (or JSON value) read as its type, as DSPy reads it.

    Raises:
        ValueError: the value does not fit the type (pydantic's ``ValidationError`` is one).
    """
    if annotation is str:
        return str(value)
    if isinstance(annotation, enum.EnumMeta):
        return _enum_member(typing.cast(type[enum.Enum], annotation), value)
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        allowed = typing.get_args(annotation)
        if value in allowed:
            return value
        if isinstance(value, str):
            text = value.strip()
            if text.startswith(("Literal[", "str[")) and text.endswith("]"):
                text = text[text.find("[") + 1 : -1]
            if len(text) > 1 and text[0] == text[-1] and text[0] in "\"'":
                text = text[1:-1]
            if text in allowed:
                return text
            value = text
    adapter = _type_adapter(annotation)
    if not isinstance(value, str):
        return adapter.validate_python(value)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType) and type(None) in args and str in args:
        return adapter.validate_python(value)
    import json_repair

    candidate = json_repair.loads(value)
    if candidate == "" and value != "":
        try:
            candidate = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            candidate = value
    try:
        return adapter.validate_python(candidate)
    except pydantic.ValidationError:
        if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
            return adapter.validate_python(value)  # a type that reads its own text (em.Code)
        raise


def output_defaults(signature: type[Signature], values: dict[str, Any]) -> dict[str, Any]:
    """The parsed values in signature order, a missing optional field taking its default (or ``None``)."""
    completed = {}
    for name, spec in signature.output_fields.items():
        if name in values:
            completed[name] = values[name]
        elif not spec.required:
            completed[name] = spec.default
        elif allows_none(spec.annotation):
            completed[name] = None
    return completed


def typed_outputs(
    adapter: str, signature: type[Signature], completion: str, found: Mapping[str, Any], *, show_value: bool = False
) -> dict[str, Any]:
    """The output values ``found`` in a completion, each read as its field's type, in signature order.

    A missing optional field takes its default; a value that does not parse, or a missing required
    field, raises :class:`AdapterParseError` (``show_value``: the error quotes the unparsed text).
    """
    values: dict[str, Any] = {}
    for name, raw in found.items():
        try:
            values[name] = parse_value(raw, signature.output_fields[name].annotation)
        except ValueError as exc:
            shown = f" with value {raw!r}" if show_value else ""
            raise AdapterParseError(
                adapter, signature.__name__, completion, f"field {name}{shown} does not parse: {exc}"
            ) from None
    values = output_defaults(signature, values)
    _missing_error(adapter, signature, completion, values)
    return values


def _missing_error(adapter: str, signature: type[Signature], completion: str, values: dict[str, Any]) -> None:
    if values.keys() != signature.output_fields.keys():
        raise AdapterParseError(
            adapter,
            signature.__name__,
            completion,
            f"Adapter {adapter} failed to parse the LM response: expected to find the output fields "
            f"[{', '.join(signature.output_fields)}], found [{', '.join(values)}]",
        )


# -- tool calls in responses and history


def _get(value: Any, key: str, default: Any = None) -> Any:
    if isinstance(value, Mapping):
        return value.get(key, default)
    return getattr(value, key, default)


def provider_tool_call(call: Any) -> dict[str, Any]:
    """A provider's tool call (OpenAI, Responses API or ElixirML shape) as ``{"id", "name", "args"}``."""
    function = _get(call, "function", None) or {}
    arguments = _get(function, "arguments", None) or _get(call, "arguments", None) or _get(call, "args", None) or {}
    if isinstance(arguments, str):
        import json_repair

        arguments = json_repair.loads(arguments)
    if not isinstance(arguments, dict):
        arguments = {}
    return {
        "id": _get(call, "call_id") or _get(call, "id"),
        "name": _get(function, "name") or _get(call, "name"),
        "args": arguments,
    }


def _tool_calls_in(message: Mapping[str, Any]) -> tuple[str | None, Any]:
    for name, value in message.items():
        if isinstance(value, ToolCalls) or (isinstance(value, Mapping) and "tool_calls" in value):
            return name, value
    return None, None


def _tool_call_results(tool_calls: Any) -> list[Any] | None:
    results = _get(tool_calls, "tool_call_results", None)
    if results is None:
        return None
    items = _get(results, "tool_call_results", results)
    return list(items) if isinstance(items, (list, tuple)) else None


def _result_content(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(jsonable(value), ensure_ascii=False)


def _demo_get(demo: Any, key: str, default: Any = None) -> Any:
    getter = getattr(demo, "get", None)
    return getter(key, default) if callable(getter) else default


class DSPyChatAdapter(ChatAdapter):
    """DSPy 3.4's ``ChatAdapter``: ``[[ ## field ## ]]`` sections, written and read exactly as DSPy does.

    ``em.ChatAdapter`` is ElixirML's own variant of the format (stop sequences, tolerant reading);
    this one sends the messages DSPy sends, so a program optimized in DSPy sees the same prompt.
    It is ``elixirml.dspy.ChatAdapter``. As in DSPy, a predictor using it does not re-ask the LM
    when an answer fails to parse or validate (``output_retries = 0``; the JSON fallback is DSPy's
    one retry); set ``output_retries`` explicitly (``em.configure(output_retries=2)``) for re-asks.

    Args:
        callbacks: callbacks kept for DSPy's constructor (ElixirML's callbacks are configured
            with ``em.configure(callbacks=...)``).
        use_native_function_calling: a ``list[Tool]`` input and a ``ToolCalls`` output become the
            request's ``tools`` and the LM's native tool calls (when the LM supports them).
        native_response_types: output types an LM may fill natively (types with the
            ``adapt_to_native_lm_feature`` / ``parse_lm_response`` hooks).
        use_json_adapter_fallback: on a parse failure, ask again with the JSON format (one second
            LM call, counted in usage), on by default as in DSPy; ``False`` raises the parse error at once.
        parallel_tool_calls: sent as the request's ``parallel_tool_calls`` with native tool
            calls (``None``: not sent).
    """

    name = "ChatAdapter"
    output_retries = 0

    def __init__(
        self,
        callbacks: list[Any] | None = None,
        use_native_function_calling: bool = False,
        native_response_types: list[type] | None = None,
        use_json_adapter_fallback: bool = True,
        parallel_tool_calls: bool | None = None,
    ) -> None:
        Adapter.__init__(self)
        self.callbacks = list(callbacks or [])
        self.use_native_function_calling = use_native_function_calling
        self.native_response_types = list(native_response_types or [])
        self.use_json_adapter_fallback = use_json_adapter_fallback
        self.parallel_tool_calls = parallel_tool_calls

    def __repr__(self) -> str:
        return f"{type(self).__name__}(use_native_function_calling={self.use_native_function_calling})"

    # -- the system message

    def format_field_description(self, signature: type[Signature]) -> str:
        """The numbered input and output fields."""
        return (
            f"Your input fields are:\n{field_descriptions(signature.input_fields)}\n"
            f"Your output fields are:\n{field_descriptions(signature.output_fields)}"
        )

    def format_field_structure(self, signature: type[Signature]) -> str:
        """Each field's section with its placeholder, then the ``completed`` marker."""
        parts = [
            _STRUCTURE,
            self._sections({n: field_placeholder(n, s) for n, s in signature.input_fields.items()}),
            self._sections({n: field_placeholder(n, s) for n, s in signature.output_fields.items()}),
            "[[ ## completed ## ]]\n",
        ]
        return "\n\n".join(parts).strip()

    def format_task_description(self, signature: type[Signature]) -> str:
        """The instructions, indented under "your objective is:"."""
        lines = textwrap.dedent(signature.instructions).splitlines()
        return "In adhering to this structure, your objective is: " + ("\n" + " " * 8).join(["", *lines])

    def format_system_message(self, signature: type[Signature]) -> str:
        """Fields, structure and task, as DSPy's system message."""
        return (
            f"{self.format_field_description(signature)}\n"
            f"{self.format_field_structure(signature)}\n"
            f"{self.format_task_description(signature)}"
        )

    def system_message(self, signature: type[Signature]) -> str:
        """The system message (ElixirML's hook; the same as :meth:`format_system_message`)."""
        return self.format_system_message(signature)

    # -- user and assistant turns

    @staticmethod
    def _sections(values: Mapping[str, str]) -> str:
        return "\n\n".join(f"[[ ## {name} ## ]]\n{text}" for name, text in values.items()).strip()

    def format_field_with_value(
        self, signature: type[Signature], values: Mapping[str, Any], parts: _Parts | None = None, role: str = "user"
    ) -> str:
        """The sections of the named fields with their values written as DSPy writes them."""
        fields = signature.fields
        return self._sections({n: format_field_value(fields[n], v, parts) for n, v in values.items()})

    def user_message_output_requirements(self, signature: type[Signature]) -> str:
        """The closing reminder of the output sections and the ``completed`` marker."""
        fields = ", then ".join(f"`[[ ## {n} ## ]]`{reminder_type(s)}" for n, s in signature.output_fields.items())
        return (
            f"Respond with the corresponding output fields, starting with the field {fields}, "
            "and then ending with the marker for `[[ ## completed ## ]]`."
        )

    def format_user_message_content(
        self,
        signature: type[Signature],
        inputs: Mapping[str, Any],
        prefix: str = "",
        suffix: str = "",
        main_request: bool = False,
        parts: _Parts | None = None,
    ) -> str:
        """A user turn: the input sections present in ``inputs`` (and the reminder for the main request)."""
        present = {n: _demo_get(inputs, n) for n in signature.input_fields if n in inputs}
        pieces = [prefix]
        if present or self.keep_empty_inputs:
            pieces.append(self.format_field_with_value(signature, present, parts))
        if main_request:
            pieces.append(self.user_message_output_requirements(signature))
        pieces.append(suffix)
        return "\n\n".join(pieces).strip()

    #: What ends an assistant turn after its output sections.
    answer_end = "\n\n[[ ## completed ## ]]\n"
    #: Whether a user turn with no inputs still has the (empty) place of their sections.
    keep_empty_inputs = False

    def format_assistant_message_content(
        self,
        signature: type[Signature],
        outputs: Mapping[str, Any],
        missing_field_message: str | None = None,
    ) -> str:
        """An assistant turn: every output value (a missing one says ``missing_field_message``), then the end."""
        values = {n: _demo_get(outputs, n, missing_field_message) for n in signature.output_fields}
        return self.format_field_with_value(signature, values, role="assistant") + self.answer_end

    def _user(self, content: str, parts: _Parts) -> Message:
        return {"role": "user", "content": parts.split(content)}

    def format_demos(self, signature: type[Signature], demos: Sequence[Any]) -> list[Message]:
        """Demos as turns: incomplete ones (some field missing) first, marked as such, then complete ones."""
        complete, incomplete = [], []
        for demo in demos:
            if all(_demo_get(demo, k) is not None for k in signature.fields):
                complete.append(demo)
            elif any(k in demo for k in signature.input_fields) and any(k in demo for k in signature.output_fields):
                incomplete.append(demo)
        messages: list[Message] = []
        for demo, prefix, missing in [
            (d, _INCOMPLETE_DEMO, "Not supplied for this particular example. ") for d in incomplete
        ] + [(d, "", "Not supplied for this conversation history message. ") for d in complete]:
            parts = _Parts()
            messages.append(self._user(self.format_user_message_content(signature, demo, prefix, parts=parts), parts))
            messages.append(
                {"role": "assistant", "content": self.format_assistant_message_content(signature, demo, missing)}
            )
        return messages

    def format_conversation_history(
        self, signature: type[Signature], history_field: str, inputs: dict[str, Any]
    ) -> list[Message]:
        """The turns a ``History`` input holds (removed from ``inputs``), tool calls and results included."""
        value = inputs.pop(history_field, None)
        if value is None:
            return []
        turns = History.model_validate(value).messages if not isinstance(value, History) else value.messages
        messages: list[Message] = []
        for turn in turns:
            call_field, tool_calls = _tool_calls_in(turn)
            results = _tool_call_results(tool_calls) if tool_calls is not None else None
            parts = _Parts()
            main = any(n in turn for n in signature.input_fields)
            content = self.format_user_message_content(signature, turn, main_request=main, parts=parts)
            if content:
                messages.append(self._user(content, parts))
            if self.use_native_function_calling and tool_calls is not None:
                self._native_history_turn(signature, turn, tool_calls, results, messages)
                continue
            values = dict(turn)
            if call_field is not None and results is not None:
                values[call_field] = ToolCalls.model_validate({"tool_calls": list(_get(tool_calls, "tool_calls", []))})
            assistant = self.format_assistant_message_content(signature, values)
            if assistant:
                messages.append({"role": "assistant", "content": assistant})
            if results is not None:
                shown = json.dumps(jsonable({"tool_call_results": results}), ensure_ascii=False)
                text = self._sections({"tool_call_results": shown})
                messages.append({"role": "user", "content": text})
        return messages

    def _native_history_turn(
        self,
        signature: type[Signature],
        turn: Mapping[str, Any],
        tool_calls: Any,
        results: list[Any] | None,
        messages: list[Message],
    ) -> None:
        rest = signature
        for name, spec in signature.output_fields.items():
            if spec.annotation is ToolCalls or turn.get(name) is None:
                rest = rest.delete(name)
        content = self.format_assistant_message_content(rest, turn) if rest.output_fields else ""
        calls = [provider_tool_call(c) for c in _get(tool_calls, "tool_calls", [])]
        if results is not None:
            call_ids = [c["id"] for c in calls]
            result_ids = [_get(r, "call_id") for r in results]
            if call_ids != result_ids or not all(call_ids):
                results = None
        if content or results is not None:
            message: dict[str, Any] = {"role": "assistant", "content": content or None}
            if results is not None:
                message["tool_calls"] = [
                    {
                        "type": "function",
                        "function": {
                            "name": c["name"],
                            "arguments": json.dumps(jsonable(c["args"]), ensure_ascii=False),
                        },
                        "id": c["id"],
                    }
                    for c in calls
                ]
            messages.append(message)
        for result in results or []:
            messages.append(
                typing.cast(
                    Message,
                    {
                        "role": "tool",
                        "content": _result_content(_get(result, "value")),
                        "tool_call_id": _get(result, "call_id"),
                        "name": _get(result, "name"),
                    },
                )
            )

    def format(self, signature: type[Signature], demos: Sequence[Any], inputs: dict[str, Any]) -> list[Message]:
        """DSPy's messages: system, demos, history turns, then the inputs with the reminder."""
        inputs = dict(inputs)
        history = next((n for n, s in signature.input_fields.items() if s.annotation is History), None)
        messages: list[Message] = [{"role": "system", "content": self.format_system_message(signature)}]
        messages.extend(self.format_demos(signature, demos))
        current = signature
        if history is not None:
            current = signature.delete(history)
            messages.extend(self.format_conversation_history(current, history, inputs))
        parts = _Parts()
        content = self.format_user_message_content(current, inputs, main_request=True, parts=parts)
        if content:
            messages.append(self._user(content, parts))
        return messages

    def format_outputs(self, signature: type[Signature], outputs: dict[str, Any]) -> str:
        """Output values as an assistant turn."""
        return self.format_assistant_message_content(signature, outputs)

    def format_answer(self, values: Mapping[str, Any]) -> str:
        """Output values written in this format without a signature (what DSPy's ``DummyLM`` answers)."""
        fields = {name: FieldSpec("output", annotation=Any, name=name) for name in values}
        return self._write_outputs(fields, values)

    def _write_outputs(self, fields: Mapping[str, FieldSpec], values: Mapping[str, Any]) -> str:
        return self._sections({n: format_field_value(fields[n], v) for n, v in values.items()})

    # -- reading

    def parse(self, signature: type[Signature], completion: str) -> dict[str, Any]:
        """The output sections of a completion, each read as its type; missing optional fields take defaults."""
        sections: list[tuple[str | None, list[str]]] = [(None, [])]
        for line in completion.splitlines():
            match = _HEADER_RE.match(line.strip())
            if match:
                rest = line.strip()[match.end() :].strip()
                sections.append((match.group(1), [rest] if rest else []))
            else:
                sections[-1][1].append(line)
        found: dict[str, str] = {}
        for name, lines in sections:
            if name is not None and name not in found and name in signature.output_fields:
                found[name] = "\n".join(lines).strip()
        return typed_outputs(self.name, signature, completion, found, show_value=True)

    def stop_sequences(self, signature: type[Signature]) -> tuple[str, ...]:
        """None: DSPy sends no stop sequences."""
        return ()

    # -- the call

    def preprocess(
        self, lm: Any, lm_kwargs: dict[str, Any], signature: type[Signature], inputs: Mapping[str, Any]
    ) -> type[Signature]:
        """Native features: tools into ``lm_kwargs`` (their fields leave the prompt), native response types.

        Returns the signature the prompt is written for. ``lm_kwargs`` is changed in place.

        Raises:
            ValueError: a ``ToolCalls`` output with no ``list[Tool]`` input (with native calling on).
        """
        if not self.use_native_function_calling:
            for key in _TOOL_KWARGS:
                lm_kwargs.pop(key, None)
        else:
            tools_field = next((n for n, s in signature.input_fields.items() if is_tools_field(s)), None)
            calls_field = next((n for n, s in signature.output_fields.items() if s.annotation is ToolCalls), None)
            if calls_field and tools_field is None:
                raise ValueError(
                    f"You provided an output field {calls_field} to receive the tool calls information, but did not "
                    "provide any tools as the input. Please provide a list of tools as the input by adding an input "
                    "field with type `list[dspy.Tool]`."
                )
            if calls_field and tools_field and _supports_function_calling(lm):
                tools = inputs.get(tools_field) or []
                tools = tools if isinstance(tools, list) else [tools]
                lm_kwargs["tools"] = [tool_function(t) for t in tools]
                if self.parallel_tool_calls is not None and lm_kwargs.get("parallel_tool_calls") is None:
                    lm_kwargs["parallel_tool_calls"] = self.parallel_tool_calls
                signature = signature.delete(calls_field).delete(tools_field)
            elif calls_field:
                for key in _TOOL_KWARGS:
                    lm_kwargs.pop(key, None)
        for name, spec in list(signature.output_fields.items()):
            if spec.annotation in self.native_response_types:
                signature = spec.annotation.adapt_to_native_lm_feature(signature, name, lm, lm_kwargs)
        return signature

    def postprocess(
        self, processed: type[Signature], signature: type[Signature], outputs: Sequence[Any]
    ) -> list[dict[str, Any]]:
        """Each completion (text, or ``{"text", "tool_calls", ...}``) as output values of ``signature``."""
        calls_field = next((n for n, s in signature.output_fields.items() if s.annotation is ToolCalls), None)
        values = []
        for output in outputs:
            text, calls, logprobs = output, None, None
            if isinstance(output, Mapping):
                text, calls, logprobs = output.get("text"), output.get("tool_calls"), output.get("logprobs")
            if calls and calls_field:
                try:
                    value = self.parse(processed, text) if text and processed.output_fields else {}
                except AdapterParseError:
                    value = {}
            elif text:
                value = self.parse(processed, text)
            else:
                raise AdapterParseError(
                    type(self).__name__, signature.__name__, str(output), "the LM returned an empty or null response"
                )
            value = output_defaults(signature, value) | {
                k: v for k, v in value.items() if k not in signature.output_fields
            }
            for name in signature.output_fields:
                value.setdefault(name, None)
            if calls and calls_field:
                value[calls_field] = ToolCalls.model_validate({"tool_calls": [provider_tool_call(c) for c in calls]})
            for name, spec in signature.output_fields.items():
                if spec.annotation in self.native_response_types:
                    native = spec.annotation.parse_lm_response(output)
                    if native is not None:
                        value[name] = native
            if logprobs:
                value["logprobs"] = logprobs
            values.append(value)
        return values

    def prepare_lm_kwargs(self, lm: Any, lm_kwargs: dict[str, Any], signature: type[Signature]) -> None:
        """Request settings the format needs before the call (none for the chat format)."""

    def __call__(
        self,
        lm: Any,
        lm_kwargs: dict[str, Any],
        signature: type[Signature],
        demos: Sequence[Any],
        inputs: dict[str, Any],
    ) -> list[dict[str, Any]]:
        """Format, call ``lm(messages=..., **lm_kwargs)``, parse: DSPy's adapter call."""
        from ..runtime import run_sync

        if not _calls_itself(lm):
            return run_sync(self._dspy_acall(lm, lm_kwargs, signature, demos, inputs))
        processed, messages = self._dspy_prepare(lm, lm_kwargs, signature, demos, inputs)
        try:
            return self.postprocess(processed, signature, _as_outputs(lm(messages=messages, **lm_kwargs)))
        except AdapterParseError:
            fallback = self._fallback_adapter()
            if fallback is None:
                raise
            return fallback(lm, lm_kwargs, signature, demos, inputs)

    async def acall(self, lm: Any, *args: Any, **kwargs: Any) -> Any:
        """DSPy's ``acall(lm, lm_kwargs, signature, demos, inputs)``, or ElixirML's (as :meth:`Adapter.acall`).

        DSPy's form returns the output values per completion; ElixirML's returns (outputs,
        response, messages).
        """
        if args and isinstance(args[0], Mapping):
            return await self._dspy_acall(lm, *args, **kwargs)
        return await self._em_acall(lm, *args, **kwargs)

    def _fallback_adapter(self) -> DSPyChatAdapter | None:
        if not self.use_json_adapter_fallback or isinstance(self, DSPyJSONAdapter):
            return None
        return DSPyJSONAdapter(
            use_native_function_calling=self.use_native_function_calling,
            native_response_types=self.native_response_types,
            parallel_tool_calls=self.parallel_tool_calls,
        )

    def _dspy_prepare(
        self,
        lm: Any,
        lm_kwargs: dict[str, Any],
        signature: type[Signature],
        demos: Sequence[Any],
        inputs: dict[str, Any],
    ) -> tuple[type[Signature], list[Message]]:
        self.prepare_lm_kwargs(lm, lm_kwargs, signature)
        processed = self.preprocess(lm, lm_kwargs, signature, inputs)
        messages = self.format(processed, demos, inputs)
        if lm_kwargs.get("parallel_tool_calls") is not None:
            lm_kwargs.setdefault("tool_choice", "auto")
        return processed, messages

    async def _dspy_acall(
        self,
        lm: Any,
        lm_kwargs: dict[str, Any],
        signature: type[Signature],
        demos: Sequence[Any],
        inputs: dict[str, Any],
    ) -> list[dict[str, Any]]:
        processed, messages = self._dspy_prepare(lm, lm_kwargs, signature, demos, inputs)
        try:
            if _calls_itself(lm):
                outputs = _as_outputs(lm(messages=messages, **lm_kwargs))
            else:
                response = await lm.arequest(messages, **em_settings(lm_kwargs))
                outputs = response_outputs(response)
            return self.postprocess(processed, signature, outputs)
        except AdapterParseError:
            fallback = self._fallback_adapter()
            if fallback is None:
                raise
            return await fallback._dspy_acall(lm, lm_kwargs, signature, demos, inputs)

    async def _em_acall(
        self,
        lm: LM,
        signature: type[Signature],
        demos: Sequence[Any],
        inputs: dict[str, Any],
        settings: dict[str, Any],
        *,
        feedback: Sequence[tuple[str, str]] = (),
    ) -> tuple[list[dict[str, Any]], LMResponse, list[Message]]:
        request = dict(settings)
        processed, messages = self._dspy_prepare(lm, request, signature, demos, inputs)
        for previous, message in feedback:
            messages.append({"role": "assistant", "content": previous})
            messages.append({"role": "user", "content": self.feedback_message(processed, message)})
        parsed: list[list[dict[str, Any]]] = []

        def validate(response: LMResponse) -> None:
            parsed.append(self.postprocess(processed, signature, response_outputs(response)))

        request = em_settings(request)
        merged = type(settings)(request) if type(settings) is not dict else request
        try:
            response = await lm.arequest(messages, validate=validate, settings=merged)
        except AdapterParseError as failed:
            fallback = self._fallback_adapter()
            if fallback is None:
                raise
            return await after_failed_answer(
                failed, fallback._em_acall(lm, signature, demos, inputs, settings, feedback=feedback)
            )
        return parsed[-1], response, messages


def em_settings(lm_kwargs: dict[str, Any]) -> dict[str, Any]:
    """DSPy's request keywords as ElixirML's settings.

    A ``response_format`` model becomes its JSON schema; ``parallel_tool_calls`` and
    ``reasoning_effort`` (provider options ElixirML has no setting for) go in ``extra``.
    """
    settings = dict(lm_kwargs)
    response_format = settings.get("response_format")
    if isinstance(response_format, type) and issubclass(response_format, pydantic.BaseModel):
        schema = {"name": response_format.__name__, "schema": response_format.model_json_schema(), "strict": True}
        settings["response_format"] = {"type": "json_schema", "json_schema": schema}
    passed = {k: settings.pop(k) for k in _PROVIDER_OPTIONS if k in settings}
    if passed:
        settings["extra"] = {**dict(settings.get("extra") or {}), **passed}
    return settings


def _supports_function_calling(lm: Any) -> bool:
    flag = getattr(lm, "supports_function_calling", None)
    if flag is None:
        flag = getattr(lm, "supports_tools", False)
    return bool(flag)


def _calls_itself(lm: Any) -> bool:
    """Whether the LM is a DSPy-style one answering ``lm(messages=..., **kwargs)`` itself (not ElixirML's LM)."""
    return not isinstance(lm, LM) or type(lm).__call__ is not LM.__call__


def _as_outputs(outputs: Any) -> list[Any]:
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def response_outputs(response: LMResponse) -> list[Any]:
    """An ElixirML response as DSPy's LM outputs: each completion's text, or a dict when it made tool calls."""
    outputs: list[Any] = []
    for completion in response.completions:
        if completion.tool_calls:
            outputs.append({"text": completion.text or None, "tool_calls": list(completion.tool_calls)})
        else:
            outputs.append(completion.text)
    return outputs


class DSPyJSONAdapter(DSPyChatAdapter):
    """DSPy 3.4's ``JSONAdapter``: inputs in sections, the answer one JSON object, written and read as DSPy does.

    Structured outputs (``response_format``) are asked for as DSPy asks: a JSON schema of the
    outputs when the LM takes one, else JSON mode. Native function calling is on by default,
    as in DSPy. It is ``elixirml.dspy.JSONAdapter``.
    """

    name = "JSONAdapter"

    def __init__(
        self,
        callbacks: list[Any] | None = None,
        use_native_function_calling: bool = True,
        native_response_types: list[type] | None = None,
        parallel_tool_calls: bool | None = None,
    ) -> None:
        super().__init__(
            callbacks,
            use_native_function_calling=use_native_function_calling,
            native_response_types=native_response_types,
            parallel_tool_calls=parallel_tool_calls,
        )

    def format_field_structure(self, signature: type[Signature]) -> str:
        """Input sections, then the output fields as a JSON object."""
        inputs = self._sections({n: field_placeholder(n, s) for n, s in signature.input_fields.items()})
        outputs = json.dumps({n: field_placeholder(n, s) for n, s in signature.output_fields.items()}, indent=2)
        parts = [
            _STRUCTURE,
            "Inputs will have the following structure:",
            inputs,
            "Outputs will be a JSON object with the following fields.",
            outputs,
        ]
        return "\n\n".join(parts).strip()

    def user_message_output_requirements(self, signature: type[Signature]) -> str:
        """The closing reminder of the JSON object's fields, in order."""
        fields = ", then ".join(f"`{n}`{reminder_type(s)}" for n, s in signature.output_fields.items())
        return f"Respond with a JSON object in the following order of fields: {fields}."

    def _write_outputs(self, fields: Mapping[str, FieldSpec], values: Mapping[str, Any]) -> str:
        return json.dumps(jsonable(dict(values)), indent=2, ensure_ascii=False)

    def format_field_with_value(
        self, signature: type[Signature], values: Mapping[str, Any], parts: _Parts | None = None, role: str = "user"
    ) -> str:
        """Input sections for the user; an indented JSON object for the assistant."""
        if role == "user":
            return super().format_field_with_value(signature, values, parts)
        return json.dumps(jsonable(dict(values)), indent=2, ensure_ascii=False)

    #: JSON answers have no end marker.
    answer_end = ""

    def parse(self, signature: type[Signature], completion: str) -> dict[str, Any]:
        """The answer's JSON object (repaired if need be), each value read as its field's type."""
        import json_repair

        data = json_repair.loads(completion)
        if not isinstance(data, dict):
            found = first_braced(completion)
            if found is not None:
                completion = found
                data = json_repair.loads(completion)
        if not isinstance(data, dict):
            raise AdapterParseError(
                self.name, signature.__name__, completion, "the LM response cannot be read as a JSON object"
            )
        present = {k: v for k, v in data.items() if k in signature.output_fields}
        return typed_outputs(self.name, signature, completion, present)

    def prepare_lm_kwargs(self, lm: Any, lm_kwargs: dict[str, Any], signature: type[Signature]) -> None:
        """``response_format``: the outputs' JSON schema when the LM takes one, else JSON mode."""
        if "response_format" not in _supported_params(lm):
            return
        has_calls = any(s.annotation is ToolCalls for s in signature.output_fields.values())
        open_mapping = any(typing.get_origin(s.annotation) is dict for s in signature.output_fields.values())
        if open_mapping or (not self.use_native_function_calling and has_calls) or not _supports_schema(lm):
            lm_kwargs["response_format"] = {"type": "json_object"}
            return
        try:
            lm_kwargs["response_format"] = structured_output_model(signature, self.use_native_function_calling)
        except (ValueError, pydantic.PydanticInvalidForJsonSchema, pydantic.PydanticSchemaGenerationError):
            lm_kwargs["response_format"] = {"type": "json_object"}


def first_braced(text: str) -> str | None:
    """The first ``{...}`` span of ``text`` whose braces balance (nested ones included), if any."""
    start = text.find("{")
    while start >= 0:
        depth = 0
        for i in range(start, len(text)):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    return text[start : i + 1]
        start = text.find("{", start + 1)
    return None


def _supported_params(lm: Any) -> set[str]:
    params = getattr(lm, "supported_params", None)
    if params is None:
        params = getattr(lm, "supported_settings", None) or ()
    return {str(p) for p in params}


def _supports_schema(lm: Any) -> bool:
    flag = getattr(lm, "supports_response_schema", None)
    if flag is None:
        flag = getattr(lm, "supports_json_schema", False)
    return bool(flag)


def _strict(schema: dict[str, Any]) -> None:
    """Every object lists all its properties as required and allows no others (OpenAI's structured outputs)."""
    if schema.get("type") == "object":
        props = schema.get("properties")
        if props is None:
            schema["properties"] = {}
            schema["required"] = []
        else:
            schema["required"] = list(props)
            for sub in props.values():
                if isinstance(sub, dict):
                    _strict(sub)
        schema["additionalProperties"] = False
    if schema.get("type") == "array" and isinstance(schema.get("items"), dict):
        _strict(schema["items"])
    for key in ("$defs", "definitions"):
        for sub in (schema.get(key) or {}).values():
            _strict(sub)


def structured_output_model(signature: type[Signature], skip_tool_calls: bool = True) -> type[pydantic.BaseModel]:
    """A Pydantic model of the outputs whose JSON schema is OpenAI-strict (DSPy's ``response_format`` value).

    Raises:
        ValueError: an output is an open-ended mapping (``dict[str, Any]``), which strict schemas cannot state.
    """
    fields: dict[str, Any] = {}
    for name, spec in signature.output_fields.items():
        if typing.get_origin(spec.annotation) is dict:
            raise ValueError(f"Field {name!r} has an open-ended mapping type, which structured outputs cannot state")
        if skip_tool_calls and spec.annotation is ToolCalls:
            continue
        fields[name] = (spec.annotation, ... if spec.required else spec.default)
    model = pydantic.create_model("DSPyProgramOutputs", __config__=pydantic.ConfigDict(extra="forbid"), **fields)
    schema = model.model_json_schema()
    _strict(schema)
    model.model_json_schema = lambda *args, **kwargs: schema
    return typing.cast(type[pydantic.BaseModel], model)


class DSPyXMLAdapter(DSPyChatAdapter):
    """DSPy 3.4's ``XMLAdapter``: one ``<field>`` element per field (``elixirml.dspy.XMLAdapter``)."""

    name = "XMLAdapter"

    def format_field_with_value(
        self, signature: type[Signature], values: Mapping[str, Any], parts: _Parts | None = None, role: str = "user"
    ) -> str:
        """One element per field; an output ``str`` value has ``&`` and ``<`` escaped."""
        fields = signature.fields
        out = []
        for name, value in values.items():
            text = format_field_value(fields[name], value, parts)
            if fields[name].kind == "output" and fields[name].annotation is str:
                text = text.replace("&", "&amp;").replace("<", "&lt;")
            out.append(f"<{name}>\n{text}\n</{name}>")
        return "\n\n".join(out).strip()

    def _write_outputs(self, fields: Mapping[str, FieldSpec], values: Mapping[str, Any]) -> str:
        return "\n\n".join(f"<{n}>\n{format_field_value(fields[n], v)}\n</{n}>" for n, v in values.items())

    def format_field_structure(self, signature: type[Signature]) -> str:
        """The elements of the inputs, then of the outputs, with their placeholders."""
        groups = [
            "\n\n".join(f"<{n}>\n{field_placeholder(n, s)}\n</{n}>" for n, s in group.items())
            for group in (signature.input_fields, signature.output_fields)
        ]
        return "\n\n".join((_STRUCTURE, *groups))

    #: The (possibly empty) input elements always take their place in a user turn, as in DSPy.
    keep_empty_inputs = True

    #: XML answers have no end marker.
    answer_end = ""

    def user_message_output_requirements(self, signature: type[Signature]) -> str:
        """The closing reminder of the output tags."""
        fields = ", then ".join(f"`<{n}>`" for n in signature.output_fields)
        return f"Respond with the corresponding output fields wrapped in XML tags {fields}."

    def parse(self, signature: type[Signature], completion: str) -> dict[str, Any]:
        """The first element of each output field, read as its type."""
        found: dict[str, str] = {}
        for name, spec in signature.output_fields.items():
            match = re.search(
                rf"<{re.escape(name)}>((?:(?!</{re.escape(name)}>).)*)</{re.escape(name)}>", completion, re.DOTALL
            )
            if match is not None:
                text = match.group(1).strip()
                found[name] = text.replace("&lt;", "<").replace("&amp;", "&") if spec.annotation is str else text
        return typed_outputs(self.name, signature, completion, found)
