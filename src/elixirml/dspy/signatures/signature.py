"""``dspy.signatures.signature``: DSPy's import path of ``Signature``, and ``infer_prefix``."""

from __future__ import annotations

import re

from ...schema import Signature, ensure_signature, make_signature

__all__ = ["Signature", "ensure_signature", "infer_prefix", "make_signature"]


def infer_prefix(attribute_name: str) -> str:
    """DSPy's default prefix of a field.

    ``"someAttributeName"`` and ``"some_attribute_name"`` give ``"Some Attribute Name"``.
    """
    text = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", attribute_name)
    text = re.sub("([a-z0-9])([A-Z])", r"\1_\2", text)
    text = re.sub(r"([a-zA-Z])(\d)", r"\1_\2", text)
    text = re.sub(r"(\d)([a-zA-Z])", r"\1_\2", text)
    return " ".join(word if word.isupper() else word.capitalize() for word in text.split("_"))
