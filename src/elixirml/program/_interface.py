"""What a program takes and returns: request models and JSON Schemas, for the server and the console.

The input model is strict (unknown fields are refused) so that a request is checked before any
LM is called, with every bad field listed. Where the schemas come from, in order:

- a :class:`~elixirml.Program` with an ``input_schema`` / ``output_schema`` (a Signature or an
  ``em.Schema``): those;
- a ``Predict`` (``ChainOfThought``, ...): its signature's input and output fields;
- any other module: the parameters of its ``forward`` / ``aforward`` (their annotations, or any
  JSON value) for the inputs; a module whose ``forward`` takes only ``**kwargs`` and wraps one
  signature (``ReAct``, ``BestOfN`` over a predictor) takes that signature's inputs;
- the outputs of any other module are read from the source of its ``forward``, never by running
  it: what it returns (``em.Prediction(answer=..., confidence=...)``, a dict literal, a
  sub-module's prediction, the result of one of its own methods, followed through local names)
  names the fields, and a field copied from a predictor's output (``answer=pred.answer``) keeps
  that field's type. A return annotation that is a Signature or a Pydantic model is used as
  declared. Where the source does not say (``**values``, a value built elsewhere), the outputs are
  unknown: any object, never a guess.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
import typing
from collections.abc import Callable, Mapping
from typing import Any

import pydantic
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from ..schema import Schema, Signature, SignatureMeta
from ._module import Module
from ._predict import Predict
from ._program import Program

#: A field: its annotation and its pydantic field (default, description, constraints).
Spec = tuple[Any, FieldInfo]
Fields = dict[str, Spec]


@dataclasses.dataclass(frozen=True)
class Interface:
    """The request model and schemas of a program.

    Attributes:
        input_model: strict Pydantic model of the request body.
        output_model: Pydantic model of the outputs (for the OpenAPI document), or None when unknown.
        input_names: input field names, in order.
        required: the required input names.
        output_names: output field names, in order (empty when unknown).
        check: the whole-record rules of the program's ``em.Schema``, where it has them.
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
        """JSON Schema of the outputs (any object when the program does not say what it returns)."""
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


def _signature_fields(fields: Mapping[str, Any]) -> Fields:
    return {
        name: (spec.annotation, pydantic.Field(default=spec.default, description=spec.desc, **spec.constraints))
        for name, spec in fields.items()
    }


def _model(title: str, fields: Fields, *, strict: bool) -> type[pydantic.BaseModel]:
    definitions: dict[str, Any] = {name: (annotation, info) for name, (annotation, info) in fields.items()}
    return pydantic.create_model(title, __config__=_STRICT if strict else None, **definitions)


def _strict_copy(title: str, model: type[pydantic.BaseModel]) -> type[pydantic.BaseModel]:
    """``model`` with unknown fields refused."""
    namespace = {"model_config": {**model.model_config, "extra": "forbid"}, "__module__": __name__}
    return typing.cast(type[pydantic.BaseModel], type(title, (model,), namespace))


def _schema_fields(schema: Any, kind: str) -> Fields | None:
    """The fields a Signature (its inputs or outputs), an ``em.Schema`` or a Pydantic model declares."""
    if isinstance(schema, SignatureMeta):
        signature = typing.cast(type[Signature], schema)
        return _signature_fields(signature.input_fields if kind == "input" else signature.output_fields)
    if isinstance(schema, Schema):
        schema = schema.model
    if isinstance(schema, type) and issubclass(schema, pydantic.BaseModel):
        return {name: (info.annotation, info) for name, info in schema.model_fields.items()}
    return None


def _body(module: Module) -> Callable[..., Any]:
    cls = type(module)
    return cls.aforward if cls.aforward is not Module.aforward else cls.forward


def _wrapped_signature(module: Module) -> Any:
    """The one signature a ``**kwargs`` module stands for: its own (ReAct), or its one sub-module's (BestOfN)."""
    signature = vars(module).get("signature")
    if isinstance(signature, SignatureMeta):
        return signature
    children = [m for _, m in module._direct_children()]
    if len(children) == 1 and isinstance(getattr(children[0], "signature", None), SignatureMeta):
        return getattr(children[0], "signature", None)
    return None


