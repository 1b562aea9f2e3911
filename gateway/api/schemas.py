"""Response models of the analyses API (they document the JSON in the OpenAPI schema)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from gateway.store import Analysis


class ErrorInfo(BaseModel):
    """``code`` (stable, machine-readable) and ``message`` (for people)."""

    code: str
    message: str


class ErrorResponse(BaseModel):
    """Every error: ``{"error": {"code", "message"}}``."""

    error: ErrorInfo


class ProgressInfo(BaseModel):
    """Windows sent to Triton and answered, of the total (``None`` before the job started)."""

    windows_done: int = 0
    windows_total: int | None = None
    fraction: float | None = None


class AnalysisSummary(BaseModel):
    """One analysis as listed."""

    id: str
    status: str = Field(description="queued | running | succeeded | failed")
    created_at: datetime
    updated_at: datetime
    format: str | None = None
    n_frames: int | None = None
    plane: str | None = None
    plane_confidence: float | None = None
    attempts: int = 0
    patient: str | None = Field(default=None, description="the uploader's pseudonym for the patient (follow-up)")
    side: str | None = Field(default=None, description="L | R: the side scanned")
    visit: str | None = Field(default=None, description="the visit's date, YYYY-MM-DD")
    progress: ProgressInfo
    error: ErrorInfo | None = None
    links: dict[str, str]


class AnalysisDetail(AnalysisSummary):
    """One analysis with its result (``None`` until it succeeded)."""

    result: dict[str, Any] | None = None


class AnalysisList(BaseModel):
    """A page of analyses, newest first; pass ``next_cursor`` as ``cursor`` for the next page."""

    items: list[AnalysisSummary]
    next_cursor: str | None = None


def aware(value: datetime | None) -> datetime:
    """SQLite gives naive UTC datetimes back: mark them UTC."""
    if value is None:
        return datetime.now(UTC)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def links(job_id: str) -> dict[str, str]:
    """URLs of an analysis and its files (``{i}`` = frame index)."""
    base = f"/v1/analyses/{job_id}"
    return {
        "self": base,
        "masks_npz": f"{base}/masks.npz",
        "mask_png": f"{base}/frames/{{i}}/mask.png",
        "overlay_png": f"{base}/frames/{{i}}/overlay.png",
        "overlay_mp4": f"{base}/overlay.mp4",
        "frames_csv": f"{base}/frames.csv",
    }


def summary(row: Analysis, live: tuple[int, int] | None = None) -> dict[str, Any]:
    """The summary fields of ``row``; ``live`` = (done, total) of a running job."""
    done, total = live if live else (row.windows_done or 0, row.windows_total)
    frac = round(done / total, 4) if total else None
    error = {"code": row.error_code, "message": row.error_message or ""} if row.error_code else None
    return {
        "id": row.id,
        "status": row.status,
        "created_at": aware(row.created_at),
        "updated_at": aware(row.updated_at),
        "format": row.format,
        "n_frames": row.n_frames,
        "plane": row.plane,
        "plane_confidence": row.plane_confidence,
        "attempts": row.attempts,
        "patient": row.patient,
        "side": row.side,
        "visit": row.visit,
        "progress": {"windows_done": done, "windows_total": total, "fraction": frac},
        "error": error,
        "links": links(row.id),
    }
