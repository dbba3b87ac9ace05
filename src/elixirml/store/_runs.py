"""Optimization runs, their trials and the optimizers' kept search states."""

from __future__ import annotations

import json
import os
import socket
from typing import Any

from ..errors import ConfigurationError
from ._core import StoreCore, _iso, _process_alive, _refuse_secrets


class Runs(StoreCore):
    """Optimization runs, trials and run states (a part of :class:`~elixirml.store.ResourceStore`)."""

    def create_run(
        self, run_id: str, optimizer: str, settings: dict[str, Any], program: str | None = None
    ) -> dict[str, Any]:
        """Record the start of an optimization run (resuming an existing id reopens it).

        The run remembers which host and process run it, so a run whose process has ended
        is reported as ``interrupted``, not ``running``. Returns the run as it was before
        this call (``status`` ``"new"`` for a new run), with its trials, so a resumed run can
        continue its trial numbers and its totals.
        """
        from ._models import OptimizationRun, ProgramRecord

        _refuse_secrets(settings)

        def start(session: Any) -> dict[str, Any]:
            run = session.get(OptimizationRun, run_id)
            program_id = None
            if program is not None:
                record = session.query(ProgramRecord).filter_by(name=program).one_or_none()
                program_id = record.id if record is not None else None
            if run is None:
                session.add(
                    OptimizationRun(
                        id=run_id,
                        optimizer=optimizer,
                        settings=settings,
                        status="running",
                        program_id=program_id,
                        host=socket.gethostname(),
                        pid=os.getpid(),
                    )
                )
                return {"id": run_id, "status": "new", "trial_list": [], "lm_calls": 0, "tokens": 0, "cost": 0.0}
            before = self._run_info(run, with_trials=True)
            before["best_version_id"] = run.best_version_id
            run.status, run.host, run.pid, run.finished_at = "running", socket.gethostname(), os.getpid(), None
            return before

        return self._transaction(f"Starting optimization run {run_id!r}", start)

    def add_trial(self, run_id: str, trial: dict[str, Any]) -> None:
        """Record a finished trial (replacing one with the same number) and add its spend to the run's totals."""
        from ._models import OptimizationRun, TrialRecord

        def add(session: Any) -> None:
            existing = session.query(TrialRecord).filter_by(run_id=run_id, number=trial["number"]).one_or_none()
            if existing is not None:
                session.delete(existing)
                session.flush()
            session.add(
                TrialRecord(
                    run_id=run_id,
                    number=trial["number"],
                    configuration=trial.get("configuration", {}),
                    score=trial["score"],
                    scores=trial.get("scores", {}),
                    lm_calls=trial.get("lm_calls", 0),
                    tokens=trial.get("tokens", 0),
                    cost=trial.get("cost", 0.0),
                    wall_time=trial.get("wall_time", 0.0),
                    status=trial.get("status", "complete"),
                    full=int(trial.get("full", True)),
                )
            )
            run = session.get(OptimizationRun, run_id)
            if run is not None and existing is None:
                run.lm_calls += int(trial.get("lm_calls", 0))
                run.tokens += int(trial.get("tokens", 0))
                run.cost += float(trial.get("cost", 0.0))

        self._transaction(f"Recording a trial of run {run_id!r}", add)

    def set_run_state(self, run_id: str, optimizer: str, state: dict[str, Any]) -> None:
        """Keep ``optimizer``'s search state of run ``run_id`` (JSON), replacing the one kept before.

        Optimizers that resume write it after every step; :meth:`run_state` reads it back.

        Raises:
            ConfigurationError: the state is not JSON, or holds what looks like credentials.
            LoadError: there is no run ``run_id``.
            StoreError: the database failed.
        """
        from ._models import OptimizationRun, RunStateRecord, utcnow

        try:
            json.dumps(state, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"The state of run {run_id!r} must be JSON: {exc}") from None
        _refuse_secrets(state)

        def write(session: Any) -> None:
            self._get(session, OptimizationRun, run_id, f"No optimization run {run_id!r}")
            record = session.get(RunStateRecord, run_id)
            if record is None:
                session.add(RunStateRecord(run_id=run_id, optimizer=optimizer, state=state, updated_at=utcnow()))
            else:
                record.optimizer, record.state, record.updated_at = optimizer, state, utcnow()

        self._transaction(f"Keeping the state of run {run_id!r}", write)

    def run_state(self, run_id: str) -> dict[str, Any] | None:
        """The search state kept for run ``run_id``: ``{"optimizer", "state", "updated_at"}``, or None."""
        from ._models import RunStateRecord

        with self.session() as session:
            record = session.get(RunStateRecord, run_id)
            if record is None:
                return None
            return {
                "optimizer": record.optimizer,
                "state": record.state,
                "updated_at": _iso(record.updated_at),
            }

    def finish_run(
        self,
        run_id: str,
        *,
        status: str,
        best_score: float | None,
        best_version_id: int | None,
        lm_calls: int,
        tokens: int,
        cost: float,
    ) -> None:
        """Record how a run ended (``lm_calls``, ``tokens`` and ``cost`` are the run's totals over every leg)."""
        from ._models import OptimizationRun, ProgramVersion, utcnow

        def finish(session: Any) -> None:
            run = self._get(session, OptimizationRun, run_id, f"No optimization run {run_id!r}")
            run.status, run.best_score = status, best_score
            if best_version_id is not None:
                run.best_version_id = best_version_id
                version = session.get(ProgramVersion, best_version_id)
                if version is not None:
                    run.program_id = version.program_id
            run.lm_calls, run.tokens, run.cost, run.finished_at = lm_calls, tokens, cost, utcnow()

        self._transaction(f"Finishing optimization run {run_id!r}", finish)

    def runs(self, *, program: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        """Optimization runs, newest first (a ``running`` run whose process has ended shows as ``interrupted``)."""
        from ._models import OptimizationRun

        self._mark_interrupted()
        with self.session() as session:
            query = session.query(OptimizationRun).order_by(OptimizationRun.created_at.desc())
            out = []
            for run in query:
                if status is not None and run.status != status:
                    continue
                if program is not None and (run.program is None or run.program.name != program):
                    continue
                out.append(self._run_info(run))
            return out

    def _mark_interrupted(self) -> None:
        """Mark ``interrupted`` every run still ``running`` whose process on this host has ended."""
        from ._models import OptimizationRun

        if self.read_only:  # nothing can be marked: the runs show as they were recorded
            return
        host = socket.gethostname()

        def mark(session: Any) -> None:
            for run in session.query(OptimizationRun).filter_by(status="running", host=host):
                if run.pid is not None and run.pid != os.getpid() and not _process_alive(run.pid):
                    run.status = "interrupted"

        self._transaction("Checking for interrupted runs", mark)

    @staticmethod
    def _run_info(run: Any, *, with_trials: bool = False) -> dict[str, Any]:
        info = {
            "id": run.id,
            "optimizer": run.optimizer,
            "status": run.status,
            "best_score": run.best_score,
            "best_version_id": run.best_version_id,
            "program": run.program.name if run.program is not None else None,
            "settings": run.settings,
            "lm_calls": run.lm_calls,
            "tokens": run.tokens,
            "cost": run.cost,
            "created_at": _iso(run.created_at),
            "trials": len(run.trials),
        }
        if with_trials:
            info["trial_list"] = [
                {
                    "number": t.number,
                    "score": t.score,
                    "scores": t.scores,
                    "configuration": t.configuration,
                    "lm_calls": t.lm_calls,
                    "tokens": t.tokens,
                    "cost": t.cost,
                    "status": t.status,
                    "full": bool(t.full),
                    "wall_time": t.wall_time,
                }
                for t in run.trials
            ]
        return info

    def run(self, run_id: str) -> dict[str, Any]:
        """One run with its trials."""
        from ._models import OptimizationRun

        self._mark_interrupted()
        with self.session() as session:
            run = self._get(session, OptimizationRun, run_id, f"No optimization run {run_id!r}")
            return self._run_info(run, with_trials=True)
