"""``/v1/batches``: upload an archive (ZIP/TAR) of clips; each clip becomes an analysis of one batch.

The archive is checked and extracted safely (:mod:`ultramn.data.archives`: no path
traversal, no links out, limits on members, bytes and compression ratio) and its clips are
found like ``ultramn batch`` finds them (:func:`ultramn.batch.discover.discover`). Every clip
is stored as an upload and gets its ``queued`` analysis row (with ``batch_id``) in one
transaction *before* anything is queued, so a restart loses nothing (the job queue resumes
queued rows). A feeder task hands the clips to the job queue as it has room, so a batch
larger than ``ULTRAMN_QUEUE_MAX`` is accepted and drains at the workers' pace; a bad clip
fails on its own (its analysis has the error), the others go on.

As for analyses, no names are stored: the POST answer lists each clip's archive path once,
for the client to map; later reads give the clip's ``index`` in that list.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import IntegrityError
from starlette.datastructures import UploadFile

from gateway.api.deps import ApiKeyDep, FilesDep, JobsDep, QueryCheckDep, RepoDep, SettingsDep, get_state
from gateway.api.openapi import error_responses, multipart_upload
from gateway.api.routes.analyses import (
    _EXT,
    LIST_ERRORS,
    SPACING_FIELD,
    _check_fields,
    _copy,
    _parse_int,
    _parse_spacing,
    drain,
    idempotency_key,
    idempotency_parameter,
    read_upload_form,
    storage_api_error,
)
from gateway.api.schemas import ErrorInfo, aware
from gateway.core.config import Settings
from gateway.core.errors import ApiError, PayloadTooLargeError
from gateway.store import Analysis, AnalysisRepository, Batch, FileStore, JobStatus
from gateway.worker import JobQueue, QueueFullError
from ultramn.batch.discover import Clip, discover
from ultramn.contract import CONTRACT
from ultramn.data.archives import ArchiveError, ArchiveLimitError, ArchiveLimits, UnsafeArchiveError, archive_kind, is_npz
from ultramn.data.decoders import SNIFF_BYTES, DecodeError, sniff_format

router = APIRouter(prefix="/v1/batches", tags=["batches"], dependencies=[ApiKeyDep, QueryCheckDep])

#: How often the feeder looks for room in the job queue.
FEED_POLL_S = 0.1

#: The ``counts`` key of a batch's clips whose analyses were deleted (they count as finished).
DELETED = "deleted"
_feeders: set[asyncio.Task[None]] = set()

_UPLOAD_ERRORS = error_responses(
    {
        413: "Upload too large",
        415: "Not a ZIP or TAR archive (one clip goes to POST /v1/analyses)",
        422: "Unsafe archive (path traversal, link out), limits exceeded (members, size, zip bomb), no clips, or invalid fields",
        429: "Too many uploads being received at once (uploads_busy; Retry-After)",
        503: "The upload cannot be stored right now",
        507: "No room on the server to store the upload",
    }
)
_BATCH_ERRORS = error_responses({404: "No such batch"})

#: The form fields of ``POST /v1/batches``; any other field is a 422.
_UPLOAD_FIELDS: dict[str, dict[str, Any]] = {
    "file": {"type": "string", "format": "binary", "description": "ZIP or TAR(.gz/.bz2/.xz) of clips"},
    "pixel_spacing_mm": {**SPACING_FIELD, "description": "mm per pixel for every clip (overrides the files')"},
    "stride": {"type": "integer", "minimum": 1, "maximum": CONTRACT.window_frames},
}
_UPLOAD_SCHEMA = {
    **multipart_upload(_UPLOAD_FIELDS),
    "parameters": [
        idempotency_parameter(
            "retrying an archive upload whose answer was lost with the same key returns the batch the server "
            "accepted (200 done, 202 otherwise, header Idempotent-Replayed: true; clip names are not stored, so "
            "the replay lists clips by index only) instead of a second batch"
        )
    ],
}


# --------------------------------------------------------------------------- schemas


class BatchClip(BaseModel):
    """One clip of a batch: its analysis id and state (``name`` only in the POST answer)."""

    index: int
    id: str
    name: str | None = None
    status: str
    plane: str | None = None
    plane_confidence: float | None = None
    error: ErrorInfo | None = None
    links: dict[str, str]


class BatchProgress(BaseModel):
    """Clips finished (succeeded, failed or deleted) of the clips the batch was made with."""

    done: int
    total: int
    fraction: float | None


class BatchSummary(BaseModel):
    """A batch as listed: overall status (``queued`` / ``running`` / ``done``), counts per status, progress."""

    id: str
    created_at: datetime
    status: str = Field(description="queued | running | done")
    n_clips: int
    n_skipped: int = Field(description="archive files that were not clips")
    counts: dict[str, int] = Field(description="clips per status: queued, running, succeeded, failed, deleted (analysis deleted)")
    progress: BatchProgress
    links: dict[str, str]


class BatchDetail(BatchSummary):
    """A batch and its clips in archive order."""

    clips: list[BatchClip]


class BatchList(BaseModel):
    """A page of batches, newest first."""

    items: list[BatchSummary]
    next_cursor: str | None = None


def _clip_view(row: Analysis, name: str | None = None) -> dict[str, Any]:
    error = {"code": row.error_code, "message": row.error_message or ""} if row.error_code else None
    return {
        "index": row.batch_index if row.batch_index is not None else -1,
        "id": row.id,
        "name": name,
        "status": row.status,
        "plane": row.plane,
        "plane_confidence": row.plane_confidence,
        "error": error,
        "links": {"self": f"/v1/analyses/{row.id}", "masks_npz": f"/v1/analyses/{row.id}/masks.npz"},
    }


def _view(
    batch: Batch, counts_by_status: dict[str, int], rows: Sequence[Analysis] | None = None, names: dict[str, str] | None = None
) -> dict[str, Any]:
    """A batch's JSON from its analyses' status counts (and, for the detail, its rows).

    The total is the clips the batch was made with: a clip whose analysis was deleted counts
    as ``deleted`` and as finished, so progress never goes backwards and a batch whose clips
    were all deleted is ``done`` at 1.0.
    """
    counts = {s.value: 0 for s in JobStatus}
    for status, n in counts_by_status.items():
        counts[status] = counts.get(status, 0) + n
    total = batch.n_clips
    counts[DELETED] = max(0, total - sum(counts.values()))
    done = counts[JobStatus.SUCCEEDED.value] + counts[JobStatus.FAILED.value] + counts[DELETED]
    started = done - counts[DELETED] or counts[JobStatus.RUNNING.value]
    status = "done" if done >= total else ("running" if started else "queued")
    data: dict[str, Any] = {
        "id": batch.id,
        "created_at": aware(batch.created_at),
        "status": status,
        "n_clips": batch.n_clips,
        "n_skipped": batch.n_skipped,
        "counts": counts,
        "progress": {"done": done, "total": total, "fraction": round(done / total, 4) if total else None},
        "links": {"self": f"/v1/batches/{batch.id}"},
    }
    if rows is not None:
        data["clips"] = [_clip_view(row, (names or {}).get(row.id)) for row in rows]
    return data


def _status_counts(rows: Sequence[Analysis]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    return counts


def _detail(repo: AnalysisRepository, batch_id: str, names: dict[str, str] | None = None) -> dict[str, Any] | None:
    """The batch's detail JSON, or ``None`` when there is no such batch (blocking: run it in a thread)."""
    batch = repo.get_batch(batch_id)
    if batch is None:
        return None
    rows = repo.batch_analyses(batch_id)
    return BatchDetail.model_validate(_view(batch, _status_counts(rows), rows, names)).model_dump(mode="json")


