"""Loading what ``dspy.Module.save(path)`` wrote into the equivalent ElixirML program.

A DSPy state file is JSON: one entry per predictor (named as DSPy's ``named_predictors``
names them: ``"answer.predict"`` for a ``ChainOfThought`` held in ``self.answer``), each with
its ``demos``, its ``signature`` (instructions and, per field in order, a ``prefix`` and a
``description``) and its ``lm`` settings, then ``metadata``. Only data is read: demos,
instructions, field descriptions and prefixes that differ from DSPy's defaults, and the request
settings of the saved LM that pass the same checks as code (temperature, max_tokens, ...).
Nothing is imported or executed, and no LM is built from the file: the model it names is
reported with a warning, for the program's code to set.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from ..errors import LoadError
from ..lm import SETTING_NAMES, check_settings
from ..schema import Example

# Keys of a saved DSPy LM that are request settings here (others describe the client).
_LM_SETTINGS = SETTING_NAMES - {"cache", "rollout_id", "tools", "tool_choice", "extra"}


def is_dspy_state(document: Any) -> bool:
    """Whether a JSON document looks like what ``dspy.Module.save(path)`` writes."""
    if not isinstance(document, dict) or "format" in document:
        return False
    versions = (document.get("metadata") or {}).get("dependency_versions") if isinstance(document, dict) else None
    return isinstance(versions, dict) and "dspy" in versions


def _our_name(dspy_name: str, ours: Mapping[str, Any]) -> str | None:
    """The predictor here that a DSPy predictor name stands for (a ChainOfThought's ``.predict`` is the module)."""
    if dspy_name in ours:
        return dspy_name
    if dspy_name == "predict" and "self" in ours:
        return "self"
    if dspy_name.endswith(".predict") and dspy_name[: -len(".predict")] in ours:
        return dspy_name[: -len(".predict")]
    return None


def load_dspy_state(program: Any, document: dict[str, Any], source: str) -> None:
    """Load a DSPy state document into ``program`` (a program of the same structure).

    Raises:
        LoadError: a predictor of the file has no counterpart here, a signature has another
            number of fields, or a value has the wrong type. Nothing is changed then.
    """
    ours = dict(program.named_predictors())
    entries = {k: v for k, v in document.items() if k != "metadata"}
    if "signature" in entries and "demos" in entries:  # a single predictor saved on its own
        entries = {"self": entries}
    plan: list[tuple[Any, dict[str, Any], str]] = []
    for dspy_name, state in entries.items():
        name = _our_name(dspy_name, ours)
        if name is None:
            raise LoadError(
                f"{source}: DSPy predictor {dspy_name!r} has no counterpart in {type(program).__name__} "
                f"(its predictors: {sorted(ours)}); load it into a program of the same structure"
            )
        if not isinstance(state, dict):
            raise LoadError(f"{source}: the state of DSPy predictor {dspy_name!r} is not an object")
        plan.append((ours[name], state, dspy_name))
    updates = [
        _predictor_update(predictor, state, f"{source}: DSPy predictor {name!r}") for predictor, state, name in plan
    ]
    for (predictor, _, _), (signature, demos, config) in zip(plan, updates):
        predictor.signature = signature
        predictor.demos = demos
        predictor.config = {**predictor.config, **config}


def _predictor_update(predictor: Any, state: dict[str, Any], where: str) -> tuple[Any, list[Example], dict[str, Any]]:
    signature = predictor.signature
    saved = state.get("signature") or {}
    if not isinstance(saved, dict):
        raise LoadError(f"{where}: 'signature' is not an object")
    instructions = saved.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise LoadError(f"{where}: instructions are not text")
        signature = signature.with_instructions(instructions)
    fields = saved.get("fields") or []
    names = list(signature.fields)
    if fields and len(fields) != len(names):
        raise LoadError(
            f"{where}: the saved signature has {len(fields)} fields, this predictor's has {len(names)} ({names})"
        )
    for name, item in zip(names, fields):
        if not isinstance(item, dict):
            raise LoadError(f"{where}: field {name!r} is not an object")
        changes: dict[str, Any] = {}
        description = item.get("description")
        if isinstance(description, str) and description != f"${{{name}}}":  # DSPy's placeholder default
            changes["desc"] = description
        prefix = item.get("prefix")
        if isinstance(prefix, str) and prefix.strip().rstrip(":").lower() != name.replace("_", " ").lower():
            changes["prefix"] = prefix
        if changes:
            signature = signature.with_updated_fields(name, **changes)
    demos = []
    for raw in state.get("demos") or []:
        if not isinstance(raw, dict):
            raise LoadError(f"{where}: a demo is not an object")
        values = {k: v for k, v in raw.items() if k != "augmented" and isinstance(k, str)}
        inputs = [f for f in signature.input_fields if f in values]
        demos.append(Example(values).with_inputs(*inputs))
    config: dict[str, Any] = {}
    lm = state.get("lm")
    if isinstance(lm, dict):
        settings = {k: v for k, v in lm.items() if k in _LM_SETTINGS and v is not None}
        config = dict(check_settings(settings, where=f"{where} LM settings", error=LoadError))
        if lm.get("model"):
            warnings.warn(
                f"{where} ran on {lm['model']!r}; ElixirML builds no LM from a file: its request settings "
                f"{sorted(config)} were loaded, set the LM in code (predictor.lm = em.LM(...))",
                UserWarning,
                stacklevel=4,
            )
    return signature, demos, config
