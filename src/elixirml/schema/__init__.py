"""Schema layer: signatures, runtime schemas, and the core values Example and Prediction, rich field types."""

from ._format import format_value, to_jsonable
from ._media import Code, History, Image, ToolCall, ToolCalls, images_in, split_image_parts
from ._schema import Schema
from ._signature import FieldSpec, InputField, OutputField, Signature, SignatureMeta, ensure_signature, make_signature
from ._types import field_marker, literal_values, parse_type, type_to_str
from ._values import Completions, Example, Prediction

__all__ = [
    "Code",
    "History",
    "Image",
    "ToolCall",
    "ToolCalls",
    "Completions",
    "Example",
    "FieldSpec",
    "InputField",
    "OutputField",
    "Prediction",
    "Schema",
    "Signature",
    "SignatureMeta",
    "ensure_signature",
    "literal_values",
    "make_signature",
    "parse_type",
    "type_to_str",
    "format_value",
    "to_jsonable",
    "images_in",
    "split_image_parts",
    "field_marker",
]