# --------------------------------------------------------------------------- ingest


def _archive_limits(settings: Settings) -> ArchiveLimits:
    """A member may be as large as one upload; the whole archive ``max_archive_uploads`` uploads."""
    return ArchiveLimits(
        max_members=settings.max_archive_members,
        max_total_bytes=settings.max_archive_uploads * settings.max_upload_bytes,
        max_member_bytes=settings.max_upload_bytes,
        max_ratio=settings.max_archive_ratio,
    )


def _archive_error(exc: ArchiveError) -> ApiError:
    if isinstance(exc, UnsafeArchiveError):
        return ApiError(422, "unsafe_archive", str(exc))
    if isinstance(exc, ArchiveLimitError):
        return ApiError(422, "limit_exceeded", str(exc))
    return ApiError(422, "corrupt_file", str(exc))


def _sniffed(path: Path) -> str | None:
    try:
        with open(path, "rb") as fh:
            return sniff_format(fh.read(SNIFF_BYTES), path.name)
    except (OSError, DecodeError):
        return None


def _ingest(
    staging: Path,
    workdir: Path,
    batch_id: str,
    files: FileStore,
    repo: AnalysisRepository,
    settings: Settings,
    options: dict[str, Any],
    size: int,
    ext: str,
    key: str | None = None,
) -> tuple[Batch, list[tuple[Clip, Analysis]]]:
    """Extract, find the clips, store each as an upload and write all rows in one transaction (runs in a thread)."""
    try:
        if is_npz(staging) or archive_kind(staging) not in ("zip", "tar"):
            raise ApiError(
                415,
                "unsupported_media_type",
                "the batch upload must be a ZIP or TAR(.gz/.bz2/.xz) archive of clips; one clip (an NPZ too) goes to POST /v1/analyses",
            )
        found = discover(staging, workdir, _archive_limits(settings))
        if not found.clips:
            raise ApiError(422, "no_clips", f"the archive holds no clips ({len(found.skipped)} other files)")
        if len(found.clips) > settings.max_batch_clips:
            limit = settings.max_batch_clips
            message = f"{len(found.clips)} clips exceed the limit of {limit} per batch (ULTRAMN_MAX_BATCH_CLIPS)"
            raise ApiError(422, "limit_exceeded", message)
        pairs: list[tuple[Clip, Analysis]] = []
        for index, clip in enumerate(found.clips):
            job_id = uuid.uuid4().hex
            clip_ext = clip.path.suffix.lower()
            clip_ext = clip_ext if _EXT.match(clip_ext) else ""
            fmt = _sniffed(clip.path)
            dest = files.upload_path(job_id, clip_ext)
            shutil.move(clip.path, dest)
            row = Analysis(
                id=job_id,
                status=JobStatus.QUEUED.value,
                upload_ext=clip_ext,
                upload_bytes=dest.stat().st_size,
                format=fmt,
                options=dict(options),
                batch_id=batch_id,
                batch_index=index,
            )
            pairs.append((clip, row))
        batch = Batch(
            id=batch_id,
            archive_ext=ext,
            archive_bytes=size,
            n_clips=len(pairs),
            n_skipped=len(found.skipped),
            options=options,
            idempotency_key=key,
        )
        try:
            repo.create_batch(batch, [row for _, row in pairs])
        except BaseException:
            for _, row in pairs:
                files.delete(row.id, row.upload_ext)
            raise
        return batch, pairs
    except ArchiveError as exc:
        raise _archive_error(exc) from exc
    except OSError as exc:  # extracting or storing the clips failed on the server's side
        raise storage_api_error(exc) from exc
    finally:
        shutil.rmtree(staging.parent, ignore_errors=True)