def _forward_inputs(title: str, module: Module) -> type[pydantic.BaseModel]:
    """A model of the parameters of the module's own ``forward`` or ``aforward``."""
    method = _body(module)
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
    if open_ended and not definitions:
        signature = _wrapped_signature(module)
        if signature is not None:
            return _model(title, _signature_fields(signature.input_fields), strict=True)
    return pydantic.create_model(title, __config__=None if open_ended else _STRICT, **definitions)


# ---------------------------------------------------------------------- outputs, from the source
_MAX_DEPTH = 6  # sub-modules and helper methods followed from forward
_PREDICTION_CALLS = frozenset({"Prediction", "Example", "dict"})
_CALL_METHODS = frozenset({"acall", "aforward", "forward", "__call__"})
_STR_METHODS = frozenset(
    {"strip", "lstrip", "rstrip", "lower", "upper", "title", "capitalize", "casefold", "replace", "removeprefix"}
    | {"removesuffix", "format"}
)
_CASTS: dict[str, Any] = {"str": str, "int": int, "float": float, "bool": bool}


def _any() -> Spec:
    return (Any, FieldInfo())


def _function_ast(function: Any) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    try:
        source = textwrap.dedent(inspect.getsource(function))
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError):  # no source (a REPL, a built-in): the outputs stay unknown
        return None
    node = tree.body[0] if tree.body else None
    return node if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else None


_NESTED = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)


class _Body:
    """A function's return values and its assignments to local names (not those of nested functions)."""

    def __init__(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.returns: list[ast.expr | None] = []
        self.assigned: dict[str, list[ast.expr]] = {}
        stack: list[ast.AST] = list(node.body)
        while stack:
            item = stack.pop(0)
            if isinstance(item, _NESTED):  # a nested function's returns are its own
                continue
            if isinstance(item, ast.Return):
                self.returns.append(item.value)
            elif isinstance(item, ast.Assign):
                for target in item.targets:
                    if isinstance(target, ast.Name):
                        self.assigned.setdefault(target.id, []).append(item.value)
            elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name) and item.value is not None:
                self.assigned.setdefault(item.target.id, []).append(item.value)
            stack.extend(ast.iter_child_nodes(item))


