"""The ``analyses`` table: one row per uploaded clip.

No patient data is stored: not the upload's file name (only its extension), no DICOM
tags. ``result`` holds the full result JSON once the job succeeded.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """Declarative base of the gateway's tables."""


class JobStatus(enum.StrEnum):
    """Life cycle of an analysis: ``queued -> running -> succeeded | failed``.

    A job whose Triton call fails for lack of a server goes back to ``queued``.
    """

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


def utcnow() -> datetime:
    """Timezone-aware now (UTC)."""
    return datetime.now(UTC)


class Analysis(Base):
    """One analysis job and, when done, its result."""

    __tablename__ = "analyses"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED.value)
    upload_ext: Mapped[str] = mapped_column(String(16), default="")
    upload_bytes: Mapped[int] = mapped_column(Integer, default=0)
    format: Mapped[str | None] = mapped_column(String(16))
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    n_frames: Mapped[int | None] = mapped_column(Integer)
    windows_total: Mapped[int | None] = mapped_column(Integer)
    windows_done: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    plane: Mapped[str | None] = mapped_column(String(8))
    plane_confidence: Mapped[float | None] = mapped_column(Float)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    batch_id: Mapped[str | None] = mapped_column(String(32))  # the batch (POST /v1/batches) the clip came in
    batch_index: Mapped[int | None] = mapped_column(Integer)  # its position in that batch
    # the client's Idempotency-Key header: a retried upload with the same key gets this job back
    idempotency_key: Mapped[str | None] = mapped_column(String(64))
    # follow-up across visits (GET /v1/patients/{patient}): the uploader's pseudonym for the
    # patient, the side scanned (L/R) and the visit's date (ISO, YYYY-MM-DD)
    patient: Mapped[str | None] = mapped_column(String(64))
    side: Mapped[str | None] = mapped_column(String(1))
    visit: Mapped[str | None] = mapped_column(String(10))

    __table_args__ = (
        Index("ix_analyses_created", "created_at", "id"),
        Index("ix_analyses_patient", "patient", "visit"),
        Index("ix_analyses_status", "status"),
        Index("ix_analyses_plane", "plane"),
        Index("ix_analyses_batch", "batch_id", "batch_index"),
        Index("ux_analyses_idempotency_key", "idempotency_key", unique=True),
    )


class Batch(Base):
    """One uploaded archive whose clips became analyses (``Analysis.batch_id``).

    Like analyses, no names are kept: not the archive's, not its members' (the POST answer
    lists them once, for the client).
    """

    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    archive_ext: Mapped[str] = mapped_column(String(16), default="")
    archive_bytes: Mapped[int] = mapped_column(Integer, default=0)
    n_clips: Mapped[int] = mapped_column(Integer, default=0)
    n_skipped: Mapped[int] = mapped_column(Integer, default=0)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # the client's Idempotency-Key header: a retried archive upload with the same key gets this batch back
    idempotency_key: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        Index("ix_batches_created", "created_at", "id"),
        Index("ux_batches_idempotency_key", "idempotency_key", unique=True),
    )