def _replay(repo: AnalysisRepository, key: str) -> JSONResponse | None:
    """The answer to a retried archive upload: the batch created earlier with ``key`` (200 when
    done, else 202; clips by index, names are not stored), or ``None`` (blocking: run it in a thread)."""
    batch = repo.batch_by_idempotency_key(key)
    detail = _detail(repo, batch.id) if batch is not None else None
    if detail is None:
        return None
    headers = {"Location": f"/v1/batches/{detail['id']}", "Idempotent-Replayed": "true"}
    return JSONResponse(detail, status_code=200 if detail["status"] == "done" else 202, headers=headers)


async def _feed(jobs: JobQueue, repo: AnalysisRepository, job_ids: list[str]) -> None:
    """Hand the batch's jobs to the queue as it has room (a restart resumes them anyway: they
    are queued rows); a clip whose analysis was deleted meanwhile is skipped."""
    for job_id in job_ids:
        while True:
            if jobs.is_pending(job_id):
                break
            if jobs.has_batch_room():
                if not await asyncio.to_thread(repo.exists, job_id):
                    break
                try:
                    jobs.submit(job_id, batch=True)
                    break
                except QueueFullError:
                    pass
            await asyncio.sleep(FEED_POLL_S)


# --------------------------------------------------------------------------- routes