class _Reader:
    """Follows what one function of a module returns."""

    def __init__(
        self,
        module: Module,
        node: ast.FunctionDef | ast.AsyncFunctionDef,
        bound: dict[str, tuple[Fields | None, Spec]],
        depth: int,
    ) -> None:
        self.module = module
        self.depth = depth
        # parameter name -> (the fields of the prediction the caller passed, or None; the value's spec)
        self.bound: dict[str, tuple[Fields | None, Spec]] = bound
        self.body = _Body(node)
        self.resolving: set[str] = set()

    def returned(self) -> Fields | None:
        values = [v for v in self.body.returns if v is not None]
        if not values:
            return None
        return _agree([self.fields(v) for v in values])

    # an expression -> the fields of the prediction it stands for (None: unknown)
    def fields(self, node: ast.expr) -> Fields | None:
        if isinstance(node, ast.Await):
            return self.fields(node.value)
        if isinstance(node, ast.IfExp):
            body, orelse = self.fields(node.body), self.fields(node.orelse)
            return body if body is not None and orelse is not None and list(body) == list(orelse) else None
        if isinstance(node, ast.Dict):
            if not all(isinstance(k, ast.Constant) and isinstance(k.value, str) for k in node.keys):
                return None  # **spread or computed keys
            return {str(typing.cast(ast.Constant, k).value): self.spec(v) for k, v in zip(node.keys, node.values)}
        if isinstance(node, ast.Name):
            return self._name(node.id)
        if isinstance(node, ast.Call):
            return self._call(node)
        return None

    def _name(self, name: str) -> Fields | None:
        if name in self.bound:
            return self.bound[name][0]
        values = self.body.assigned.get(name)
        if not values or name in self.resolving:
            return None
        self.resolving.add(name)
        try:
            found = [self.fields(v) for v in values]
        finally:
            self.resolving.discard(name)
        return _agree(found)

    def _call(self, node: ast.Call) -> Fields | None:
        func = node.func
        # em.Prediction(...), Prediction(...), dict(...); not some_value.dict()
        callee = func.id if isinstance(func, ast.Name) else None
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.attr != "dict":
            callee = func.attr
        if callee in _PREDICTION_CALLS:
            if any(k.arg is None for k in node.keywords) or len(node.args) > 1:
                return None
            fields: Fields = {}
            if node.args:
                given = self.fields(node.args[0])
                if given is None:
                    return None
                fields.update(given)
            fields.update({str(k.arg): self.spec(k.value) for k in node.keywords})
            return fields
        # self.x(...), self.x.acall(...), self.method(...)
        if isinstance(func, ast.Attribute) and func.attr in _CALL_METHODS and _is_self_attribute(func.value):
            func = func.value
        if not (isinstance(func, ast.Attribute) and _is_self_attribute(func)):
            return None
        if self.depth >= _MAX_DEPTH:
            return None
        value = vars(self.module).get(func.attr)
        if isinstance(value, Module):
            return outputs_of(value, depth=self.depth + 1)
        method = inspect.getattr_static(type(self.module), func.attr, None)
        if not inspect.isfunction(method):
            return None
        target = _function_ast(method)
        if target is None:
            return None
        return _Reader(self.module, target, self._arguments(target, node), self.depth + 1).returned()

    def _arguments(
        self, target: ast.FunctionDef | ast.AsyncFunctionDef, call: ast.Call
    ) -> dict[str, tuple[Fields | None, Spec]]:
        """The method's parameters bound to what the call passes (a prediction passed on, a value)."""
        names = [a.arg for a in [*target.args.posonlyargs, *target.args.args]][1:]  # without self
        bound: dict[str, tuple[Fields | None, Spec]] = {
            name: (None, _any()) for name in [*names, *(a.arg for a in target.args.kwonlyargs)]
        }
        for name, arg in zip(names, call.args):
            if not isinstance(arg, ast.Starred):
                bound[name] = (self.fields(arg), self.spec(arg))
        for keyword in call.keywords:
            if keyword.arg is not None:
                bound[keyword.arg] = (self.fields(keyword.value), self.spec(keyword.value))
        return bound

    # an expression -> the spec of the one value it stands for
    def spec(self, node: ast.expr) -> Spec:
        if isinstance(node, ast.Attribute):  # pred.answer: the predictor's own field
            owner = self.fields(node.value)
            if owner is not None and node.attr in owner:
                annotation, info = owner[node.attr]
                return (annotation, pydantic.Field(description=info.description, **_constraints(info)))
            return _any()
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in _CASTS:
                return (_CASTS[func.id], pydantic.Field())
            if isinstance(func, ast.Attribute) and func.attr in _STR_METHODS:
                annotation, info = self.spec(func.value)
                if annotation is str:
                    return (str, pydantic.Field(description=info.description))
            return _any()
        if isinstance(node, ast.JoinedStr):
            return (str, pydantic.Field())
        if isinstance(node, ast.Constant) and isinstance(node.value, (str, int, float, bool)):
            return (type(node.value), pydantic.Field())
        if isinstance(node, ast.Name):
            if node.id in self.bound:
                return self.bound[node.id][1]
            values = self.body.assigned.get(node.id, [])
            if len(values) == 1 and node.id not in self.resolving:
                self.resolving.add(node.id)
                try:
                    return self.spec(values[0])
                finally:
                    self.resolving.discard(node.id)
        return _any()


def _agree(found: list[Fields | None]) -> Fields | None:
    """The fields all of ``found`` have (the first's specs); None where one is unknown or they differ."""
    if not found or any(f is None for f in found):
        return None
    first = typing.cast(Fields, found[0])
    if any(list(typing.cast(Fields, f)) != list(first) for f in found[1:]):
        return None  # values of different shapes: say nothing rather than one of them
    return first


