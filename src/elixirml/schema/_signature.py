"""Signatures: what an LM step takes and returns.

A signature is a *class*. Write it in class form::

    class QA(em.Signature):
        \"\"\"Answer the question.\"\"\"
        question: str = em.InputField()
        answer: str = em.OutputField(desc="a short answer")

or as a string: ``em.Signature("question -> answer")`` /
``em.Signature("question: str, k: int -> answers: list[str]", "instructions")``.
Editing methods return new signature classes; a signature is never changed in place.
"""

from __future__ import annotations

import json
import re
import typing
import warnings
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

import pydantic
from pydantic_core import PydanticUndefined

from ..errors import SignatureError, SignatureFieldError, ValidationError, truncate
from ._types import allows_none, parse_type, type_to_str, value_has_type

T = TypeVar("T")

_CONSTRAINT_KEYS = frozenset({"ge", "gt", "le", "lt", "multiple_of", "pattern", "min_length", "max_length", "strict"})


class FieldSpec:
    """One field of a signature. Made by :func:`InputField` / :func:`OutputField`.

    Attributes:
        kind: ``"input"`` or ``"output"``.
        desc: the description shown to the LM.
        prefix: an optional label used instead of the field name in prompts.
        constraints: Pydantic constraints (``ge``, ``le``, ``pattern``, ...).
        default: the default value, or ``PydanticUndefined`` when the field is required.
        annotation: the field's type (filled in when the signature is built).
        name: the field's name (filled in when the signature is built).
        typed: whether the signature gave the field's type (``question: str``), or left it out
            (``question``, typed ``str``); only typed inputs are checked for type mismatches.
    """

    __slots__ = ("annotation", "constraints", "default", "desc", "kind", "name", "prefix", "typed")

    def __init__(
        self,
        kind: str,
        desc: str | None = None,
        *,
        prefix: str | None = None,
        default: Any = PydanticUndefined,
        annotation: Any = str,
        name: str = "",
        constraints: dict[str, Any] | None = None,
        typed: bool = True,
    ) -> None:
        self.kind = kind
        self.typed = typed
        self.desc = desc
        self.prefix = prefix
        self.default = default
        self.annotation = annotation
        self.name = name
        self.constraints = dict(constraints or {})

    def copy(self, **changes: Any) -> FieldSpec:
        """Return a copy with some attributes replaced."""
        new = FieldSpec(
            self.kind,
            self.desc,
            prefix=self.prefix,
            default=self.default,
            annotation=self.annotation,
            name=self.name,
            constraints=self.constraints,
            typed=self.typed,
        )
        for key, value in changes.items():
            setattr(new, key, value)
        return new

    @property
    def required(self) -> bool:
        """Whether the field has no default."""
        return self.default is PydanticUndefined

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FieldSpec):
            return NotImplemented
        return (
            self.kind == other.kind
            and self.desc == other.desc
            and self.prefix == other.prefix
            and self.default == other.default
            and self.annotation == other.annotation
            and self.name == other.name
            and self.constraints == other.constraints
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{self.kind.capitalize()}Field({self.name}: {type_to_str(self.annotation)})"

    @property
    def json_schema_extra(self) -> dict[str, Any]:
        """The field as DSPy describes it (its Pydantic field's ``json_schema_extra``), computed.

        ``{"__dspy_field_type": kind, "desc": ..., "prefix": ...}``, plus ``"constraints"`` as
        DSPy writes them (``"minimum length: 5, greater than or equal to: 1"``) when the field
        has any. The description defaults to ``"${name}"`` and the prefix to
        :func:`infer_prefix` of the name with a colon, as DSPy fills them in.
        """
        extra: dict[str, Any] = {
            "__dspy_field_type": self.kind,
            "desc": self.desc if self.desc is not None else f"${{{self.name}}}",
            "prefix": self.prefix if self.prefix is not None else f"{infer_prefix(self.name)}:",
        }
        constraints = ", ".join(
            f"{_CONSTRAINT_TEXT[key]}{value}" for key, value in self.constraints.items() if key in _CONSTRAINT_TEXT
        )
        if constraints:
            extra["constraints"] = constraints
        return extra


# How DSPy writes a field's constraints (``json_schema_extra["constraints"]``).
_CONSTRAINT_TEXT = {
    "gt": "greater than: ",
    "ge": "greater than or equal to: ",
    "lt": "less than: ",
    "le": "less than or equal to: ",
    "min_length": "minimum length: ",
    "max_length": "maximum length: ",
    "multiple_of": "a multiple of the given number: ",
}


def infer_prefix(attribute_name: str) -> str:
    """DSPy's default prefix of a field, without the colon.

    ``"someAttributeName"`` and ``"some_attribute_name"`` give ``"Some Attribute Name"``;
    ``"isHTTPSecure"`` gives ``"Is HTTP Secure"``.
    """
    text = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", attribute_name)
    text = re.sub("([a-z0-9])([A-Z])", r"\1_\2", text)
    text = re.sub(r"([a-zA-Z])(\d)", r"\1_\2", text)
    text = re.sub(r"(\d)([a-zA-Z])", r"\1_\2", text)
    return " ".join(word if word.isupper() else word.capitalize() for word in text.split("_"))


def _make_field(kind: str, desc: str | None, description: str | None, kwargs: dict[str, Any]) -> Any:
    prefix = kwargs.pop("prefix", None)
    default = kwargs.pop("default", PydanticUndefined)
    factory = kwargs.pop("default_factory", None)
    if factory is not None:
        if default is not PydanticUndefined:
            raise SignatureError(f"{kind.capitalize()}Field takes default= or default_factory=, not both")
        default = factory()  # Pydantic copies a mutable default for each value, as a factory would make
    kwargs.pop("format", None)  # accepted for DSPy compatibility; adapters format values themselves
    unknown = set(kwargs) - _CONSTRAINT_KEYS
    if unknown:
        raise SignatureError(
            f"Unknown option(s) {sorted(unknown)} for {kind.capitalize()}Field; "
            f"allowed: desc, description, prefix, default, default_factory, {', '.join(sorted(_CONSTRAINT_KEYS))}"
        )
    return FieldSpec(
        kind, desc if desc is not None else description, prefix=prefix, default=default, constraints=kwargs
    )


def InputField(desc: str | None = None, *, description: str | None = None, **kwargs: Any) -> Any:  # noqa: N802
    """Declare an input field of a signature.

    Args:
        desc: a description shown to the LM (``description`` is an alias).
        description: same as ``desc``.
        **kwargs: ``prefix``, ``default`` and Pydantic constraints (``ge``, ``le``, ``gt``,
            ``lt``, ``pattern``, ``min_length``, ``max_length``, ``multiple_of``).
    """
    return _make_field("input", desc, description, kwargs)


def OutputField(desc: str | None = None, *, description: str | None = None, **kwargs: Any) -> Any:  # noqa: N802
    """Declare an output field of a signature. Takes the same options as :func:`InputField`."""
    return _make_field("output", desc, description, kwargs)


def _split_top_level(text: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    quote: str | None = None
    for ch in text:
        if quote:
            current.append(ch)
            if ch == quote:
                quote = None
            continue
        if ch in "'\"":
            quote = ch
        elif ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def check_field_name(name: str, where: str) -> None:
    """Refuse a field name that is not an identifier, is private, or is taken by Pydantic.

    Raises:
        SignatureError: naming the field and ``where`` it appears.
    """
    if not name.isidentifier():
        raise SignatureError(f"Invalid field name {name!r} in {where}: field names are Python identifiers")
    if name.startswith("_"):
        raise SignatureError(f"Invalid field name {name!r} in {where}: field names may not start with '_'")
    if name.startswith("model_") and hasattr(pydantic.BaseModel, name):
        raise SignatureError(
            f"Invalid field name {name!r} in {where}: Pydantic reserves it (BaseModel.{name}); rename the field"
        )


def _parse_side(text: str, kind: str, spec: str, custom_types: dict[str, Any] | None) -> dict[str, FieldSpec]:
    fields: dict[str, FieldSpec] = {}
    where = f"signature {truncate(spec, 120)}"
    for item in _split_top_level(text):
        name, sep, type_text = item.partition(":")
        name = name.strip()
        check_field_name(name, where)
        if name in fields:
            raise SignatureError(f"Field {name!r} appears twice in {where}")
        try:
            annotation = parse_type(type_text, custom_types, caller_scope=True) if sep else str
        except SignatureError as exc:
            raise SignatureError(f"Field {name!r} of {where}: {exc}") from None
        fields[name] = FieldSpec(kind, annotation=annotation, name=name, typed=bool(sep))
    return fields


def _default_instructions(inputs: dict[str, FieldSpec], outputs: dict[str, FieldSpec]) -> str:
    ins = ", ".join(f"`{n}`" for n in inputs)
    outs = ", ".join(f"`{n}`" for n in outputs)
    return f"Given the fields {ins}, produce the fields {outs}."


class SignatureMeta(type):
    """Metaclass of :class:`Signature`: collects fields and builds validation models."""

    input_fields: dict[str, FieldSpec]
    output_fields: dict[str, FieldSpec]
    instructions: str

    def __new__(mcls, name: str, bases: tuple[type, ...], ns: dict[str, Any], **kw: Any) -> SignatureMeta:
        specs = {k: v for k, v in ns.items() if isinstance(v, FieldSpec)}
        for key in specs:
            del ns[key]
        cls = super().__new__(mcls, name, bases, ns, **kw)
        inherited: dict[str, FieldSpec] = {}
        for base in reversed(cls.__mro__[1:]):
            if isinstance(base, SignatureMeta):
                inherited.update({**base.__dict__.get("_fields", {})})
        raw_annotations: dict[str, Any] = ns.get("__annotations__", {})
        hints = _resolve_hints(cls, raw_annotations)
        for field_name in raw_annotations:
            if field_name not in specs and not field_name.startswith("_") and field_name not in ("instructions",):
                if typing.get_origin(hints.get(field_name)) is ClassVar:
                    continue
                raise SignatureFieldError(
                    f"Field {field_name!r} of signature {name} has a type but no InputField() or "
                    f"OutputField(); write `{field_name}: ... = em.InputField()`."
                )
        fields = dict(inherited)
        for field_name, spec in specs.items():
            fields[field_name] = spec.copy(
                name=field_name, annotation=hints.get(field_name, str), typed=field_name in hints
            )
        cls._fields = fields  # type: ignore[attr-defined]
        cls.input_fields = {k: v for k, v in fields.items() if v.kind == "input"}
        cls.output_fields = {k: v for k, v in fields.items() if v.kind == "output"}
        # The base class's own docstring documents the class; it is no signature's instructions.
        doc = ns.get("__doc__") if bases else None
        if doc and doc.strip():
            import inspect

            cls.instructions = inspect.cleandoc(doc)
        elif "instructions" not in ns:
            parent = next(
                (b for b in cls.__mro__[1:] if isinstance(b, SignatureMeta) and b.__dict__.get("_explicit")), None
            )
            cls.instructions = (
                parent.instructions if parent else _default_instructions(cls.input_fields, cls.output_fields)
            )
        cls._explicit = bool(doc and doc.strip()) or "instructions" in ns  # type: ignore[attr-defined]
        cls._models = {}  # type: ignore[attr-defined]
        cls._memo = {}  # type: ignore[attr-defined]
        return cls

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        """``Signature("q -> a")`` builds a signature; ``MySig(q=..., a=...)`` a value of one (as in DSPy).

        A value holds every field's value, validated as outputs are (a missing required field
        or a value of the wrong type raises :class:`~elixirml.errors.ValidationError`).
        """
        if args and isinstance(args[0], (str, dict)):
            instructions = args[1] if len(args) > 1 else kwargs.pop("instructions", None)
            return make_signature(args[0], instructions, **kwargs)
        if args or (not kwargs and any(spec.required for spec in cls.fields.values())):
            raise SignatureError(
                f"{cls.__name__} is a signature class: pass it to a module such as em.Predict({cls.__name__}), "
                f"build one with em.Signature('inputs -> outputs'), or make a value of it with its field values "
                f"by keyword ({', '.join(cls.fields) or 'no fields'})."
            )
        unknown = [name for name in kwargs if name not in cls.fields]
        if unknown:
            raise SignatureError(f"{cls.__name__} has no field(s) {unknown}; its fields: {list(cls.fields)}")
        values = {
            **_validate(cls, "input", {k: v for k, v in kwargs.items() if k in cls.input_fields}),  # type: ignore[arg-type]
            **_validate(cls, "output", {k: v for k, v in kwargs.items() if k in cls.output_fields}),  # type: ignore[arg-type]
        }
        value: Any = object.__new__(typing.cast("type[Signature]", cls))
        value.__dict__.update(values)
        return value

    def __repr__(cls) -> str:
        return f"{cls.__name__}({cls.signature})"

    def __eq__(cls, other: object) -> bool:
        """Two signature classes are equal when their names, instructions and fields are.

        So a signature rebuilt from saved state (``em.load``) equals the one that was saved.
        """
        if cls is other:
            return True
        if not isinstance(other, SignatureMeta):
            return NotImplemented
        return cls.__name__ == other.__name__ and cls.equals(other)  # type: ignore[attr-defined]

    def __hash__(cls) -> int:
        return hash((cls.__name__, tuple(cls.fields)))

    @property
    def fields(cls) -> dict[str, FieldSpec]:
        """All fields, inputs first then outputs, in declaration order."""
        return {**cls.input_fields, **cls.output_fields}

    @property
    def signature(cls) -> str:
        """The signature as text, with types: ``"question: str -> answer: str"``."""

        def side(fields: dict[str, FieldSpec]) -> str:
            return ", ".join(f"{n}: {type_to_str(f.annotation)}" for n, f in fields.items())

        return f"{side(cls.input_fields)} -> {side(cls.output_fields)}"


def _resolve_hints(cls: type, raw: dict[str, Any]) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        return typing.get_type_hints(cls, include_extras=True)
    except Exception:
        hints: dict[str, Any] = {}
        for key, value in raw.items():
            hints[key] = parse_type(value) if isinstance(value, str) else value
        return hints


class Signature(metaclass=SignatureMeta):
    """Base class of all signatures; see the module docstring for the two forms.

    A signature class called with its field values (``MySig(question="q", answer="a")``)
    gives a value of it, whose attributes are the validated values (DSPy's signatures are
    Pydantic models, and can be instantiated the same way).
    """

    def __repr__(self) -> str:
        values = ", ".join(f"{name}={value!r}" for name, value in vars(self).items())
        return f"{type(self).__name__}({values})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Signature):
            return NotImplemented
        return SignatureMeta.__eq__(type(self), type(other)) is True and vars(self) == vars(other)

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def _derive(cls, fields: dict[str, FieldSpec], instructions: str | None = None) -> type[Signature]:
        ns: dict[str, Any] = {
            "__annotations__": {},
            "__doc__": instructions if instructions is not None else cls.instructions,
        }
        for name, spec in fields.items():
            ns[name] = spec
        new = SignatureMeta(cls.__name__, (Signature,), ns)
        for name, spec in fields.items():  # keep resolved annotations
            new._fields[name].annotation = spec.annotation  # type: ignore[attr-defined]
            new._fields[name].typed = spec.typed  # type: ignore[attr-defined]
        new.input_fields = {k: v for k, v in new._fields.items() if v.kind == "input"}  # type: ignore[attr-defined]
        new.output_fields = {k: v for k, v in new._fields.items() if v.kind == "output"}  # type: ignore[attr-defined]
        return typing.cast(type[Signature], new)

    @classmethod
    def with_instructions(cls, instructions: str) -> type[Signature]:
        """Return a copy of this signature with new instructions."""
        return cls._derive(dict(cls.fields), instructions)

    @classmethod
    def append_instructions(cls, instructions: str) -> type[Signature]:
        """Return a copy whose instructions are these ones followed by ``instructions`` (a blank line between)."""
        return cls._derive(dict(cls.fields), f"{cls.instructions}\n\n{instructions}")

    @classmethod
    def insert(cls, index: int, name: str, field: Any, type_: Any = None) -> type[Signature]:
        """Return a copy with a field inserted at ``index`` among the fields of its kind.

        Args:
            index: position among the inputs (for an ``InputField``) or the outputs; negative
                counts from the end, ``-1`` appends.
            name: the new field's name.
            field: ``em.InputField(...)`` or ``em.OutputField(...)``.
            type_: its type (default: the field's own annotation, else ``str``).

        Raises:
            SignatureError: a bad name, a name already used, or an index out of range.
        """
        check_field_name(name, f"{cls.__name__}.insert")
        if name in cls.fields:
            raise SignatureError(f"Signature {cls.__name__} already has a field {name!r}")
        if not isinstance(field, FieldSpec):
            raise SignatureError("Pass em.InputField() or em.OutputField() as the field")
        annotation = type_ if type_ is not None else (field.annotation if field.annotation is not None else str)
        spec = field.copy(name=name, annotation=annotation)
        same = list((cls.input_fields if spec.kind == "input" else cls.output_fields).items())
        position = index + len(same) + 1 if index < 0 else index
        if not 0 <= position <= len(same):
            raise SignatureError(
                f"{cls.__name__}.insert: index {index} is out of range for its {len(same)} {spec.kind} field(s); "
                f"use 0..{len(same)}, or -1 to append."
            )
        same.insert(position, (name, spec))
        inputs = dict(same) if spec.kind == "input" else cls.input_fields
        outputs = dict(same) if spec.kind == "output" else cls.output_fields
        return cls._derive({**inputs, **outputs})

    @classmethod
    def append(cls, name: str, field: Any, type_: Any = None) -> type[Signature]:
        """Return a copy with a field added at the end of its kind (inputs or outputs)."""
        return cls.insert(-1, name, field, type_)

    @classmethod
    def prepend(cls, name: str, field: Any, type_: Any = None) -> type[Signature]:
        """Return a copy with a field added at the start of its kind (inputs or outputs)."""
        return cls.insert(0, name, field, type_)

    @classmethod
    def delete(cls, name: str) -> type[Signature]:
        """Return a copy without the named field."""
        if name not in cls.fields:
            raise SignatureError(f"Signature {cls.__name__} has no field {name!r}; fields: {list(cls.fields)}")
        return cls._derive({k: v for k, v in cls.fields.items() if k != name})

    @classmethod
    def with_updated_fields(cls, name: str, type_: Any = None, **changes: Any) -> type[Signature]:
        """Return a copy where field ``name`` has a new type and/or new options.

        Options: ``desc``, ``prefix``, ``default`` and Pydantic constraints.
        """
        if name not in cls.fields:
            raise SignatureError(f"Signature {cls.__name__} has no field {name!r}; fields: {list(cls.fields)}")
        spec = cls.fields[name]
        desc = changes.pop("desc", changes.pop("description", spec.desc))
        prefix = changes.pop("prefix", spec.prefix)
        default = changes.pop("default", spec.default)
        unknown = set(changes) - _CONSTRAINT_KEYS
        if unknown:
            raise SignatureError(f"Unknown field option(s) {sorted(unknown)}")
        new = spec.copy(
            desc=desc,
            prefix=prefix,
            default=default,
            annotation=type_ if type_ is not None else spec.annotation,
            constraints={**spec.constraints, **changes},
            typed=spec.typed or type_ is not None,
        )
        return cls._derive({k: (new if k == name else v) for k, v in cls.fields.items()})

    @classmethod
    def _model(cls, kind: str) -> type[pydantic.BaseModel]:
        models: dict[str, type[pydantic.BaseModel]] = cls._models  # type: ignore[attr-defined]
        model = models.get(kind)
        if model is None:
            fields = cls.input_fields if kind == "input" else cls.output_fields
            definitions: dict[str, Any] = {}
            for name, spec in fields.items():
                default = spec.default
                if kind == "input" and default is PydanticUndefined and allows_none(spec.annotation):
                    default = None  # an optional input may be left out
                definitions[name] = (
                    spec.annotation,
                    pydantic.Field(default=default, description=spec.desc, **spec.constraints),
                )
            model = pydantic.create_model(f"{cls.__name__}{kind.capitalize()}s", **definitions)
            models[kind] = model
        return model

    @classmethod
    def memo(cls, key: Any, factory: Callable[..., T], *args: Any) -> T:
        """Compute a value derived from this signature once (``factory(*args)``) and keep it.

        Signatures never change after creation (editing makes new classes), so adapters keep
        rendered prompt parts here instead of rebuilding them on every call. Pass the
        factory's arguments rather than a closure: this runs several times per call.
        """
        memo: dict[Any, Any] = cls._memo  # type: ignore[attr-defined]
        try:
            value: T = memo[key]  # typed, not typing.cast: no extra call on this hot path
        except KeyError:
            value = memo[key] = factory(*args)
        return value

    @classmethod
    def input_schema(cls) -> dict[str, Any]:
        """JSON Schema (a dict) of the input fields."""
        return cls._model("input").model_json_schema()

    @classmethod
    def output_schema(cls) -> dict[str, Any]:
        """JSON Schema (a dict) of the output fields."""
        return cls._model("output").model_json_schema()

    @classmethod
    def validate_inputs(cls, values: dict[str, Any]) -> dict[str, Any]:
        """Validate and coerce input values, as leniently as DSPy and no more.

        - A value that converts without loss is converted: a list or tuple given for a ``str``
          input (DSPy's RAG programs pass a list of passages as ``context``) is written as
          numbered lines, ``[1] «first»``, as DSPy formats it; a number or bool given for a
          ``str`` input becomes its text.
        - Any other value of the wrong type (a ``Literal`` or enum given another value, a tuple
          of the wrong length included) is kept as it is (the adapter writes it as text) with a
          ``UserWarning`` naming the field, as DSPy does; ``em.configure(warn_on_type_mismatch=False)``
          silences the warning, and ``em.configure(strict_inputs=True)`` raises instead.
        - An input whose type allows ``None`` (``context: str | None``) and that has no default
          may be left out: it stays out of the result (and of the prompt), as in DSPy.

        Raises:
            ValidationError: a required input is missing (or ``None``), a value breaks a rule of
                its field, or a value has the wrong type under ``strict_inputs=True``.
        """
        validated = _checked_inputs(cls, values)
        optional = cls.memo("optional_inputs", _optional_inputs, cls)
        for name in optional:  # left out, it stays out (DSPy's prompt has no section for it)
            if name not in values:
                validated.pop(name, None)
        return validated

    @classmethod
    def input_type_mismatches(cls, values: Mapping[str, Any]) -> list[str]:
        """The input fields whose given value is not of the field's type, before any conversion.

        Only fields the signature typed count (``count: int``; an untyped ``count`` takes any
        value), and only values given and not ``None``. The check is DSPy's (see
        :func:`~elixirml.schema.value_has_type`): ``"3"`` for an ``int`` is a mismatch even
        though :meth:`validate_inputs` converts it.
        """
        found = []
        for name, spec in cls.input_fields.items():
            value = values.get(name)
            if value is None or not spec.typed or type(value) is spec.annotation:  # the common case, at once
                continue
            if not value_has_type(value, spec.annotation):
                found.append(name)
        return found

    @classmethod
    def validate_outputs(cls, values: dict[str, Any]) -> dict[str, Any]:
        """Validate and coerce output values; raises :class:`~elixirml.errors.ValidationError`."""
        return _validate(cls, "output", values)

    @classmethod
    def equals(cls, other: Any) -> bool:
        """Whether ``other`` has the same instructions and fields."""
        return (
            isinstance(other, SignatureMeta)
            and cls.instructions == other.instructions
            and list(cls.fields.items()) == list(other.fields.items())
        )

    @classmethod
    def dump_state(cls) -> dict[str, Any]:
        """A JSON-ready description of the signature (types written as text)."""
        return {
            "name": cls.__name__,
            "instructions": cls.instructions,
            "fields": [
                {
                    "name": n,
                    "kind": f.kind,
                    "type": type_to_str(f.annotation),
                    "desc": f.desc,
                    "prefix": f.prefix,
                    "constraints": f.constraints,
                    **({} if f.required else {"default": f.default}),
                }
                for n, f in cls.fields.items()
            ],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], custom_types: dict[str, Any] | None = None) -> type[Signature]:
        """Rebuild a signature from :meth:`dump_state` output, without evaluating any code."""
        fields: dict[str, FieldSpec] = {}
        try:
            for item in state["fields"]:
                name = item["name"]
                if not isinstance(name, str):
                    raise SignatureError(f"Saved signature state has a field name that is not text: {name!r}")
                check_field_name(name, "saved signature state")
                if item["kind"] not in ("input", "output"):
                    raise SignatureError(
                        f"Saved signature state gives field {name!r} the kind {item['kind']!r}; "
                        "kinds are 'input' and 'output'"
                    )
                fields[name] = FieldSpec(
                    item["kind"],
                    item.get("desc"),
                    prefix=item.get("prefix"),
                    default=item.get("default", PydanticUndefined),
                    annotation=parse_type(item.get("type", "str"), custom_types),
                    name=item["name"],
                    constraints=item.get("constraints") or {},
                )
        except (KeyError, TypeError) as exc:
            raise SignatureError(f"Malformed signature state: {exc!r}") from None
        new = Signature._derive(fields, state.get("instructions"))
        new.__name__ = new.__qualname__ = str(state.get("name", "Signature"))
        return new


def format_sequence(items: list[Any] | tuple[Any, ...]) -> str:
    """A list of passages as text, one numbered line each: ``[1] «first»`` (DSPy's format)."""
    lines = []
    for i, item in enumerate(items, 1):
        text = item if isinstance(item, str) else json.dumps(item, ensure_ascii=False, default=str)
        lines.append(f"[{i}] «{text}»")
    return "\n".join(lines)


def _checked_inputs(sig: type[Signature], values: dict[str, Any]) -> dict[str, Any]:
    try:
        return _validate(sig, "input", values)
    except ValidationError:
        converted = _convert_lossless(sig, values)
        if converted is None:
            return _lenient_inputs(sig, values)
    try:
        return _validate(sig, "input", converted)
    except ValidationError:
        return _lenient_inputs(sig, converted)


def _optional_inputs(sig: type[Signature]) -> tuple[str, ...]:
    """The inputs that may be left out without a default: their type allows ``None``."""
    return tuple(n for n, f in sig.input_fields.items() if f.required and allows_none(f.annotation))


def _convert_lossless(sig: type[Signature], values: dict[str, Any]) -> dict[str, Any] | None:
    """``values`` with what a ``str`` input can take without loss converted; None when nothing changes.

    A list or tuple becomes numbered lines (DSPy's format); a number or bool becomes its text.
    """
    changed: dict[str, Any] = {}
    for name, spec in sig.input_fields.items():
        value = values.get(name)
        if spec.annotation is not str:
            continue
        if isinstance(value, (list, tuple)):
            changed[name] = format_sequence(value)
        elif isinstance(value, (bool, int, float)):
            changed[name] = str(value)
    return {**values, **changed} if changed else None


# Pydantic error types that say "wrong type" (``int_parsing``, ``string_type``, ``dict_type``, ...).
_TYPE_ERROR_SUFFIXES = ("_type", "_parsing")
# ... and those that say "not one of the type's values" (a Literal or an enum given another value).
_TYPE_ERRORS = frozenset({"literal_error", "enum", "none_required", "is_instance_of"})
_LENGTH_ERRORS = frozenset({"too_short", "too_long"})


def _is_type_error(sig: type[Signature], err: Any) -> bool:
    """Whether a Pydantic error says the value has the wrong type (not that it breaks a rule of its field)."""
    kind = str(err.get("type", ""))
    loc = err.get("loc") or ()
    if kind.endswith(_TYPE_ERROR_SUFFIXES) or kind in _TYPE_ERRORS:
        return True
    if kind == "missing":  # an item missing inside the value (a short fixed tuple), not a missing input
        return len(loc) > 1
    if kind in _LENGTH_ERRORS and loc:  # a fixed tuple's arity, unless the field has a length rule
        spec = sig.input_fields.get(str(loc[0]))
        return spec is not None and not ({"min_length", "max_length"} & set(spec.constraints))
    return False


def _lenient_inputs(sig: type[Signature], values: dict[str, Any]) -> dict[str, Any]:
    """Inputs of the wrong type kept as they are, with a warning naming each (see ``validate_inputs``)."""
    from .. import settings as _settings

    current = _settings.current()
    model = sig._models.get("input") or sig._model("input")  # type: ignore[attr-defined]
    errors: list[Any] = []
    try:
        model.__pydantic_validator__.validate_python(values)
    except pydantic.ValidationError as exc:
        errors = list(exc.errors())
    bad = {str(err["loc"][0]) for err in errors if err.get("loc")}
    # Only a value of the wrong type is let through; a missing input or a broken rule (ge=, pattern=) raises.
    mismatch_only = all(_is_type_error(sig, err) for err in errors)
    given = all(values.get(name) is not None for name in bad)  # None is a missing value, not text to send
    if current.strict_inputs or not bad or not mismatch_only or not given:
        return _validate(sig, "input", values)  # raises, naming the first problem
    others: type[Signature] = sig
    for name in bad:  # the other inputs are still validated (and coerced) as usual
        others = others.delete(name)
    checked = _validate(others, "input", {k: v for k, v in values.items() if k not in bad})
    for name in sorted(bad):
        checked[name] = values[name]
        if current.warn_on_type_mismatch:
            expected = type_to_str(sig.input_fields[name].annotation)
            warnings.warn(
                f"{sig.__name__}: input {name!r} should be {expected}, got {truncate(values[name])} "
                f"({type(values[name]).__name__}); it is sent as text. Pass a value of type {expected}, or set "
                "em.configure(strict_inputs=True) to raise instead (warn_on_type_mismatch=False silences this).",
                UserWarning,
                stacklevel=6,
            )
    return checked


def _validate(sig: type[Signature], kind: str, values: dict[str, Any]) -> dict[str, Any]:
    model = sig._models.get(kind) or sig._model(kind)  # type: ignore[attr-defined]
    try:
        # model_validate without its wrapper (this runs twice per predictor call)
        validated: pydantic.BaseModel = model.__pydantic_validator__.validate_python(values)
        return validated.__dict__.copy()
    except pydantic.ValidationError as exc:
        err = exc.errors()[0]
        loc = err.get("loc") or ()
        field = str(loc[0]) if loc else None
        value = err.get("input") if err.get("type") != "missing" else None
        rule = err.get("msg", "invalid")
        if err.get("type") == "missing":
            rule = f"required {kind} field is missing"
        if len(loc) > 1:
            rule += f" at {'.'.join(str(p) for p in loc)}"
        extra = exc.error_count() - 1
        if extra:
            rule += f"; and {extra} more error(s)"
        raise ValidationError(sig.__name__, field, value, rule) from None


def make_signature(
    spec: str | dict[str, Any],
    instructions: str | None = None,
    *,
    custom_types: dict[str, Any] | None = None,
    name: str = "StringSignature",
) -> type[Signature]:
    """Build a signature class from ``"inputs -> outputs"`` text or a dict of fields.

    Args:
        spec: ``"question -> answer"``, ``"question: str, k: int -> answers: list[str]"``, or a
            dict mapping names to :func:`InputField`/:func:`OutputField` results, or to
            ``(type, field)`` pairs.
        instructions: the instructions; a default sentence is used when omitted.
        custom_types: extra type names allowed in the text form. Other names are looked up,
            as in DSPy, in the scope of the code that called into ElixirML (see
            :func:`~elixirml.schema.parse_type`); nothing is evaluated.
        name: the class name of the new signature.
    """
    fields: dict[str, FieldSpec] = {}
    if isinstance(spec, str):
        if spec.count("->") != 1:
            raise SignatureError(f"A signature string needs exactly one '->', got {truncate(spec, 120)}")
        left, right = spec.split("->")
        fields.update(_parse_side(left, "input", spec, custom_types))
        outputs = _parse_side(right, "output", spec, custom_types)
        clash = set(fields) & set(outputs)
        if clash:
            raise SignatureError(
                f"Field(s) {sorted(clash)} are both input and output in {spec!r}: "
                "inputs and outputs need distinct names"
            )
        fields.update(outputs)
        if not outputs:
            raise SignatureError(f"Signature {spec!r} has no output fields")
    else:
        for key, value in spec.items():
            check_field_name(str(key), "the signature's fields")
            if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], FieldSpec):
                fields[key] = value[1].copy(name=key, annotation=value[0])
            elif isinstance(value, FieldSpec):
                fields[key] = value.copy(name=key)
            else:
                raise SignatureError(f"Field {key!r}: expected InputField()/OutputField() or (type, field)")
    inputs = {k: v for k, v in fields.items() if v.kind == "input"}
    outputs_only = {k: v for k, v in fields.items() if v.kind == "output"}
    text = instructions if instructions is not None else _default_instructions(inputs, outputs_only)
    new = Signature._derive(fields, text)
    new.__name__ = new.__qualname__ = name
    for kind in ("input", "output"):  # build the validators now: a bad type fails here, not at the first call
        try:
            new._model(kind)
        except (pydantic.PydanticSchemaGenerationError, pydantic.PydanticUserError, TypeError, NameError) as exc:
            bad = ", ".join(f"{n}: {type_to_str(f.annotation)}" for n, f in fields.items() if f.kind == kind)
            raise SignatureError(f"Signature {name} cannot validate its {kind} fields ({bad}): {exc}") from None
    return new


def ensure_signature(sig: Any) -> type[Signature]:
    """Accept a signature class or its string form; return the class."""
    if isinstance(sig, SignatureMeta):
        return typing.cast(type[Signature], sig)
    if isinstance(sig, str):
        return make_signature(sig)
    raise SignatureError(f"Expected a Signature class or a 'inputs -> outputs' string, got {sig!r}")
