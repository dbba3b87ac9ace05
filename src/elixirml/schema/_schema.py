"""Runtime schemas: validation rules built from data at run time, not from a class."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pydantic
from pydantic_core import PydanticUndefined

from ..errors import SignatureError, ValidationError
from ._types import parse_type

Validation = Callable[[dict[str, Any]], Any]
Transform = Callable[[dict[str, Any]], dict[str, Any]]


class Schema:
    """A validated record type built at run time.

    Build one with :meth:`Schema.create`; call :meth:`validate` on a dict.

    Transforms run *before* field validation for an input schema (they normalise raw data)
    and *after* it for an output schema (they derive values from validated data).
    Validations run last, on the validated (and transformed) dict; a validation fails by
    returning ``False`` or a string (the rule, in words), or by raising ``ValueError``.
    """

    def __init__(
        self,
        name: str,
        model: type[pydantic.BaseModel],
        validations: list[Validation],
        transforms: list[Transform],
        role: str,
    ) -> None:
        self.name = name
        self.model = model
        self.validations = validations
        self.transforms = transforms
        self.role = role

    @classmethod
    def create(
        cls,
        fields: Mapping[str, Any],
        *,
        validations: list[Validation] | None = None,
        transforms: list[Transform] | None = None,
        role: str = "input",
        name: str = "Schema",
    ) -> Schema:
        """Create a schema.

        Args:
            fields: name -> type, type text (``"list[int]"``), or ``(type, {constraints})``
                where constraints are Pydantic's (``ge``, ``le``, ``pattern``, ``default``,
                ``description``, ...).
            validations: whole-record checks run after field validation.
            transforms: functions ``dict -> dict``; see the class docstring for when they run.
            role: ``"input"`` or ``"output"``.
            name: a name used in error messages.
        """
        if role not in ("input", "output"):
            raise SignatureError(f"Schema role must be 'input' or 'output', got {role!r}")
        definitions: dict[str, Any] = {}
        for field_name, spec in fields.items():
            if isinstance(spec, tuple):
                tp, opts = spec
                opts = dict(opts)
            else:
                tp, opts = spec, {}
            if isinstance(tp, str):
                tp = parse_type(tp)
            default = opts.pop("default", PydanticUndefined)
            try:
                definitions[field_name] = (tp, pydantic.Field(default=default, **opts))
            except TypeError as exc:
                raise SignatureError(f"Invalid options for field {field_name!r} of {name}: {exc}") from None
        model = pydantic.create_model(name, **definitions)
        return cls(name, model, list(validations or []), list(transforms or []), role)

    def _apply_transforms(self, data: dict[str, Any]) -> dict[str, Any]:
        for fn in self.transforms:
            data = fn(dict(data))
            if not isinstance(data, dict):
                raise SignatureError(f"A transform of schema {self.name} returned {type(data).__name__}, not dict")
        return data

    def validate(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Return the validated dict; raises :class:`~elixirml.errors.ValidationError`."""
        values = dict(data)
        if self.role == "input":
            values = self._apply_transforms(values)
        try:
            values = self.model.model_validate(values).__dict__.copy()
        except pydantic.ValidationError as exc:
            err = exc.errors()[0]
            loc = err.get("loc") or ()
            field = str(loc[0]) if loc else None
            raise ValidationError(self.name, field, err.get("input"), err.get("msg", "invalid")) from None
        if self.role == "output":
            values = self._apply_transforms(values)
        for check in self.validations:
            try:
                outcome = check(values)
            except ValueError as exc:
                raise ValidationError(self.name, None, values, str(exc)) from None
            if outcome is False or isinstance(outcome, str):
                rule = (
                    outcome if isinstance(outcome, str) else f"validation {getattr(check, '__name__', check)!s} failed"
                )
                raise ValidationError(self.name, None, values, rule)
        return values

    def json_schema(self) -> dict[str, Any]:
        """The JSON Schema of the fields (a dict)."""
        return self.model.model_json_schema()

    @property
    def field_names(self) -> list[str]:
        """The names of the fields, in order."""
        return list(self.model.model_fields)
