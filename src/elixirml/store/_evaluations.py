"""Evaluations: a program's score on a dataset, with the per-example results."""

from __future__ import annotations

from typing import Any

from ._core import StoreCore, _iso


class Evaluations(StoreCore):
    """Evaluations (a part of :class:`~elixirml.store.ResourceStore`)."""

    def add_evaluation(
        self,
        *,
        program_name: str,
        dataset_fingerprint: str,
        metric: str,
        score: float,
        n: int,
        errors: int,
        summary: dict[str, Any],
        results: list[Any],
        version_id: int | None = None,
    ) -> int:
        """Record an evaluation; returns its id."""
        from ._models import EvaluationRecord

        with self.session() as session:
            record = EvaluationRecord(
                program_name=program_name,
                dataset_fingerprint=dataset_fingerprint,
                metric=metric,
                score=score,
                n=n,
                errors=errors,
                summary=summary,
                results=results,
                version_id=version_id,
            )
            return self._insert(session, record)

    def evaluations(self, *, program: str | None = None, dataset: str | None = None) -> list[dict[str, Any]]:
        """Evaluations, newest first (filter by program name or dataset fingerprint)."""
        from ._models import EvaluationRecord

        with self.session() as session:
            query = session.query(EvaluationRecord).order_by(EvaluationRecord.id.desc())
            query = self._matching(query, program_name=program, dataset_fingerprint=dataset)
            return [self._evaluation_info(e) for e in query]

    def evaluation(self, evaluation_id: int) -> dict[str, Any]:
        """One evaluation with its per-example results.

        Raises:
            LoadError: no evaluation has that id.
        """
        from ._models import EvaluationRecord

        with self.session() as session:
            e = self._get(session, EvaluationRecord, int(evaluation_id), f"No evaluation with id {evaluation_id}")
            return self._evaluation_info(e, whole=True)

    @staticmethod
    def _evaluation_info(e: Any, *, whole: bool = False) -> dict[str, Any]:
        """An evaluation as a dict; ``whole`` adds its version id and per-example results."""
        info = {"id": e.id, "program": e.program_name}
        if whole:
            info["version_id"] = e.version_id
        info.update(
            dataset=e.dataset_fingerprint, metric=e.metric, score=e.score, n=e.n, errors=e.errors, summary=e.summary
        )
        if whole:
            info["results"] = e.results
        info["created_at"] = _iso(e.created_at)
        return info
