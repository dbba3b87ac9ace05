"""Probe calls: which variables change what a program sends, checked before any trial is spent.

A probe runs the program on one example's inputs with no LM call: every predictor records
the request it would send (messages, merged settings, LM, decoding) and answers with
placeholder values of its output types. Two probes that differ only in one variable's value
and record the same requests and the same output show a variable with no effect: searching
it would score the same program again and report a search that never happened.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ConfigurationError, ElixirMLError, UserError
from ..program import Module, configuration_to_json
from ..runtime import run_scope
from ..schema import Example
from ..variables import VariableSpace

logger = logging.getLogger("elixirml")


class _Recorder:
    """Collects the requests of one probe call."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    def record(self, request: dict[str, Any]) -> None:
        self.requests.append(request)


@dataclasses.dataclass
class ProbeReport:
    """What probing found.

    Attributes:
        inert: variables whose every tried value sends the same requests as the current one.
        unusable: per choice variable, the options that cannot run here, with the reason
            (for example ``decoding="score"`` with an LM that cannot score).
        undecided: variables the probe could not judge (the program failed on placeholder
            outputs); they are searched.
    """

    inert: list[str] = dataclasses.field(default_factory=list)
    unusable: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)
    undecided: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class _Probe:
    """One probe call: what it sent and returned, and whether the program failed on placeholders."""

    fingerprint: str
    failed: bool


def _probe(program: Module, inputs: Mapping[str, Any]) -> _Probe:
    """Run one probe call. A setup error (``ConfigurationError`` and the other user errors) propagates."""
    recorder = _Recorder()
    outcome: Any
    failed = False
    with run_scope(probe=recorder, trace=None):
        try:
            result = program(**dict(inputs))
            outcome = result.to_dict() if hasattr(result, "to_dict") else result
        except UserError:
            raise
        except ElixirMLError as exc:  # an assertion that placeholder outputs fail, for instance
            outcome = {"error": type(exc).__name__}
        except Exception as exc:  # the user's forward failed on placeholder outputs
            outcome = {"failed": f"{type(exc).__name__}: {exc}"}
            failed = True
    text = json.dumps({"requests": recorder.requests, "output": outcome}, sort_keys=True, default=repr)
    return _Probe(text, failed)


def _trial_values(space: VariableSpace, name: str, current: Any) -> list[Any]:
    variable = space[name]
    kind = variable.kind
    if kind in ("choice", "module", "lm"):
        return [o for o in variable.options if o != current]
    if kind == "bool":
        return [not current]
    if kind in ("float", "int"):
        assert variable.low is not None and variable.high is not None
        ends: list[Any] = [variable.low, variable.high]
        if kind == "int":
            ends = [int(v) for v in ends]
        return [v for v in ends if v != current][:1] or ends[:1]
    if kind == "text":
        return [c for c in variable.candidates if c != current][:1]
    return []


def probe_variables(program: Module, names: Sequence[str], example: Example) -> ProbeReport:
    """Check which of ``names`` change the program's requests (see the module docstring).

    Raises:
        UserError: the program as it is cannot run (no LM, a bad signature, ...): no trial
            could succeed, so the optimizer stops with that error.
    """
    inputs = dict((example.inputs() if example.input_keys is not None else example).items())
    space = program.variable_space()
    current = space.current()
    report = ProbeReport()
    probes: dict[str, _Probe] = {}

    def probe(config: Mapping[str, Any]) -> _Probe:
        key = json.dumps(configuration_to_json(dict(config)), sort_keys=True, default=repr)
        if key not in probes:
            probes[key] = _probe(program.with_configuration(config) if config else program, inputs)
        return probes[key]

    probe({})  # the program as it is must run: a setup error stops here
    for name in names:
        entry = space.entry(name)
        conditions = {space._qualify(entry, k): v for k, v in entry.variable.active_when.items()}
        reference = probe(conditions)
        differs = False
        failed = reference.failed
        tried = 0
        for value in _trial_values(space, name, current[name]):
            try:
                seen = probe({**conditions, name: value})
            except ConfigurationError as exc:
                report.unusable.setdefault(name, {})[str(value)] = str(exc)
                continue
            tried += 1
            failed = failed or seen.failed
            differs = differs or seen.fingerprint != reference.fingerprint
        if differs or not tried:  # a variable none of whose other values can run is judged by the caller
            continue
        if failed:
            report.undecided.append(name)
        else:
            report.inert.append(name)
    return report


def searchable_space(
    program: Module, names: Sequence[str], example: Example
) -> tuple[VariableSpace, list[str], ProbeReport]:
    """The space and names an optimizer should search: inert variables and unusable options left out.

    Each left-out variable is reported with a warning ("variable 'x' has no effect on any request").
    """
    report = probe_variables(program, names, example)
    space = program.variable_space()
    single: list[str] = []
    for name, reasons in report.unusable.items():
        variable = space[name]
        if variable.kind in ("choice", "module", "lm"):
            keep = [o for o in variable.options if str(o) not in reasons]
            space = space.restricted(name, keep)
            if len(keep) < 2 and name not in report.inert:
                single.append(name)
        message = (
            f"variable {name!r}: {sorted(reasons)} cannot run here and are not searched "
            f"({next(iter(reasons.values()))})"
        )
        if _declared(space, name):
            warnings.warn(message, UserWarning, stacklevel=3)
        else:  # an implicit variable (a predictor's decoding under an LM that cannot score)
            logger.info(message)
    for name in report.inert:
        message = (
            f"variable {name!r} has no effect on any request; it is left out of the search "
            "(bind it with setting=..., pass it in config=..., or read it where it changes the program)"
        )
        if _declared(space, name):
            warnings.warn(message, UserWarning, stacklevel=3)
        else:  # a predictor's implicit variable, e.g. its decoding under an LM that cannot score
            logger.info(message)
    report.inert.extend(single)
    return space, [n for n in names if n not in report.inert], report


def _declared(space: VariableSpace, name: str) -> bool:
    """Whether ``name`` was declared by the user (not a predictor's implicit variable)."""
    from ..variables import class_variables

    entry = space.entry(name)
    return entry.local in dict(class_variables(type(entry.owner))) or entry.local in (
        entry.owner.__dict__.get("_instance_variables") or {}
    )
