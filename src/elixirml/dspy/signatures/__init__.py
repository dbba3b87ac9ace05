"""``dspy.signatures``: signatures and fields."""

from __future__ import annotations

from ...schema import InputField, OutputField, Signature, ensure_signature, make_signature
from . import signature
from .signature import infer_prefix

__all__ = ["InputField", "OutputField", "Signature", "ensure_signature", "infer_prefix", "make_signature", "signature"]
