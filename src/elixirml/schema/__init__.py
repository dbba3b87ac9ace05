"""Schema layer: signatures, runtime schemas, and the core values Example and Prediction, rich field types."""

from typing import TYPE_CHECKING

from .._lazy import lazy_getattr
from ._format import format_value, to_jsonable
from ._schema import Schema
from ._signature import (
    FieldSpec,
    InputField,
    OutputField,
    Signature,
    SignatureMeta,
    ensure_signature,
    infer_prefix,
    make_signature,
)
from ._types import allows_none, field_marker, literal_values, parse_type, type_to_str, value_has_type
from ._values import Completions, Example, Prediction

if TYPE_CHECKING:
    from ._media import Code, History, Image, ToolCall, ToolCalls, images_in, split_image_parts

# The rich types are Pydantic models: they load on first use, so that `import elixirml` builds no
# model and loads no more of Pydantic than its core (signatures build their models on first use too).
__getattr__ = lazy_getattr(
    __name__,
    dict.fromkeys(("Code", "History", "Image", "ToolCall", "ToolCalls", "images_in", "split_image_parts"), "._media"),
    globals(),
)

__all__ = [
    "Code",
    "Completions",
    "Example",
    "FieldSpec",
    "History",
    "Image",
    "InputField",
    "OutputField",
    "Prediction",
    "Schema",
    "Signature",
    "SignatureMeta",
    "ToolCall",
    "ToolCalls",
    "allows_none",
    "ensure_signature",
    "field_marker",
    "format_value",
    "images_in",
    "infer_prefix",
    "literal_values",
    "make_signature",
    "parse_type",
    "split_image_parts",
    "to_jsonable",
    "type_to_str",
    "value_has_type",
]
