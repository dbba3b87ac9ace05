"""``dspy.signatures.signature``: DSPy's import path of ``Signature``, and ``infer_prefix``."""

from __future__ import annotations

from ...schema import Signature, ensure_signature, infer_prefix, make_signature

__all__ = ["Signature", "ensure_signature", "infer_prefix", "make_signature"]
