"""Evaluation checkpoints: the finished examples of an evaluation that can resume."""

from __future__ import annotations

from typing import Any

from ._core import StoreCore


class Checkpoints(StoreCore):
    """Evaluation checkpoints (a part of :class:`~elixirml.store.ResourceStore`)."""

    def checkpoint_records(self, checkpoint: str) -> dict[str, dict[str, Any]]:
        """The finished examples of evaluation checkpoint ``checkpoint`` (key -> record)."""
        from ._models import EvalCheckpointRecord

        with self.session() as session:
            rows = session.query(EvalCheckpointRecord).filter_by(checkpoint=checkpoint)
            return {row.key: dict(row.record) for row in rows}

    def add_checkpoint_record(self, checkpoint: str, key: str, record: dict[str, Any]) -> None:
        """Keep one finished example of an evaluation checkpoint (replacing an earlier one).

        Several processes may write to one checkpoint: the last write of a key wins.
        """
        from ._models import EvalCheckpointRecord

        def write(session: Any) -> None:
            query = session.query(EvalCheckpointRecord).filter_by(checkpoint=checkpoint, key=key)
            existing = query.one_or_none()
            if existing is not None:
                existing.record = record
            else:
                session.add(EvalCheckpointRecord(checkpoint=checkpoint, key=key, record=record))

        self._transaction(f"Writing checkpoint {checkpoint!r}", write)
