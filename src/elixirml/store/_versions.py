"""Programs and their versions: saving, loading, listing and diffing versions; content-addressed states."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from ..errors import LoadError, VariableError
from ._core import StoreCore, _iso, _refuse_secrets, _sqlalchemy


def validate_configuration(configuration: Mapping[str, Any], space: Mapping[str, Any]) -> None:
    """Check a configuration against a stored variable space (name -> encoding).

    Raises:
        VariableError: naming the variable, the value and the rule it breaks.
    """
    for name, value in configuration.items():
        if name not in space:
            raise VariableError(
                f"Configuration names unknown variable {name!r}; the program's variables: {sorted(space)}"
            )
        rule = space[name]
        kind = rule.get("type")
        if kind == "numeric":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise VariableError(f"Variable {name!r}: expected a number, got {value!r}")
            if not rule["low"] <= value <= rule["high"]:
                raise VariableError(f"Variable {name!r}: {value} is out of range [{rule['low']}, {rule['high']}]")
            if rule.get("integer") and not float(value).is_integer():
                raise VariableError(f"Variable {name!r}: expected an integer, got {value!r}")
        elif kind == "categorical":
            if value not in rule["choices"]:
                raise VariableError(f"Variable {name!r}: {value!r} is not one of {rule['choices']}")
        elif kind == "text" and not isinstance(value, str):
            raise VariableError(f"Variable {name!r}: expected text, got {value!r}")
        elif kind == "demos" and not isinstance(value, list):
            raise VariableError(f"Variable {name!r}: expected a list of demos, got {type(value).__name__}")


def content_hash(state: Any, configuration: Any) -> str:
    """SHA-256 of a version's content (state and configuration)."""
    text = json.dumps({"state": state, "configuration": configuration}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _demos_of(predictor: Mapping[str, Any]) -> list[Any]:
    """A saved predictor's demos as (values, input marks), whichever layout wrote them.

    Predict.dump_state writes flat demos with ``demo_inputs`` beside them (DSPy's layout); earlier
    states held ``{"data": ..., "inputs": [...]}`` per demo. The same demos compare equal in both.
    """
    demos = predictor.get("demos") or []
    if not isinstance(demos, list):
        return [demos]
    if "demo_inputs" in predictor or "type" not in predictor:
        marks = predictor.get("demo_inputs")
        marks = marks if isinstance(marks, list) and len(marks) == len(demos) else [None] * len(demos)
        return [(d, m) for d, m in zip(demos, marks)]
    return [(d.get("data"), d.get("inputs")) if isinstance(d, Mapping) else (d, None) for d in demos]


def state_hash(state: Any) -> str:
    """SHA-256 of a program state alone: the key under which the store keeps it once."""
    text = json.dumps(state, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _field_summary(signature: Any) -> str | None:
    """``"question: str -> reasoning: str, answer: str"`` of a stored signature (None without one)."""
    if not isinstance(signature, dict):
        return None
    fields = [f for f in signature.get("fields") or [] if isinstance(f, dict)]

    def side(kind: str) -> str:
        return ", ".join(f"{f.get('name')}: {f.get('type')}" for f in fields if f.get("kind") == kind)

    return f"{side('input')} -> {side('output')}"


class Versions(StoreCore):
    """Programs and their versions (a part of :class:`~elixirml.store.ResourceStore`)."""

    def add_version(
        self,
        name: str,
        state: dict[str, Any],
        *,
        configuration: dict[str, Any] | None = None,
        space: dict[str, Any] | None = None,
        class_path: str = "",
        class_file: str | None = None,
        signature_summary: str = "",
        tags: list[str] | None = None,
        message: str = "",
        parent: int | str | None = "latest",
    ) -> dict[str, Any]:
        """Save a new version of program ``name`` and return its description.

        ``class_path`` (``"module:QualName"``) and ``class_file`` (its source file) are kept
        with the version: each version loads as the class it was saved from.
        ``parent`` is ``"latest"`` (chain to the newest version), a version number, or None.
        Version numbers are allocated safely when several processes save at once; the state
        is stored once per distinct content.

        Raises:
            ConfigurationError: the state or configuration holds credentials.
            VariableError: the configuration breaks the variable space.
            StoreError: the database failed (after retrying collisions with other writers).
        """
        configuration = dict(configuration or {})
        _refuse_secrets(state, configuration)
        record = {"kind": "version", "name": name, "state": state, "configuration": configuration, "tags": tags or []}
        self._fire("before_save", "version", record)
        digest = state_hash(state)
        whole = content_hash(state, configuration)

        def save(session: Any) -> dict[str, Any]:
            return self._add_version(
                session,
                name,
                state,
                digest,
                whole,
                configuration=configuration,
                space=space,
                class_path=class_path,
                class_file=class_file,
                signature_summary=signature_summary,
                tags=tags,
                message=message,
                parent=parent,
            )

        info = self._transaction(f"Saving a version of {name!r}", save)
        self._fire("after_save", "version", info)
        return info

    def _add_version(
        self,
        session: Any,
        name: str,
        state: dict[str, Any],
        digest: str,
        whole: str,
        *,
        configuration: dict[str, Any],
        space: dict[str, Any] | None,
        class_path: str,
        class_file: str | None,
        signature_summary: str,
        tags: list[str] | None,
        message: str,
        parent: int | str | None,
    ) -> dict[str, Any]:
        from ._models import ProgramRecord, ProgramVersion, StateBlob, VariableSpaceRecord

        program = session.query(ProgramRecord).filter_by(name=name).one_or_none()
        if program is None:
            program = ProgramRecord(name=name, signature_summary=signature_summary, class_path=class_path)
            session.add(program)
            session.flush()
        latest = self._latest(session, program.id)
        if space is None and latest is not None and latest.variable_space is not None:
            space = latest.variable_space.space
        if space is not None:
            validate_configuration(configuration, space)
        parent_version = None
        if parent == "latest":
            parent_version = latest
        elif parent is not None:
            parent_version = self._numbered(session, program.id, int(parent))
            if parent_version is None:
                raise LoadError(f"Program {name!r} has no version {parent}")
        config_digest = state_hash(configuration)
        for key, content in ((digest, state), (config_digest, configuration)):
            if session.get(StateBlob, key) is None:
                session.add(StateBlob(hash=key, state=content))
                session.flush()
        version = ProgramVersion(
            program=program,
            number=(latest.number + 1) if latest is not None else 1,
            state_hash=digest,
            configuration_hash=config_digest,
            tags=list(tags or []),
            message=message,
            parent=parent_version,
            content_hash=whole,
            class_path=class_path,
            class_file=class_file,
        )
        if class_path:
            program.class_path = class_path
        if signature_summary:
            program.signature_summary = signature_summary
        session.add(version)
        if space is not None:
            session.add(VariableSpaceRecord(version=version, space=space))
        session.flush()
        return self._version_info(version)

    @staticmethod
    def _latest(session: Any, program_id: int) -> Any:
        from ._models import ProgramVersion

        query = session.query(ProgramVersion).filter_by(program_id=program_id)
        return query.order_by(ProgramVersion.number.desc()).first()

    @staticmethod
    def _numbered(session: Any, program_id: int, number: int) -> Any:
        from ._models import ProgramVersion

        return session.query(ProgramVersion).filter_by(program_id=program_id, number=number).one_or_none()

    @staticmethod
    def _version_info(version: Any, *, with_state: bool = False, session: Any = None) -> dict[str, Any]:
        info = {
            "id": version.id,
            "name": version.program.name,
            "number": version.number,
            "parent": version.parent.number if version.parent is not None else None,
            "content_hash": version.content_hash,
            "tags": list(version.tags or []),
            "message": version.message,
            "created_at": _iso(version.created_at),
            "class_path": version.class_path or version.program.class_path,
            "class_file": version.class_file,
        }
        if with_state:
            from ._models import StateBlob

            def content(digest: str | None, legacy: Any) -> Any:
                if digest is None:
                    return legacy
                blob = session.get(StateBlob, digest)
                return blob.state if blob is not None else None

            info["state"] = content(version.state_hash, version.state if version.state_hash is None else None)
            configuration = content(
                version.configuration_hash, version.configuration if version.configuration_hash is None else None
            )
            info["configuration"] = configuration if configuration is not None else {}
            info["space"] = version.variable_space.space if version.variable_space is not None else None
        return info

    def get_version(self, name: str, version: int | str = "latest") -> dict[str, Any]:
        """A version of ``name`` with its state: ``"latest"``, a version number, or ``"#<id>"``.

        Raises:
            LoadError: no such program or version, or ``version`` is not one of those forms.
        """
        from ._models import ProgramRecord, ProgramVersion

        self._fire("before_load", "version", {"name": name, "version": version})
        with self.session() as session:
            program = session.query(ProgramRecord).filter_by(name=name).one_or_none()
            latest = self._latest(session, program.id) if program is not None else None
            if program is None or latest is None:
                known = [p.name for p in session.query(ProgramRecord).order_by(ProgramRecord.name)]
                raise LoadError(f"No stored program named {name!r}; stored programs: {known}")
            if version == "latest":
                chosen = latest
            elif isinstance(version, str) and version.startswith("#"):
                ident = version[1:]
                if not ident.isdigit():
                    raise LoadError(f"Version id must be '#<number>', got {version!r} for program {name!r}")
                chosen = session.get(ProgramVersion, int(ident)) if len(ident) < 19 else None  # past a 64-bit id
                if chosen is None or chosen.program_id != program.id:
                    raise LoadError(f"Program {name!r} has no version with id {ident}")
            else:
                if isinstance(version, bool):
                    raise LoadError(f"Version must be 'latest', a number or '#id', got {version!r}")
                try:
                    number = int(version)
                except (TypeError, ValueError):
                    raise LoadError(f"Version must be 'latest', a number or '#id', got {version!r}") from None
                chosen = self._numbered(session, program.id, number) if -(2**63) <= number < 2**63 else None
                if chosen is None:
                    numbers = [n for (n,) in session.query(ProgramVersion.number).filter_by(program_id=program.id)]
                    raise LoadError(f"Program {name!r} has no version {number}; versions: {sorted(numbers)}")
            info = self._version_info(chosen, with_state=True, session=session)
        if not isinstance(info["state"], dict):
            raise LoadError(f"Stored state of {name!r} v{info['number']} is not a JSON object")
        self._fire("after_load", "version", info)
        return info

    def programs(self) -> list[dict[str, Any]]:
        """Every stored program with its version count."""
        sa = _sqlalchemy()
        from ._models import ProgramRecord, ProgramVersion

        with self.session() as session:
            counts = dict(
                session.query(ProgramVersion.program_id, sa.func.count(ProgramVersion.id)).group_by(
                    ProgramVersion.program_id
                )
            )
            latest = dict(
                session.query(ProgramVersion.program_id, sa.func.max(ProgramVersion.number)).group_by(
                    ProgramVersion.program_id
                )
            )
            return [
                {
                    "name": p.name,
                    "versions": counts.get(p.id, 0),
                    "signature": p.signature_summary,
                    "latest": latest.get(p.id),
                    "class_path": p.class_path,
                }
                for p in session.query(ProgramRecord).order_by(ProgramRecord.name)
            ]

    def versions(self, name: str) -> list[dict[str, Any]]:
        """The versions of ``name``, oldest first."""
        from ._models import ProgramRecord

        with self.session() as session:
            program = session.query(ProgramRecord).filter_by(name=name).one_or_none()
            if program is None:
                raise LoadError(f"No stored program named {name!r}")
            return [self._version_info(v) for v in program.versions]

    def diff(self, name: str, a: int | str, b: int | str) -> dict[str, Any]:
        """What changed between two versions: class, configuration values and predictor state.

        Returns ``{"class": {"from", "to"} or None, "configuration": {key: {"from", "to"}},
        "predictors": {name: {what: {"from", "to"}}}}``; a predictor's ``what`` is ``type``,
        ``signature`` (its fields), ``instructions``, ``demos`` (counts), ``decoding`` or
        ``config``, and a predictor only one version has shows as ``present``.
        """
        left, right = self.get_version(name, a), self.get_version(name, b)
        changes: dict[str, Any] = {"class": None, "configuration": {}, "predictors": {}}
        if left["class_path"] != right["class_path"]:
            changes["class"] = {"from": left["class_path"], "to": right["class_path"]}
        for key in sorted(set(left["configuration"]) | set(right["configuration"])):
            before, after = left["configuration"].get(key), right["configuration"].get(key)
            if before != after:
                changes["configuration"][key] = {"from": before, "to": after}
        lp = left["state"].get("predictors", {"self": left["state"]})
        rp = right["state"].get("predictors", {"self": right["state"]})
        for key in sorted(set(lp) | set(rp)):
            before, after = lp.get(key) or {}, rp.get(key) or {}
            entry: dict[str, dict[str, Any]] = {}
            if (key in lp) != (key in rp):
                entry["present"] = {"from": key in lp, "to": key in rp}
            if before.get("type") != after.get("type"):
                entry["type"] = {"from": before.get("type"), "to": after.get("type")}
            b_fields = _field_summary(before.get("signature"))
            a_fields = _field_summary(after.get("signature"))
            if b_fields != a_fields:
                entry["signature"] = {"from": b_fields, "to": a_fields}
            b_instr = (before.get("signature") or {}).get("instructions")
            a_instr = (after.get("signature") or {}).get("instructions")
            if b_instr != a_instr:
                entry["instructions"] = {"from": b_instr, "to": a_instr}
            if _demos_of(before) != _demos_of(after):
                entry["demos"] = {"from": len(before.get("demos", [])), "to": len(after.get("demos", []))}
            if before.get("decoding") != after.get("decoding"):
                entry["decoding"] = {"from": before.get("decoding"), "to": after.get("decoding")}
            if (before.get("config") or {}) != (after.get("config") or {}):
                entry["config"] = {"from": before.get("config") or {}, "to": after.get("config") or {}}
            if entry:
                changes["predictors"][key] = entry
        return changes
