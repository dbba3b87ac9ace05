"""What a served program takes and returns: request models and JSON Schemas from its signature.

The input model is strict (unknown fields are refused) so that a request is checked before any
LM is called, with every bad field listed. Where the schemas come from, in order:

- a :class:`~elixirml.Program` with an ``input_schema`` / ``output_schema`` (a Signature or an
  ``em.Schema``): those;
- a ``Predict`` (``ChainOfThought``, ...): its signature's input and output fields;
- any other module: the parameters of its ``forward`` / ``aforward`` (their annotations, or any
  JSON value) for the inputs, and the output fields of its last predictor for the outputs.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable, Mapping
from typing import Any

import pydantic
from pydantic_core import PydanticUndefined

from ..program import Module, Predict, Program
from ..schema import Schema, Signature, SignatureMeta


@dataclasses.dataclass(frozen=True)
class Interface:
    """The request model and schemas of one loaded program version.

    Attributes:
        input_model: strict Pydantic model of the request body.
        output_model: Pydantic model of the outputs (for the OpenAPI document), or None when unknown.
        input_names: input field names, in order.
        required: the required input names.
        output_names: output field names, in order (empty when unknown).
    """

    input_model: type[pydantic.BaseModel]
    output_model: type[pydantic.BaseModel] | None
    input_names: tuple[str, ...]
    required: tuple[str, ...]
    output_names: tuple[str, ...]
    check: Callable[[dict[str, Any]], Any] | None = None

    def input_schema(self) -> dict[str, Any]:
        """JSON Schema of the request body."""
        return self.input_model.model_json_schema()

    def output_schema(self) -> dict[str, Any]:
        """JSON Schema of the outputs (any object when the program does not declare them)."""
        if self.output_model is None:
            return {"type": "object", "title": "Outputs"}
        return self.output_model.model_json_schema()

    def validate(self, body: Any) -> dict[str, Any]:
        """The program's keyword arguments from a request body (only the fields given).

        Raises:
            pydantic.ValidationError: listing every bad, missing or unknown field.
            elixirml.errors.ValidationError: a whole-record rule of the program's ``em.Schema`` failed.
        """
        model = self.input_model.model_validate(body)
        inputs = {name: getattr(model, name) for name in model.model_fields_set}
        if self.check is not None:
            self.check(inputs)  # the whole-record rules of an em.Schema
        return inputs


def _title(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.replace("-", "_").split("_") if part)


_STRICT = pydantic.ConfigDict(extra="forbid")


def _model_from_fields(title: str, fields: Mapping[str, Any], *, strict: bool) -> type[pydantic.BaseModel]:
    definitions: dict[str, Any] = {}
    for name, spec in fields.items():
        definitions[name] = (
            spec.annotation,
            pydantic.Field(default=spec.default, description=spec.desc, **spec.constraints),
        )
    config = _STRICT if strict else None
    return pydantic.create_model(title, __config__=config, **definitions)


def _strict_copy(title: str, model: type[pydantic.BaseModel]) -> type[pydantic.BaseModel]:
    """``model`` with unknown fields refused."""
    namespace = {"model_config": {**model.model_config, "extra": "forbid"}, "__module__": __name__}
    return typing.cast(type[pydantic.BaseModel], type(title, (model,), namespace))


def _from_schema(title: str, schema: Any, kind: str, *, strict: bool) -> type[pydantic.BaseModel]:
    if isinstance(schema, SignatureMeta):
        signature = typing.cast(type[Signature], schema)
        fields = signature.input_fields if kind == "input" else signature.output_fields
        return _model_from_fields(title, fields, strict=strict)
    assert isinstance(schema, Schema)
    return _strict_copy(title, schema.model) if strict else schema.model


def _forward_model(title: str, program: Module) -> type[pydantic.BaseModel]:
    """A model of the parameters of the program's own ``forward`` or ``aforward``."""
    cls = type(program)
    method = cls.aforward if cls.aforward is not Module.aforward else cls.forward
    try:
        hints = typing.get_type_hints(method)
    except Exception:  # annotations naming what the module does not import: take any JSON value
        hints = {}
    definitions: dict[str, Any] = {}
    open_ended = False
    for parameter in list(inspect.signature(method).parameters.values())[1:]:
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            open_ended = True
            continue
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            continue
        annotation = hints.get(parameter.name, Any)
        default = PydanticUndefined if parameter.default is inspect.Parameter.empty else parameter.default
        definitions[parameter.name] = (annotation, pydantic.Field(default=default))
    config = None if open_ended else _STRICT
    return pydantic.create_model(title, __config__=config, **definitions)


def interface_of(name: str, program: Module) -> Interface:
    """The request model and schemas of ``program``, served as ``name``."""
    title = _title(name) or "Program"
    input_schema, output_schema = None, None
    if isinstance(program, Program):
        input_schema, output_schema = program._schemas()
    if input_schema is not None:
        input_model = _from_schema(f"{title}Inputs", input_schema, "input", strict=True)
    elif isinstance(program, Predict):
        input_model = _model_from_fields(f"{title}Inputs", program.signature.input_fields, strict=True)
    else:
        input_model = _forward_model(f"{title}Inputs", program)

    output_model: type[pydantic.BaseModel] | None = None
    if output_schema is not None:
        output_model = _from_schema(f"{title}Outputs", output_schema, "output", strict=False)
    else:
        predictors = program.predictors()
        if predictors:
            last = program if isinstance(program, Predict) else predictors[-1]
            output_model = _model_from_fields(f"{title}Outputs", last.signature.output_fields, strict=False)

    fields = input_model.model_fields
    return Interface(
        input_model=input_model,
        output_model=output_model,
        input_names=tuple(fields),
        required=tuple(n for n, f in fields.items() if f.is_required()),
        output_names=tuple(output_model.model_fields) if output_model is not None else (),
        check=input_schema.validate if isinstance(input_schema, Schema) and input_schema.validations else None,
    )
