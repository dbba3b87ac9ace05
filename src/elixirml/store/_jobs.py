"""Jobs of the server's job manager: recording, updating, claiming with a lease, renewing and releasing."""

from __future__ import annotations

import os
import re
import socket
import uuid
from typing import Any

from .._secrets import redact_url
from ..errors import ConfigurationError
from ._core import StoreCore, _aware, _iso, _process_alive, _refuse_secrets, _sqlalchemy

_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


def job_owner() -> str:
    """A new id for a job manager: its host, its process and a random part (two managers of one process differ)."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def _lease_end(seconds: float) -> Any:
    import datetime as dt

    from ._models import utcnow

    return utcnow() + dt.timedelta(seconds=seconds)


class Jobs(StoreCore):
    """Server jobs (a part of :class:`~elixirml.store.ResourceStore`)."""

    JOB_STATES = ("queued", "running", "restarting", "interrupted", "succeeded", "failed", "cancelled")
    JOB_FINAL_STATES = ("succeeded", "failed", "cancelled")
    _JOB_FIELDS = ("state", "progress", "trials", "best_score", "attempts", "result", "error")

    def create_job(
        self,
        job_id: str,
        *,
        kind: str,
        program: str,
        version: int | None,
        spec: dict[str, Any],
        owner: str | None = None,
        lease: float | None = None,
    ) -> dict[str, Any]:
        """Record a new job (state ``queued``), owned by this process; returns it.

        ``owner`` (a job manager's :func:`job_owner` id) holds the job for ``lease`` seconds;
        it renews the lease with :meth:`renew_job_leases` while the job runs.

        Raises:
            ConfigurationError: the spec holds what looks like credentials.
            StoreError: the database failed (or the id is taken).
        """
        from ._models import JobRecord

        _refuse_secrets({k: v for k, v in spec.items() if k not in ("rows", "valrows")})  # rows are user data

        def create(session: Any) -> dict[str, Any]:
            record = JobRecord(
                id=job_id,
                kind=kind,
                program=program,
                version=version,
                spec=spec,
                state="queued",
                progress=0.0,
                trials=0,
                attempts=0,
                result={},
                error="",
                host=socket.gethostname(),
                pid=os.getpid(),
                owner=owner,
                lease_expires=None if lease is None else _lease_end(lease),
            )
            session.add(record)
            session.flush()
            return self._job_info(record)

        return self._transaction(f"Creating job {job_id!r}", create)

    def job(self, job_id: str) -> dict[str, Any]:
        """One job.

        Raises:
            LoadError: no job has this id.
        """
        from ._models import JobRecord

        with self.session() as session:
            return self._job_info(self._get(session, JobRecord, job_id, f"No job {job_id!r}"))

    def jobs(self, *, state: str | None = None, program: str | None = None) -> list[dict[str, Any]]:
        """Jobs, newest first (filter by state or program name)."""
        from ._models import JobRecord

        with self.session() as session:
            query = session.query(JobRecord).order_by(JobRecord.created_at.desc())
            return [self._job_info(r) for r in self._matching(query, state=state, program=program)]

    def update_job(self, job_id: str, **fields: Any) -> dict[str, Any]:
        """Change a job's ``state``, ``progress``, ``trials``, ``best_score``, ``attempts``, ``result`` or ``error``.

        Entering a final state (succeeded, failed, cancelled) stamps ``finished_at``; a job already in
        one is left as it is (the returned job says so). Returns the job.

        Raises:
            ConfigurationError: an unknown field or state.
            LoadError: no job has this id.
        """
        from ._models import JobRecord, utcnow

        fields = self._job_fields(fields)

        def update(session: Any) -> dict[str, Any]:
            record = self._get(session, JobRecord, job_id, f"No job {job_id!r}")
            if record.state in self.JOB_FINAL_STATES:
                # A job that ended (a cancel, most often) stays as it ended: a worker that was
                # starting as it was cancelled must not write it back to running or succeeded.
                return self._job_info(record)
            for key, value in fields.items():
                setattr(record, key, value)
            record.updated_at = utcnow()
            if fields.get("state") in self.JOB_FINAL_STATES:
                record.finished_at = record.updated_at
            return self._job_info(record)

        return self._transaction(f"Updating job {job_id!r}", update)

    def claim_jobs(self, owner: str | None = None, lease: float = 30.0) -> list[dict[str, Any]]:
        """Take over the unfinished jobs nobody holds any more, and return them (oldest first).

        A job is free when its owner released it (a manager that stopped marks it
        ``interrupted``), when its owner's lease has expired (on any host), or when the process
        of this host that held it has ended. Each free job is taken by a compare-and-set on its
        owner and lease, so of managers claiming at the same moment exactly one gets it; it
        then belongs to ``owner`` (default: this process) for ``lease`` seconds, state ``queued``.
        A job from before leases (no owner) is free when ``interrupted`` or left by a process of
        this host that has ended, as it was.
        """
        sa = _sqlalchemy()
        from ._models import JobRecord, utcnow

        host, me = socket.gethostname(), os.getpid()
        owner = owner if owner is not None else job_owner()

        def free(record: Any, now: Any) -> bool:
            dead = record.host == host and (record.pid is None or not _process_alive(record.pid))
            if record.owner is None:  # recorded before leases
                return bool(record.state == "interrupted" or dead)
            expired = record.lease_expires is None or _aware(record.lease_expires) <= now
            return bool(record.owner == "" or expired or dead)

        def claim(session: Any) -> list[dict[str, Any]]:
            now = utcnow()
            seen = [
                (r.id, r.owner, r.lease_expires, r.pid)
                for r in session.query(JobRecord)
                .filter(JobRecord.state.notin_(self.JOB_FINAL_STATES))
                .order_by(JobRecord.created_at)
                if free(r, now)
            ]
            taken = []
            for job_id, was_owner, was_lease, was_pid in seen:
                unchanged = [
                    JobRecord.id == job_id,
                    JobRecord.state.notin_(self.JOB_FINAL_STATES),
                    JobRecord.owner.is_(None) if was_owner is None else JobRecord.owner == was_owner,
                    JobRecord.lease_expires.is_(None) if was_lease is None else JobRecord.lease_expires <= was_lease,
                    JobRecord.pid.is_(None) if was_pid is None else JobRecord.pid == was_pid,
                ]
                done = session.execute(
                    sa.update(JobRecord)
                    .where(*unchanged)
                    .values(
                        owner=owner,
                        lease_expires=_lease_end(lease),
                        host=host,
                        pid=me,
                        state="queued",
                        updated_at=now,
                    )
                    .execution_options(synchronize_session=False)
                )
                if done.rowcount == 1:
                    taken.append(job_id)
            session.expire_all()
            return [self._job_info(session.get(JobRecord, job_id)) for job_id in taken]

        return self._transaction("Claiming interrupted jobs", claim)

    def renew_job_leases(self, owner: str, job_ids: list[str], lease: float = 30.0) -> list[str]:
        """Extend ``owner``'s lease on these unfinished jobs by ``lease`` seconds; returns those it still holds.

        A job missing from the answer was taken over (its lease had expired), cancelled or ended:
        its owner must stop working on it.
        """
        sa = _sqlalchemy()
        from ._models import JobRecord

        if not job_ids:
            return []

        def renew(session: Any) -> list[str]:
            mine = [
                JobRecord.id.in_(job_ids),
                JobRecord.owner == owner,
                JobRecord.state.notin_(self.JOB_FINAL_STATES),
            ]
            session.execute(
                sa.update(JobRecord)
                .where(*mine)
                .values(lease_expires=_lease_end(lease))
                .execution_options(synchronize_session=False)
            )
            return [job_id for (job_id,) in session.query(JobRecord.id).filter(*mine)]

        return self._transaction("Renewing job leases", renew)

    def release_job(self, job_id: str, owner: str, **fields: Any) -> bool:
        """Write ``fields`` (as :meth:`update_job`) and release the job, if ``owner`` still holds it.

        Returns whether it did; a job taken over by another manager is left as that one has it.
        """
        sa = _sqlalchemy()
        from ._models import JobRecord, utcnow

        fields = self._job_fields(fields)

        def release(session: Any) -> bool:
            now = utcnow()
            values = {**fields, "owner": "", "lease_expires": None, "updated_at": now}
            if fields.get("state") in self.JOB_FINAL_STATES:
                values["finished_at"] = now
            done = session.execute(
                sa.update(JobRecord)
                .where(JobRecord.id == job_id, JobRecord.owner == owner)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            return bool(done.rowcount == 1)

        return self._transaction(f"Releasing job {job_id!r}", release)

    def _job_fields(self, fields: dict[str, Any]) -> dict[str, Any]:
        """The checked fields of a job update (their errors without credentials)."""
        unknown = set(fields) - set(self._JOB_FIELDS)
        if unknown:
            raise ConfigurationError(f"Unknown job field(s) {sorted(unknown)}; fields: {list(self._JOB_FIELDS)}")
        if "state" in fields and fields["state"] not in self.JOB_STATES:
            raise ConfigurationError(f"Unknown job state {fields['state']!r}; states: {list(self.JOB_STATES)}")
        _refuse_secrets(fields.get("result"))
        if fields.get("error"):  # a worker's error text may quote a URL: keep it, without its credentials
            fields["error"] = _URL.sub(lambda m: redact_url(m.group(0)), str(fields["error"]))
        return fields

    @staticmethod
    def _job_info(record: Any) -> dict[str, Any]:
        return {
            "id": record.id,
            "kind": record.kind,
            "program": record.program,
            "version": record.version,
            "spec": record.spec,
            "state": record.state,
            "progress": record.progress,
            "trials": record.trials,
            "best_score": record.best_score,
            "attempts": record.attempts,
            "restarts": max(0, record.attempts - 1),
            "result": record.result,
            "error": record.error,
            "owner": record.owner,
            "lease_expires": _iso(record.lease_expires and _aware(record.lease_expires)),
            "created_at": _iso(record.created_at),
            "updated_at": _iso(record.updated_at),
            "finished_at": _iso(record.finished_at),
        }
