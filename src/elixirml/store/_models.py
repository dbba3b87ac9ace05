"""SQLAlchemy 2 models of the store's resources.

Programs and their versions, variable spaces, optimization runs and their trials,
evaluations and executions. Tables carry an ``em_`` prefix so the store can share a database
with other tools (Optuna keeps its studies beside them).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> dt.datetime:
    """The current time, timezone-aware (UTC)."""
    return dt.datetime.now(dt.UTC)


#: The table where Alembic records the schema revision of a store.
VERSION_TABLE = "em_alembic_version"


class Base(DeclarativeBase):
    """Base of every store model."""

    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON}


class ProgramRecord(Base):
    """A named program; its versions hold the saved states (``class_path``: the class of the newest save)."""

    __tablename__ = "em_programs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True, index=True)
    signature_summary: Mapped[str] = mapped_column(Text, default="")
    class_path: Mapped[str] = mapped_column(String(400), default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    versions: Mapped[list[ProgramVersion]] = relationship(
        back_populates="program", order_by="ProgramVersion.number", cascade="all, delete-orphan"
    )
    runs: Mapped[list[OptimizationRun]] = relationship(back_populates="program")


class StateBlob(Base):
    """A program state or configuration (JSON), stored once per distinct content and shared by every version."""

    __tablename__ = "em_state_blobs"

    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[dict[str, Any]] = mapped_column(JSON)


class ProgramVersion(Base):
    """One saved state of a program, chained to the version it came from.

    The state and the configuration (which holds the demos, so it is as large) live in
    :class:`StateBlob` under ``state_hash`` and ``configuration_hash``: identical content is
    stored once. ``state`` and ``configuration`` are only filled in rows written before 0003.
    ``class_path`` (``"module:QualName"``) and ``class_file`` (its source file, where it has
    one) say which class the version was saved from (from 0007; older rows got the program's).
    """

    __tablename__ = "em_program_versions"
    __table_args__ = (UniqueConstraint("program_id", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("em_programs.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    state: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True, deferred=True)
    state_hash: Mapped[str | None] = mapped_column(ForeignKey("em_state_blobs.hash"), nullable=True, index=True)
    configuration: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True, deferred=True)
    configuration_hash: Mapped[str | None] = mapped_column(ForeignKey("em_state_blobs.hash"), nullable=True)
    tags: Mapped[list[Any]] = mapped_column(JSON, default=list)
    message: Mapped[str] = mapped_column(Text, default="")
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("em_program_versions.id"), nullable=True)
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    class_path: Mapped[str] = mapped_column(String(400), default="")
    class_file: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    program: Mapped[ProgramRecord] = relationship(back_populates="versions")
    parent: Mapped[ProgramVersion | None] = relationship(remote_side=[id])
    variable_space: Mapped[VariableSpaceRecord | None] = relationship(
        back_populates="version", uselist=False, cascade="all, delete-orphan"
    )


class VariableSpaceRecord(Base):
    """The variable space of a version: per variable, its kind and how it may be searched."""

    __tablename__ = "em_variable_spaces"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("em_program_versions.id"), unique=True)
    space: Mapped[dict[str, Any]] = mapped_column(JSON)

    version: Mapped[ProgramVersion] = relationship(back_populates="variable_space")


class OptimizationRun(Base):
    """One optimizer run: settings, status, spend and the version it produced."""

    __tablename__ = "em_optimization_runs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    program_id: Mapped[int | None] = mapped_column(ForeignKey("em_programs.id"), nullable=True)
    optimizer: Mapped[str] = mapped_column(String(100))
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(20), default="running")
    best_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    best_version_id: Mapped[int | None] = mapped_column(ForeignKey("em_program_versions.id"), nullable=True)
    lm_calls: Mapped[int] = mapped_column(Integer, default=0)
    tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    host: Mapped[str] = mapped_column(String(255), default="")
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)

    program: Mapped[ProgramRecord | None] = relationship(back_populates="runs")
    trials: Mapped[list[TrialRecord]] = relationship(
        back_populates="run", order_by="TrialRecord.number", cascade="all, delete-orphan"
    )


class TrialRecord(Base):
    """One trial of a run."""

    __tablename__ = "em_trials"
    __table_args__ = (UniqueConstraint("run_id", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("em_optimization_runs.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    configuration: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    score: Mapped[float] = mapped_column(Float)
    scores: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    lm_calls: Mapped[int] = mapped_column(Integer, default=0)
    tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost: Mapped[float] = mapped_column(Float, default=0.0)
    wall_time: Mapped[float] = mapped_column(Float, default=0.0)
    status: Mapped[str] = mapped_column(String(20), default="complete")
    full: Mapped[int] = mapped_column(Integer, default=1)

    run: Mapped[OptimizationRun] = relationship(back_populates="trials")


class RunStateRecord(Base):
    """The search state an optimizer keeps for one run (JSON), so an interrupted run can resume (from 0006).

    One row per run, replaced as the run goes; what it holds is the optimizer's own (its
    candidates, scores and step counter), with what the run has spent so far.
    """

    __tablename__ = "em_run_states"

    run_id: Mapped[str] = mapped_column(ForeignKey("em_optimization_runs.id"), primary_key=True)
    optimizer: Mapped[str] = mapped_column(String(100))
    state: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class EvaluationRecord(Base):
    """An evaluation: which data (fingerprint), which metric, the score and per-example results."""

    __tablename__ = "em_evaluations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int | None] = mapped_column(ForeignKey("em_program_versions.id"), nullable=True)
    program_name: Mapped[str] = mapped_column(String(200), default="")
    dataset_fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    metric: Mapped[str] = mapped_column(String(200))
    score: Mapped[float] = mapped_column(Float)
    n: Mapped[int] = mapped_column(Integer)
    errors: Mapped[int] = mapped_column(Integer, default=0)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    results: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ExecutionRecord(Base):
    """A traced run of a program: inputs, outputs, every predictor call and the span tree (from 0004)."""

    __tablename__ = "em_executions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int | None] = mapped_column(ForeignKey("em_program_versions.id"), nullable=True)
    program_name: Mapped[str] = mapped_column(String(200), default="")
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    outputs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    trace: Mapped[list[Any]] = mapped_column(JSON, default=list)
    spans: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str] = mapped_column(Text, default="")
    latency: Mapped[float] = mapped_column(Float, default=0.0)
    tokens: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class EvalCheckpointRecord(Base):
    """One finished example of an evaluation checkpoint kept in the store."""

    __tablename__ = "em_eval_checkpoints"
    __table_args__ = (UniqueConstraint("checkpoint", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    checkpoint: Mapped[str] = mapped_column(String(200), index=True)
    key: Mapped[str] = mapped_column(String(64))
    record: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class JobRecord(Base):
    """A supervised job of the server: an evaluation or an optimization of a stored program."""

    __tablename__ = "em_jobs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    program: Mapped[str] = mapped_column(String(200), index=True)
    version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(20), default="queued", index=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    trials: Mapped[int] = mapped_column(Integer, default=0)
    best_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str] = mapped_column(Text, default="")
    host: Mapped[str] = mapped_column(String(255), default="")
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    #: The job manager that holds the job (None: a job from before leases; "": released).
    owner: Mapped[str | None] = mapped_column(String(100), nullable=True)
    #: Until when the owner's claim holds; it renews it while the job runs.
    lease_expires: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