def _is_self_attribute(node: ast.expr) -> bool:
    return isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self"


def _constraints(info: FieldInfo) -> dict[str, Any]:
    """The numeric and length bounds of a field, as ``pydantic.Field`` keywords."""
    out: dict[str, Any] = {}
    for item in info.metadata:
        for key in ("ge", "gt", "le", "lt", "min_length", "max_length", "pattern", "multiple_of"):
            value = getattr(item, key, None)
            if value is not None:
                out[key] = value
    return out


def _annotated_outputs(method: Any) -> Fields | None:
    """The fields a ``forward``'s return annotation declares (a Signature's outputs, a Pydantic model's fields)."""
    try:
        returned = typing.get_type_hints(method).get("return")
    except Exception:  # annotations naming what the module does not import
        return None
    if isinstance(returned, SignatureMeta) or (isinstance(returned, type) and issubclass(returned, pydantic.BaseModel)):
        return _schema_fields(returned, "output")
    return None  # em.Prediction, Any, no annotation: what it holds is read from the source


def outputs_of(module: Module, *, depth: int = 0) -> Fields | None:
    """The output fields of ``module`` (None: it does not say), without running it.

    Args:
        module: the module.
        depth: how many modules and methods were followed to get here (the reading stops at 6).
    """
    if isinstance(module, Program):
        declared = module._schemas()[1]
        if declared is not None:
            return _schema_fields(declared, "output")
    if isinstance(module, Predict):
        return _signature_fields(module.signature.output_fields)
    body = _body(module)
    annotated = _annotated_outputs(body)
    if annotated is not None:
        return annotated
    if type(module).__module__.startswith("elixirml."):  # the library's own modules: their one signature
        signature = _wrapped_signature(module)
        return _signature_fields(signature.output_fields) if signature is not None else None
    node = _function_ast(body)
    if node is None:
        return None
    try:
        hints = typing.get_type_hints(body)
    except Exception:  # annotations naming what the module does not import
        hints = {}
    parameters = [a.arg for a in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]][1:]
    bound: dict[str, tuple[Fields | None, Spec]] = {
        name: (None, (hints[name], FieldInfo()) if hints.get(name) in _CASTS.values() else _any())
        for name in parameters
    }
    return _Reader(module, node, bound, depth).returned()


def interface_of(name: str, program: Module) -> Interface:
    """The request model and schemas of ``program``, served (or shown in the console) as ``name``."""
    title = _title(name) or "Program"
    input_schema = program._schemas()[0] if isinstance(program, Program) else None
    declared = _schema_fields(input_schema, "input") if input_schema is not None else None
    if isinstance(input_schema, Schema):
        input_model = _strict_copy(f"{title}Inputs", input_schema.model)
    elif declared is not None:
        input_model = _model(f"{title}Inputs", declared, strict=True)
    elif isinstance(program, Predict):
        input_model = _model(f"{title}Inputs", _signature_fields(program.signature.input_fields), strict=True)
    else:
        input_model = _forward_inputs(f"{title}Inputs", program)

    outputs = outputs_of(program)
    output_model: type[pydantic.BaseModel] | None = None
    if outputs is not None:
        output_schema = program._schemas()[1] if isinstance(program, Program) else None
        if isinstance(output_schema, Schema):
            output_model = output_schema.model
        else:
            try:
                output_model = _model(f"{title}Outputs", outputs, strict=False)
            except (
                pydantic.PydanticUserError,
                pydantic.PydanticSchemaGenerationError,
                NameError,
                TypeError,
                ValueError,
            ):
                # names or types no model can hold (`_private`, `model_dump`): described as any object
                output_model = None

    fields = input_model.model_fields
    return Interface(
        input_model=input_model,
        output_model=output_model,
        input_names=tuple(fields),
        required=tuple(n for n, f in fields.items() if f.is_required()),
        output_names=tuple(output_model.model_fields) if output_model is not None else (),
        check=input_schema.validate if isinstance(input_schema, Schema) and input_schema.validations else None,
    )