@router.post(
    "",
    status_code=202,
    summary="Upload an archive of clips as one batch",
    openapi_extra=_UPLOAD_SCHEMA,
    response_model=BatchDetail,
    responses={200: {"model": BatchDetail, "description": "An Idempotency-Key retry of a batch that is done"}, **_UPLOAD_ERRORS},
)
async def create_batch(request: Request, settings: SettingsDep, repo: RepoDep, files: FilesDep, jobs: JobsDep) -> JSONResponse:
    """Store the archive's clips as analyses of one batch and queue them; 202 with the batch and each clip's name and id.

    With an ``Idempotency-Key`` header, a retry of an upload the server accepted gets that batch back.
    """
    key = idempotency_key(request)
    if key is not None and (earlier := await asyncio.to_thread(_replay, repo, key)) is not None:
        await drain(request)
        return earlier
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > settings.max_upload_bytes:
        raise PayloadTooLargeError(settings.max_upload_bytes)
    declared = int(length) if length and length.isdigit() else None
    with get_state(request).uploads.hold(declared):  # 429 / 507 before the body is read; held until extracted
        batch_id = uuid.uuid4().hex
        form = await read_upload_form(request, settings)
        folder = settings.data_dir / "batches" / f".{batch_id}"  # staging + extraction, removed once ingested
        folder.mkdir(parents=True, exist_ok=True)
        try:
            _check_fields(form, list(_UPLOAD_FIELDS))
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise ApiError(422, "validation_error", "file: a multipart file field named 'file' is required")
            options = {
                "pixel_spacing_mm": _parse_spacing(form.get("pixel_spacing_mm")),
                "stride": _parse_int("stride", form.get("stride"), 1, CONTRACT.window_frames),
            }
            suffixes = [x.lower() for x in Path(upload.filename or "").suffixes[-2:] if _EXT.match(x.lower())]
            ext = "".join(suffixes) if suffixes[:1] == [".tar"] else "".join(suffixes[-1:])
            staging = folder / f"archive{ext}"  # error messages name it so; the client's file name is not kept
            size = await asyncio.to_thread(_copy, upload.file, staging)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        finally:
            await form.close()
        try:
            _, pairs = await asyncio.to_thread(_ingest, staging, folder / "work", batch_id, files, repo, settings, options, size, ext, key)
        except IntegrityError:  # the same key arrived twice at once and the other upload won
            if key is not None and (earlier := await asyncio.to_thread(_replay, repo, key)) is not None:
                return earlier
            raise
    _feeders.add(feeder := asyncio.create_task(_feed(jobs, repo, [row.id for _, row in pairs]), name=f"batch-feed-{batch_id}"))
    feeder.add_done_callback(_feeders.discard)
    names = {row.id: clip.name for clip, row in pairs}
    detail = await asyncio.to_thread(_detail, repo, batch_id, names)
    return JSONResponse(detail, status_code=202, headers={"Location": f"/v1/batches/{batch_id}"})


@router.get("", summary="List batches", response_model=BatchList, responses=LIST_ERRORS)
async def list_batches(
    repo: RepoDep,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    """Newest first, with overall status and counts (no clip list), cursor pagination."""

    def page() -> dict[str, Any]:
        batches, next_cursor = repo.list_batches(limit, cursor)
        counts = repo.batch_status_counts([b.id for b in batches])
        return {"items": [BatchSummary.model_validate(_view(b, counts[b.id])) for b in batches], "next_cursor": next_cursor}

    return await asyncio.to_thread(page)


@router.get("/{batch_id}", summary="Overall progress and the clips' analyses", response_model=BatchDetail, responses=_BATCH_ERRORS)
async def get_batch(batch_id: str, repo: RepoDep) -> JSONResponse:
    """Status (``done`` when every clip succeeded, failed or was deleted), counts per status, progress, and each clip's id and status."""
    detail = await asyncio.to_thread(_detail, repo, batch_id)
    if detail is None:
        raise ApiError(404, "not_found", f"no batch {batch_id}")
    return JSONResponse(detail)
