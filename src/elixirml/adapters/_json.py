"""JSONAdapter: the LM answers with one JSON object holding the output fields."""

from __future__ import annotations

import json
import re
from typing import Any

from ..errors import AdapterParseError, TruncatedResponseError, truncate
from ..lm import LM
from ..schema import Signature, literal_values
from ._base import (
    MAX_JSON_DEPTH,
    Adapter,
    _normalise_literal,
    describe_fields,
    json_cut_off,
    json_depth_exceeds,
    parse_json_like,
    strip_fences,
    to_jsonable,
    type_hint,
)

_OBJECT_RE = re.compile(r"\{.*\}", re.DOTALL)


class JSONAdapter(Adapter):
    """Asks for a JSON object with the output fields.

    When the LM says it supports JSON-schema output (``lm.supports_json_schema``), the output
    schema is sent as ``response_format`` so the provider constrains decoding to it. Answers
    that are *almost* JSON (fences, single quotes, trailing commas) are repaired with the
    ``json-repair`` library before validation. An object cut off before its end is not
    repaired: it raises :class:`~elixirml.errors.TruncatedResponseError`, which the LM's retry
    policy retries and which is never cached.

    Args:
        fallback: as for :class:`~elixirml.adapters.Adapter`.
        max_depth: the deepest nesting of objects and arrays accepted in an answer; deeper
            answers raise :class:`~elixirml.errors.AdapterParseError` instead of exhausting
            the parser's recursion.
    """

    name = "JSONAdapter"

    def __init__(
        self,
        fallback: Adapter | None = None,
        *,
        max_depth: int = MAX_JSON_DEPTH,
        use_native_function_calling: bool = False,
    ) -> None:
        super().__init__(fallback, use_native_function_calling=use_native_function_calling)
        self.max_depth = max_depth

    def system_message(self, signature: type[Signature]) -> str:
        """The system prompt: fields, the JSON answer shape, and the instructions."""
        return signature.memo((type(self), "system"), self._build_system, signature)

    def _build_system(self, signature: type[Signature]) -> str:
        keys = []
        for name, spec in signature.output_fields.items():
            hint = type_hint(spec)
            keys.append(f'"{name}"' + (f" ({hint})" if hint else ""))
        return (
            f"Your input fields are:\n{describe_fields(signature.input_fields)}\n"
            f"Your output fields are:\n{describe_fields(signature.output_fields)}\n"
            "Inputs are given between [[ ## field ## ]] markers. Answer with a single JSON object "
            f"whose keys are: {', '.join(keys)}. Write nothing outside the JSON object.\n\n"
            f"Your objective is: {signature.instructions}"
        )

    def format_outputs(self, signature: type[Signature], outputs: dict[str, Any]) -> str:
        """Output values as the JSON object the LM is asked for."""
        return json.dumps(to_jsonable(outputs), ensure_ascii=False)

    def request_settings(self, signature: type[Signature], lm: LM) -> dict[str, Any]:
        if lm.supports_json_schema:
            return {"response_format": signature.memo("response_format", _response_format, signature)}
        return {}

    def scoring_parts(self, signature: type[Signature], field: str, values: Any) -> tuple[str, list[str]]:
        """Prefix ``{"field": `` and each value as JSON, closing the object."""
        return "{" + json.dumps(field) + ": ", [json.dumps(to_jsonable(v)) + "}" for v in values]

    def stream_parser(self, signature: type[Signature]) -> Any:
        """Streams the JSON object's top-level values."""
        from ._stream import JSONStreamParser

        return JSONStreamParser(list(signature.output_fields))

    def parse(self, signature: type[Signature], completion: str) -> dict[str, Any]:
        text = strip_fences(completion.strip())
        if json_depth_exceeds(text, self.max_depth):
            raise AdapterParseError(
                self.name, signature.__name__, completion, f"the JSON is nested deeper than {self.max_depth} levels"
            )
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, ValueError):
            start = text.find("{")
            if start >= 0 and json_cut_off(text[start:]):
                raise TruncatedResponseError(
                    f"{self.name}: the answer for {signature.__name__} ends inside an unfinished JSON object "
                    f"(cut off?): {truncate(completion, 200)}",
                    completion=completion,
                ) from None
            match = _OBJECT_RE.search(text)
            data = parse_json_like(match.group(0) if match else text)
        if not isinstance(data, dict):
            if len(signature.output_fields) == 1 and data not in ("", None):
                data = {next(iter(signature.output_fields)): data}
            else:
                raise AdapterParseError(self.name, signature.__name__, completion, "the answer is not a JSON object")
        missing = [n for n, spec in signature.output_fields.items() if n not in data and spec.required]
        if missing:
            raise AdapterParseError(self.name, signature.__name__, completion, f"missing output field(s) {missing}")
        values: dict[str, Any] = {}
        for name, spec in signature.output_fields.items():
            if name not in data:
                continue
            value = data[name]
            allowed = literal_values(spec.annotation)
            if allowed is not None and spec.annotation is not bool:
                value = _normalise_literal(value, allowed)
            values[name] = value
        return signature.validate_outputs(values)


def _response_format(signature: type[Signature]) -> dict[str, Any]:
    return {
        "type": "json_schema",
        "json_schema": {"name": signature.__name__, "schema": signature.output_schema()},
    }
