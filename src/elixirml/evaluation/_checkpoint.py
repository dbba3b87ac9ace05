"""Checkpoints of an evaluation: finished examples in a JSON Lines file or the store, fingerprinted, resumable."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..data import example_record
from ..errors import ConfigurationError
from ..schema import Example, Prediction
from ._results import ExampleResult


def example_key(example: Example) -> str:
    """A stable identity of an example (for checkpoints)."""
    return hashlib.sha256(example_record(example)).hexdigest()[:32]


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def checkpoint_fingerprint(program: Any, metric_names: Sequence[str]) -> dict[str, str]:
    """What produced a checkpoint's records: the program's state, its signatures, and the metrics.

    Every record carries it; resuming compares it part by part, so a checkpoint written by
    another program (other demos, instructions, LM settings), another signature or another
    metric is not silently reused.
    """
    dump = getattr(program, "dump_state", None)
    state = dump() if callable(dump) else {}
    named = getattr(program, "named_predictors", None)
    signatures = (
        {name: str(getattr(p.signature, "signature", p.signature)) for name, p in named()} if callable(named) else {}
    )
    return {
        "program": f"{type(program).__name__}:{_digest(state)}",
        "signature": _digest(signatures),
        "metric": ",".join(metric_names),
    }


_RECORD_TYPES: dict[str, tuple[type, ...]] = {
    "key": (str,),
    "score": (int, float),
    "scores": (dict,),
    "prediction": (dict, type(None)),
    "latency": (int, float),
    "usage": (dict,),
}


def _valid_record(record: Any) -> bool:
    if not isinstance(record, dict):
        return False
    if not all(isinstance(record.get(name), kinds) for name, kinds in _RECORD_TYPES.items()):
        return False
    scores = record["scores"]
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in scores.values()) and isinstance(
        record.get("cost", 0.0), (int, float)
    )


def _record_json(key: str, result: ExampleResult, fingerprint: Mapping[str, str]) -> dict[str, Any]:
    prediction = dict(result.prediction.items()) if isinstance(result.prediction, (Example, Mapping)) else None
    record = {
        "key": key,
        "score": result.score,
        "scores": result.scores,
        "prediction": prediction,
        "error": f"{type(result.error).__name__}: {result.error}" if result.error else None,
        "latency": result.latency,
        "usage": result.usage,
        "cost": result.cost,
        "feedback": result.feedback,
        "fingerprint": dict(fingerprint),
    }
    loaded: dict[str, Any] = json.loads(json.dumps(record, default=str))
    return loaded


def resumed_result(index: int, example: Example, saved: Mapping[str, Any]) -> ExampleResult:
    """The result a checkpoint record (written by :func:`_record_json`, checked by :func:`_valid_record`) stands for."""
    return ExampleResult(
        index=index,
        example=example,
        prediction=Prediction(saved["prediction"] or {}),
        score=float(saved["score"]),
        scores={k: float(v) for k, v in saved["scores"].items()},
        error=None,
        latency=float(saved["latency"]),
        usage=saved["usage"],
        cost=float(saved.get("cost", 0.0)),
        resumed=True,
        feedback=saved["feedback"] if isinstance(saved.get("feedback"), str) else None,
    )


def _accept(
    where: str, records: Iterable[tuple[str, Any]], fingerprint: Mapping[str, str], resume: bool | str
) -> dict[str, dict[str, Any]]:
    """The finished, well-formed records that this program, signature and metric may reuse.

    Malformed records are reported in one warning (their examples run again). A record written
    by something else raises, naming what differs, unless ``resume="force"``.
    """
    done: dict[str, dict[str, Any]] = {}
    malformed: list[str] = []
    if resume is False:
        return done
    for label, record in records:
        if not _valid_record(record):
            malformed.append(label)
            continue
        theirs = record.get("fingerprint")
        if resume != "force" and theirs is not None and theirs != dict(fingerprint):
            differs = [
                f"{part} ({theirs.get(part)!r} there, {fingerprint[part]!r} now)"
                for part in fingerprint
                if not isinstance(theirs, dict) or theirs.get(part) != fingerprint[part]
            ]
            raise ConfigurationError(
                f"Checkpoint {where} was written by another program or metric: {', '.join(differs)} differ. "
                "Use another checkpoint, or pass resume='force' to reuse its results anyway "
                "(resume=False ignores them)."
            )
        if record.get("error") is None:
            done[record["key"]] = record
    if malformed:
        shown = ", ".join(malformed[:10]) + (f" and {len(malformed) - 10} more" if len(malformed) > 10 else "")
        warnings.warn(
            f"Checkpoint {where}: ignored {len(malformed)} malformed record(s) ({shown}); their examples run again.",
            RuntimeWarning,
            stacklevel=5,
        )
    return done


class _Checkpoint:
    """Finished examples appended to a JSON Lines file as they complete."""

    def __init__(self, path: str | os.PathLike[str], fingerprint: Mapping[str, str], resume: bool | str = True) -> None:
        self.path = Path(path)
        self.fingerprint = dict(fingerprint)
        lines: list[tuple[str, Any]] = []
        if self.path.exists():
            data = self.path.read_bytes()
            complete = data.rfind(b"\n") + 1
            if complete < len(data):
                # a last line cut short by a crash: drop it (that example runs again) so the
                # next record starts on a line of its own
                with self.path.open("r+b") as handle:
                    handle.truncate(complete)
            for number, raw in enumerate(data[:complete].decode("utf-8", errors="replace").splitlines(), 1):
                if not raw.strip():
                    continue
                try:
                    lines.append((f"line {number}", json.loads(raw)))
                except json.JSONDecodeError:
                    lines.append((f"line {number}", None))
        self.done = _accept(str(self.path), lines, self.fingerprint, resume)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = self.path.open("a", encoding="utf-8")

    def write(self, key: str, result: ExampleResult) -> None:
        self._handle.write(json.dumps(_record_json(key, result, self.fingerprint)) + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


class _StoreCheckpoint:
    """Finished examples kept in the store, one row each, committed as they complete."""

    def __init__(self, store: Any, name: str, fingerprint: Mapping[str, str], resume: bool | str = True) -> None:
        self.store = store
        self.name = name
        self.fingerprint = dict(fingerprint)
        rows = [(f"key {k}", r) for k, r in store.checkpoint_records(name).items()]
        self.done = _accept(f"{name!r} in {store!r}", rows, self.fingerprint, resume)

    def write(self, key: str, result: ExampleResult) -> None:
        self.store.add_checkpoint_record(self.name, key, _record_json(key, result, self.fingerprint))

    def close(self) -> None:
        """Nothing to release: every row is already committed."""


def open_checkpoint(
    checkpoint: Any, program: Any, examples: list[Example], metric_names: Sequence[str], resume: bool | str = True
) -> Any:
    """The checkpoint ``checkpoint=`` names (a file path, a Store, a (Store, name) pair), or None for none."""
    if checkpoint is None:
        return None
    if resume not in (True, False, "force"):
        raise ConfigurationError(f"resume= takes True, False or 'force', got {resume!r}")
    fingerprint = checkpoint_fingerprint(program, metric_names)
    if isinstance(checkpoint, (str, os.PathLike)):
        return _Checkpoint(checkpoint, fingerprint, resume)
    store, name = checkpoint if isinstance(checkpoint, tuple) else (checkpoint, None)
    if not hasattr(store, "checkpoint_records"):
        raise ConfigurationError("checkpoint= takes a file path, a Store, or a (Store, name) pair")
    if name is None:
        from ..data import Dataset

        name = f"{type(program).__name__}:{metric_names[0]}:{Dataset(examples).fingerprint()[:16]}"
    return _StoreCheckpoint(store, name, fingerprint, resume)
