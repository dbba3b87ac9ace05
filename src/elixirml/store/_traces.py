"""Traced runs (executions): a program call's inputs, outputs, trace entries and span tree."""

from __future__ import annotations

from typing import Any

from ._core import StoreCore, _iso, _refuse_secrets


class Traces(StoreCore):
    """Traced runs and their spans (a part of :class:`~elixirml.store.ResourceStore`)."""

    def add_execution(
        self,
        *,
        program_name: str,
        inputs: dict[str, Any],
        outputs: dict[str, Any],
        trace: list[Any],
        error: str = "",
        latency: float = 0.0,
        tokens: int = 0,
        spans: list[Any] | None = None,
    ) -> int:
        """Record a traced run; returns its id.

        ``trace`` holds one JSON entry per predictor call (inputs, outputs, rendered messages,
        raw completion); ``spans`` the run's span tree as recorded by
        :class:`~elixirml.runtime.SpanRecorder` (each span names its parent).
        """
        from ._models import ExecutionRecord

        _refuse_secrets({"inputs": inputs, "outputs": outputs, "trace": trace, "spans": spans})
        with self.session() as session:
            record = ExecutionRecord(
                program_name=program_name,
                inputs=inputs,
                outputs=outputs,
                trace=trace,
                spans=spans,
                error=error,
                latency=latency,
                tokens=tokens,
            )
            return self._insert(session, record)

    @staticmethod
    def _execution_info(record: Any, *, whole: bool = True) -> dict[str, Any]:
        """A traced run as a dict: ``whole`` with its trace entries and spans, else with their count (``steps``)."""
        info = {"id": record.id, "program": record.program_name, "inputs": record.inputs, "outputs": record.outputs}
        if whole:
            info.update(trace=record.trace, spans=record.spans or [])
        info.update(error=record.error, latency=record.latency, tokens=record.tokens)
        if not whole:
            info["steps"] = len(record.trace or [])
        info["created_at"] = _iso(record.created_at)
        return info

    def execution(self, execution_id: int) -> dict[str, Any]:
        """One traced run with its trace entries and spans.

        Raises:
            LoadError: no execution has that id.
        """
        from ._models import ExecutionRecord

        with self.session() as session:
            missing = f"No traced run with id {execution_id}"
            return self._execution_info(self._get(session, ExecutionRecord, int(execution_id), missing))

    def executions(self, *, program: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Traced runs, newest first (at most ``limit``), without their traces and spans."""
        from ._models import ExecutionRecord

        with self.session() as session:
            query = session.query(ExecutionRecord).order_by(ExecutionRecord.id.desc())
            query = self._matching(query, program_name=program)
            return [self._execution_info(e, whole=False) for e in query.limit(limit)]

    def last_execution(self) -> dict[str, Any] | None:
        """The newest traced run, or None."""
        from ._models import ExecutionRecord

        with self.session() as session:
            record = session.query(ExecutionRecord).order_by(ExecutionRecord.id.desc()).first()
            return None if record is None else self._execution_info(record)
