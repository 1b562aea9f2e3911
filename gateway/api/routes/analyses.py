"""``/v1/analyses``: upload a clip, follow the job, read results, masks and overlays.

Every route here needs the API key when ``ULTRAMN_API_KEY`` is set.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import math
import os
import re
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Annotated, Any, Literal

import numpy as np
import numpy.typing as npt
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from sqlalchemy.exc import IntegrityError
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException
from starlette.types import Message, Receive

from gateway.api.deps import ApiKeyDep, FilesDep, JobsDep, QueryCheckDep, RepoDep, SettingsDep, TritonDep, get_state
from gateway.api.openapi import error_responses, multipart_upload
from gateway.api.schemas import AnalysisDetail, AnalysisList, AnalysisSummary, summary
from gateway.core.config import Settings
from gateway.core.errors import ApiError, PayloadTooLargeError, decode_error_to_api
from gateway.store import Analysis, AnalysisRepository, FileStore, JobStatus, ListFilters
from gateway.worker import JobQueue, Outcome, QueueFullError
from ultramn.contract import CONTRACT, PLANES
from ultramn.data.decoders import DecodedClip, DecodeError, decode
from ultramn.measure.followup import PATIENT_PATTERN, SIDES, parse_side, parse_visit, patient_problem
from ultramn.measure.spacing import MAX_PIXEL_SPACING_MM, MIN_PIXEL_SPACING_MM, pixel_spacing_problem
from ultramn.windowing import window_starts

log = logging.getLogger("gateway.api")
router = APIRouter(prefix="/v1/analyses", tags=["analyses"], dependencies=[ApiKeyDep, QueryCheckDep])

#: ``responses=`` per kind of route (OpenAPI); every ``/v1`` route adds 401/403 (API key).
UPLOAD_ERRORS = error_responses(
    {
        413: "Upload too large",
        415: "Unsupported or mislabelled file type",
        422: "Corrupt or undecodable file, or invalid fields",
        429: "Queue full (queue_full), or too many uploads being received at once (uploads_busy); Retry-After",
        500: "wait=true and the analysis failed (the error names why; the job is kept as failed)",
        503: "Triton unavailable (Retry-After; the job is kept and completes later), or the upload cannot be stored now",
        507: "No room on the server to store the upload",
    }
)
ANALYSIS_ERRORS = error_responses({404: "No such analysis"})
RESULT_ERRORS = error_responses({404: "No such analysis or frame", 409: "Not finished: masks exist once the analysis succeeded"})
LIST_ERRORS = error_responses({422: "Invalid query parameter"})

#: The ``pixel_spacing_mm`` form field of the upload routes (OpenAPI schema).
SPACING_FIELD: dict[str, Any] = {
    "type": "number",
    "minimum": MIN_PIXEL_SPACING_MM,
    "maximum": MAX_PIXEL_SPACING_MM,
    "description": "mm per pixel (overrides the file's)",
}
#: The form fields of ``POST /v1/analyses``; any other field is a 422.
_UPLOAD_FIELDS: dict[str, dict[str, Any]] = {
    "file": {"type": "string", "format": "binary", "description": "MP4/AVI/MOV, DICOM, NPY/NPZ, TIFF, GIF, PNG/JPEG/BMP, ZIP of frames"},
    "pixel_spacing_mm": SPACING_FIELD,
    "stride": {"type": "integer", "minimum": 1, "maximum": CONTRACT.window_frames, "description": "frames between windows"},
    "wait": {"type": "boolean", "default": False, "description": "answer with the result when the clip is short"},
    "patient": {
        "type": "string",
        "pattern": PATIENT_PATTERN.pattern,
        "description": "a pseudonym for the patient (not a name or record number), for follow-up across visits",
    },
    "side": {"type": "string", "enum": list(SIDES), "description": "the side scanned"},
    "visit": {"type": "string", "format": "date", "description": "the visit's date (default: today, UTC, when patient is given)"},
}
_EXT = re.compile(r"^\.[a-z0-9]{1,10}$")
#: ``Idempotency-Key`` request header: 1 to 64 visible ASCII characters (a UUID or a hex digest fits).
IDEMPOTENCY_HEADER = "Idempotency-Key"
_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,64}")


def idempotency_parameter(description: str) -> dict[str, Any]:
    """The OpenAPI header parameter ``Idempotency-Key`` with ``description``."""
    return {
        "name": IDEMPOTENCY_HEADER,
        "in": "header",
        "required": False,
        "schema": {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[\\x21-\\x7e]+$"},
        "description": description,
    }


_UPLOAD_SCHEMA = {
    **multipart_upload(_UPLOAD_FIELDS),
    "parameters": [
        idempotency_parameter(
            "retrying an upload whose answer was lost with the same key returns the job the server "
            "accepted (200 finished, 202 queued/running, header Idempotent-Replayed: true) instead of a new one; "
            "a failed or deleted job frees its key"
        )
    ],
}


# --------------------------------------------------------------------------- upload helpers


def _limited(receive: Receive, limit: int) -> Receive:
    """``receive`` that raises 413 once more than ``limit`` body bytes arrived."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise PayloadTooLargeError(limit)
        return message

    return wrapped


def _parse_float(name: str, raw: Any) -> float | None:
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ApiError(422, "validation_error", f"{name}: not a number: {str(raw)[:40]!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise ApiError(422, "validation_error", f"{name}: must be a positive number")
    return value


def _parse_spacing(raw: Any) -> float | None:
    """The ``pixel_spacing_mm`` field: ``None`` when absent, else a plausible pixel size in mm."""
    value = _parse_float("pixel_spacing_mm", raw)
    if value is not None and (problem := pixel_spacing_problem(value)):
        raise ApiError(422, "validation_error", f"pixel_spacing_mm: {problem}")
    return value


@dataclass(frozen=True)
class FollowUpFields:
    """The ``patient``, ``side`` and ``visit`` form fields (all optional; ``visit`` defaults to
    today, UTC, when a patient is given)."""

    patient: str | None = None
    side: str | None = None
    visit: str | None = None


def _parse_follow_up(form: Mapping[str, Any]) -> FollowUpFields:
    """The follow-up fields of an upload, checked (422 naming the field)."""
    patient = _text_field(form.get("patient"))
    if patient is not None and (problem := patient_problem(patient)):
        raise ApiError(422, "validation_error", f"patient: {problem}")
    side = _text_field(form.get("side"))
    raw_visit = _text_field(form.get("visit"))
    try:
        side = parse_side(side) if side is not None else None
    except ValueError as exc:
        raise ApiError(422, "validation_error", f"side: {exc}") from None
    try:
        visit = parse_visit(raw_visit).isoformat() if raw_visit is not None else None
    except ValueError as exc:
        raise ApiError(422, "validation_error", f"visit: {exc}") from None
    if visit is None and patient is not None:
        visit = datetime.now(UTC).date().isoformat()
    return FollowUpFields(patient=patient, side=side, visit=visit)


def _text_field(raw: Any) -> str | None:
    """A text form field, stripped; ``None`` when absent or empty."""
    return None if raw is None else str(raw).strip() or None


def _check_fields(form: FormData, known: Sequence[str]) -> None:
    """422 for a form field the route does not know (a misspelt ``pixel_spacing`` must not be ignored) or one given twice."""
    unknown = sorted({key for key in form if key not in known})
    if unknown:
        raise ApiError(422, "validation_error", f"unknown form field(s) {', '.join(map(repr, unknown))}; the fields are {', '.join(known)}")
    repeated = sorted({key for key in form if len(form.getlist(key)) > 1})
    if repeated:  # which value would count? say so rather than pick one
        raise ApiError(422, "validation_error", f"form field(s) {', '.join(map(repr, repeated))} given more than once")


def _parse_int(name: str, raw: Any, low: int, high: int) -> int | None:
    if raw is None or raw == "":
        return None
    try:
        value = int(str(raw))
    except ValueError:
        raise ApiError(422, "validation_error", f"{name}: not an integer: {str(raw)[:40]!r}") from None
    if not low <= value <= high:
        raise ApiError(422, "validation_error", f"{name}: must be in [{low}, {high}]")
    return value


def _parse_bool(name: str, raw: Any) -> bool:
    if raw is None or raw == "":
        return False
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ApiError(422, "validation_error", f"{name}: not a boolean: {str(raw)[:40]!r}")


async def read_upload_form(request: Request, settings: Settings) -> FormData:
    """The multipart form of an upload: one file at most, ``max_upload_bytes`` at most (413).

    Starlette reports a malformed body (or a second file) as a 400 of its own; here it is a
    422 ``validation_error`` like every other bad field.
    """
    body = Request(request.scope, receive=_limited(request.receive, settings.max_upload_bytes))
    try:
        return await body.form(max_files=1, max_fields=16)
    except MultiPartException as exc:
        raise ApiError(422, "validation_error", f"invalid multipart body: {exc.message}") from exc
    except StarletteHTTPException as exc:
        raise ApiError(422, "validation_error", f"invalid multipart body: {exc.detail}") from exc
    except OSError as exc:  # the parser spools a large file part to a temporary file
        raise storage_api_error(exc) from exc


_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]")


def _display_name(filename: str | None, ext: str) -> str:
    """The client's file name, for the decoder's messages to that client: its printable last
    path part (stem at most 80 characters) with ``ext``, the checked extension the decoder
    cross-checks the content against (``upload<ext>`` when nothing printable is left)."""
    base = _UNPRINTABLE.sub("", (filename or "").replace("\\", "/").rsplit("/", 1)[-1]).strip()
    stem = base[: len(base) - len(Path(base).suffix)] if Path(base).suffix else base
    return f"{stem[:80] or 'upload'}{ext}"


def storage_api_error(exc: OSError, one: str = "this upload", kind: str = "uploads") -> ApiError:
    """The answer to a file the server could not store (``one``: this one; ``kind``: such
    files): 507 when the disk is full (or a size limit is hit), else 503 (both with a
    message; the cause is logged, not sent)."""
    log.error(f"storing {one} failed", extra={"error": exc.strerror or str(exc)})
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return ApiError(507, "insufficient_storage", f"the server has no room to store {one}; retry later")
    return ApiError(503, "storage_error", f"the server cannot store {kind} right now; retry later")


def _copy(src: IO[bytes], dest: Path) -> int:
    """Write the upload to ``dest``; its size. Storage failures: :func:`storage_api_error`;
    a partial file is never left behind."""
    try:
        with open(dest, "wb") as out:
            shutil.copyfileobj(src, out, length=1 << 20)
        return dest.stat().st_size
    except OSError as exc:
        dest.unlink(missing_ok=True)
        raise storage_api_error(exc) from exc
    except BaseException:
        dest.unlink(missing_ok=True)
        raise


def idempotency_key(request: Request) -> str | None:
    """The request's ``Idempotency-Key`` (``None`` when absent); 422 when it is malformed."""
    raw = request.headers.get(IDEMPOTENCY_HEADER)
    if raw is None:
        return None
    if not _IDEMPOTENCY_KEY.fullmatch(raw):
        raise ApiError(422, "validation_error", f"{IDEMPOTENCY_HEADER}: 1 to 64 visible ASCII characters, no spaces")
    return raw


def _replay(repo: AnalysisRepository, jobs: JobQueue, key: str) -> JSONResponse | None:
    """The answer to a retried upload: the job created earlier with ``key`` (200 when it
    succeeded, 202 while it is queued or running), or ``None`` when there is none to give
    back. A failed job gives its key up, so the retry is analysed afresh (the failed job
    stays listed)."""
    row = repo.by_idempotency_key(key)
    if row is None:
        return None
    if row.status == JobStatus.FAILED.value:
        repo.update(row.id, idempotency_key=None)
        return None
    code = 200 if row.status == JobStatus.SUCCEEDED.value else 202
    headers = {"Location": f"/v1/analyses/{row.id}", "Idempotent-Replayed": "true"}
    return JSONResponse(_detail(row, jobs), status_code=code, headers=headers)


async def drain(request: Request) -> None:
    """Read and drop the request body: a replay answers without storing the upload again."""
    async for _ in request.stream():
        pass


#: The status a ``wait=true`` request gets (in the metrics: nobody reads it) when its client hung up while waiting.
CLIENT_CLOSED_REQUEST = 499
#: How often a ``wait=true`` request checks that its client is still there.
DISCONNECT_POLL_S = 0.5


async def _wait_while_connected(
    request: Request, jobs: JobQueue, job_id: str, timeout: float, fut: asyncio.Future[Outcome]
) -> Outcome | None:
    """:meth:`JobQueue.wait`, given up (``None``) as soon as the client has disconnected."""
    waiting = asyncio.ensure_future(jobs.wait(job_id, timeout, fut))
    try:
        while True:
            done, _ = await asyncio.wait({waiting}, timeout=DISCONNECT_POLL_S)
            if done:
                return waiting.result()
            if await request.is_disconnected():
                return None
    finally:
        if not waiting.done():
            waiting.cancel()


def _retry_after(settings: Settings) -> dict[str, str]:
    return {"Retry-After": str(settings.retry_after_s)}


def _detail(row: Analysis, jobs: JobQueue, include_frames: bool = True) -> dict[str, Any]:
    live = jobs.progress.get(row.id)
    data = summary(row, (live.done, live.total) if live and live.total else None)
    result = row.result
    if result is not None and not include_frames:
        result = {k: v for k, v in result.items() if k != "frames"}
    data["result"] = result
    return AnalysisDetail.model_validate(data).model_dump(mode="json")


# --------------------------------------------------------------------------- routes


def queued_row(
    job_id: str,
    ext: str,
    size: int,
    clip: DecodedClip,
    spacing: float | None,
    stride: int | None,
    follow: FollowUpFields,
    settings: Settings,
    key: str | None = None,
) -> Analysis:
    """The row of a stored upload about to be queued (``spacing``, ``stride``: the request's
    options, ``None`` for the defaults)."""
    n_windows = len(window_starts(clip.n_frames, CONTRACT.window_frames, stride or settings.default_stride))
    return Analysis(
        id=job_id,
        status=JobStatus.QUEUED.value,
        upload_ext=ext,
        upload_bytes=size,
        format=clip.format,
        n_frames=clip.n_frames,
        windows_total=n_windows,
        options={"pixel_spacing_mm": spacing, "stride": stride},
        idempotency_key=key,
        patient=follow.patient,
        side=follow.side,
        visit=follow.visit,
    )


def store_recorded_clip(
    clip: DecodedClip, follow: FollowUpFields, repo: AnalysisRepository, files: FileStore, jobs: JobQueue, settings: Settings
) -> Analysis:
    """Store a clip the gateway itself holds (a recorded live stream) as an upload ``.npz``
    (``frames``, ``fps``, ``pixel_spacing_mm``), write its row and queue it, as an upload is:
    :class:`QueueFullError` (nothing kept) when the queue is full."""
    job_id = uuid.uuid4().hex
    path = files.upload_path(job_id, ".npz")
    tmp = files.staging_path(job_id)
    arrays: dict[str, Any] = {"frames": clip.frames}
    if clip.fps:
        arrays["fps"] = np.float32(clip.fps)
    if clip.pixel_spacing_mm:
        arrays["pixel_spacing_mm"] = np.float32(clip.pixel_spacing_mm)
    with open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    os.replace(tmp, path)
    row = repo.create(queued_row(job_id, ".npz", path.stat().st_size, clip, clip.pixel_spacing_mm, None, follow, settings))
    try:
        jobs.submit(job_id, clip, 0.0)
    except QueueFullError:
        repo.delete(job_id)
        files.delete(job_id, ".npz")
        raise
    return row


@router.post(
    "",
    status_code=202,
    summary="Upload a clip for analysis",
    openapi_extra=_UPLOAD_SCHEMA,
    response_model=AnalysisDetail,
    responses={
        200: {
            "model": AnalysisDetail,
            "description": "wait=true and the clip was short, or an Idempotency-Key retry of a finished analysis: the finished analysis",
        },
        **UPLOAD_ERRORS,
    },
)
async def create_analysis(
    request: Request, settings: SettingsDep, repo: RepoDep, files: FilesDep, jobs: JobsDep, triton: TritonDep
) -> Response:
    """Store the upload, check that it decodes, queue the job.

    202 with the job (and ``Location``), or 200 with the result when ``wait=true`` and the
    clip has at most ``ULTRAMN_WAIT_MAX_FRAMES`` frames. With an ``Idempotency-Key`` header,
    a retry of an upload the server accepted gets that job back instead of a new one.
    """
    key = idempotency_key(request)
    if key is not None and (earlier := _replay(repo, jobs, key)) is not None:
        await drain(request)
        return earlier
    if not jobs.has_room():
        raise ApiError(429, "queue_full", f"{jobs.upload_depth} analyses are queued; retry later", headers=_retry_after(settings))
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > settings.max_upload_bytes:
        raise PayloadTooLargeError(settings.max_upload_bytes)
    declared = int(length) if length and length.isdigit() else None
    with get_state(request).uploads.hold(declared):  # 429 / 507 before the body is read
        job_id = uuid.uuid4().hex
        form = await read_upload_form(request, settings)
        staging = files.staging_path(job_id)
        try:
            _check_fields(form, list(_UPLOAD_FIELDS))
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise ApiError(422, "validation_error", "file: a multipart file field named 'file' is required")
            spacing = _parse_spacing(form.get("pixel_spacing_mm"))
            stride = _parse_int("stride", form.get("stride"), 1, CONTRACT.window_frames)
            wait = _parse_bool("wait", form.get("wait"))
            follow = _parse_follow_up(form)
            ext = Path(upload.filename or "").suffix.lower()
            ext = ext if _EXT.match(ext) else ""
            client_name = _display_name(upload.filename, ext)
            size = await asyncio.to_thread(_copy, upload.file, staging)
        finally:
            await form.close()
        t0 = time.perf_counter()
        try:
            # errors answer the uploader only, so they name the uploader's file (never stored or logged)
            async with get_state(request).decode_slots:
                clip = await asyncio.to_thread(decode, staging, client_name, settings.decode_limits)
        except DecodeError as exc:
            staging.unlink(missing_ok=True)
            raise decode_error_to_api(exc) from exc
        except BaseException:
            staging.unlink(missing_ok=True)
            raise
        decode_ms = (time.perf_counter() - t0) * 1000.0
        os.replace(staging, files.upload_path(job_id, ext))
    try:
        row = repo.create(queued_row(job_id, ext, size, clip, spacing, stride, follow, settings, key))
    except IntegrityError:  # the same key arrived twice at once and the other upload won
        files.delete(job_id, ext)
        if key is not None and (earlier := _replay(repo, jobs, key)) is not None:
            return earlier
        raise
    short = wait and clip.n_frames <= settings.wait_max_frames
    fut = jobs.watch(job_id) if short else None
    try:
        jobs.submit(job_id, clip, decode_ms)
    except QueueFullError as exc:
        if fut is not None:
            jobs.unwatch(job_id, fut)
        repo.delete(job_id)
        files.delete(job_id, ext)
        raise ApiError(429, "queue_full", str(exc), headers=_retry_after(settings)) from exc
    location = {"Location": f"/v1/analyses/{job_id}"}
    if fut is not None:
        ready = await triton.is_ready()
        outcome = await _wait_while_connected(request, jobs, job_id, settings.wait_timeout_s, fut) if ready else Outcome.TRITON_UNAVAILABLE
        jobs.unwatch(job_id, fut)
        if outcome is None:  # the client hung up: nobody reads an answer; the job goes on
            return Response(status_code=CLIENT_CLOSED_REQUEST)
        if outcome is Outcome.DELETED:
            raise ApiError(404, "not_found", f"analysis {job_id} was deleted while it ran")
        if outcome is Outcome.TRITON_UNAVAILABLE:
            raise ApiError(
                503,
                "triton_unavailable",
                "the inference server is unavailable; the analysis is queued and will complete when it is back",
                headers={**_retry_after(settings), **location},
                extra={"id": job_id},
            )
        done = repo.get(job_id)
        if outcome is Outcome.SUCCEEDED and done is not None:
            return JSONResponse(_detail(done, jobs), status_code=200, headers=location)
        if outcome is Outcome.FAILED and done is not None:
            code, message = done.error_code or "analysis_failed", done.error_message or "analysis failed"
            raise ApiError(500, code, message, headers=location, extra={"id": job_id})
    current = repo.get(job_id) or row
    return JSONResponse(_detail(current, jobs), status_code=202, headers=location)


@router.get("", summary="List analyses", response_model=AnalysisList, responses=LIST_ERRORS)
async def list_analyses(
    repo: RepoDep,
    jobs: JobsDep,
    plane: Annotated[Literal["TW", "TF", "LW", "LF"] | None, Query(description=f"one of {', '.join(PLANES)}")] = None,
    status: Annotated[Literal["queued", "running", "succeeded", "failed"] | None, Query()] = None,
    created_after: Annotated[datetime | None, Query(description="ISO 8601, inclusive")] = None,
    created_before: Annotated[datetime | None, Query(description="ISO 8601, exclusive")] = None,
    patient: Annotated[str | None, Query(max_length=64, description="the patient's pseudonym, as uploaded")] = None,
    side: Annotated[Literal["L", "R"] | None, Query()] = None,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    """Newest first, with cursor pagination."""
    filters = ListFilters(plane, status, created_after, created_before, patient=patient, side=side)
    page = await asyncio.to_thread(repo.list, filters, limit, cursor)
    items = []
    for row in page.items:
        live = jobs.progress.get(row.id)
        items.append(AnalysisSummary.model_validate(summary(row, (live.done, live.total) if live and live.total else None)))
    return {"items": items, "next_cursor": page.next_cursor}


def _row(repo: RepoDep, job_id: str) -> Analysis:
    row = repo.get(job_id)
    if row is None:
        raise ApiError(404, "not_found", f"no analysis {job_id}")
    return row


@router.get("/{job_id}", summary="Status, progress and result", response_model=AnalysisDetail, responses=ANALYSIS_ERRORS)
async def get_analysis(
    job_id: str, repo: RepoDep, jobs: JobsDep, include_frames: Annotated[bool, Query(description="include the per-frame list")] = True
) -> JSONResponse:
    """The job's status, progress (windows done/total) and, once succeeded, the result."""
    return JSONResponse(_detail(_row(repo, job_id), jobs, include_frames))


@router.delete("/{job_id}", status_code=204, summary="Delete an analysis and its files", responses=ANALYSIS_ERRORS)
async def delete_analysis(job_id: str, repo: RepoDep, files: FilesDep, jobs: JobsDep) -> Response:
    """Remove the row, the upload and the masks (a running job is discarded when it ends)."""
    row = _row(repo, job_id)
    repo.delete(job_id)
    jobs.forget(job_id)
    files.delete(job_id, row.upload_ext)
    return Response(status_code=204)


def _finished(repo: RepoDep, job_id: str, frame: int | None = None) -> Analysis:
    """The analysis if it succeeded: 404 for an unknown id or a ``frame`` outside the clip, else 409 while it is not done."""
    row = _row(repo, job_id)
    if frame is not None and row.n_frames is not None and not 0 <= frame < row.n_frames:
        raise ApiError(404, "not_found", f"frame {frame} does not exist (the clip has {row.n_frames} frames)")
    if row.status != JobStatus.SUCCEEDED.value:
        raise ApiError(409, "not_ready", f"analysis {job_id} is {row.status}; masks exist once it succeeded")
    return row


@router.get(
    "/{job_id}/masks.npz", summary="All masks (compressed NumPy archive)", response_class=StreamingResponse, responses=RESULT_ERRORS
)
async def get_masks_npz(job_id: str, repo: RepoDep, files: FilesDep) -> StreamingResponse:
    """``masks`` uint8 [N,H,W] 0/1 (original geometry), ``plane_probs`` float32 [N,4], ``roi`` [x0,y0,x1,y1].

    The archive is opened here and streamed from the open file: deleting the analysis meanwhile
    cannot turn the answer into a 500 or a cut-off 200 (the open file outlives the delete).
    """
    _finished(repo, job_id)
    return await _stream_file(files.mask_path(job_id), "application/octet-stream", f"{job_id}-masks.npz", f"masks of {job_id}")


@router.get("/{job_id}/frames.csv", summary="Per-frame measurements (CSV)", response_class=Response, responses=RESULT_ERRORS)
async def get_frames_csv(job_id: str, repo: RepoDep) -> Response:
    """One row per frame: time, plane and its probabilities, nerve present, CSA (px², mm²),
    centroid, box, perimeter, shape, at_side, off_track (``ultramn.measure.frame_table``)."""
    from ultramn.measure.frame_table import frame_table_csv

    row = _finished(repo, job_id)
    headers = {"Content-Disposition": f'attachment; filename="{job_id}-frames.csv"'}
    return Response(frame_table_csv(row.result or {}), media_type="text/csv; charset=utf-8", headers=headers)


async def _stream_file(path: Path, media_type: str, filename: str, what: str) -> StreamingResponse:
    """``path`` as an attachment named ``filename``, opened now and streamed from the open
    file (a delete meanwhile cannot cut the answer short); 404 naming ``what`` when absent."""
    try:
        fh = await asyncio.to_thread(open, path, "rb")
    except FileNotFoundError:
        raise ApiError(404, "not_found", f"{what} are missing") from None
    size = os.fstat(fh.fileno()).st_size

    async def chunks() -> AsyncIterator[bytes]:
        try:
            while chunk := await asyncio.to_thread(fh.read, 1 << 20):
                yield chunk
        finally:
            fh.close()

    headers = {"Content-Length": str(size), "Content-Disposition": f'attachment; filename="{filename}"'}
    return StreamingResponse(chunks(), media_type=media_type, headers=headers)


@router.get(
    "/{job_id}/overlay.mp4",
    summary="The whole clip with the nerve tinted and outlined (H.264 MP4)",
    response_class=StreamingResponse,
    responses=RESULT_ERRORS,
)
async def get_overlay_mp4(job_id: str, repo: RepoDep, files: FilesDep, settings: SettingsDep) -> StreamingResponse:
    """Every frame as ``overlay.png`` draws it, with a caption (frame, plane, CSA), at the
    clip's frame rate (25 frames/s when the file gives none); H.264 ``yuv420p``, an odd width
    or height padded by one pixel. Made on the first request (seconds for a long clip) and kept
    until the analysis is deleted or its masks change."""
    row = _finished(repo, job_id)
    try:
        path = await asyncio.to_thread(files.overlay_video, row.id, row.upload_ext, settings.decode_limits, row.result)
    except FileNotFoundError:
        raise ApiError(404, "not_found", f"the masks or the upload of {job_id} are missing") from None
    except DecodeError:
        raise ApiError(404, "not_found", f"the upload of {job_id} is no longer readable") from None
    except OSError as exc:
        raise storage_api_error(exc, "the overlay video", "overlay videos") from exc
    return await _stream_file(path, "video/mp4", f"{job_id}-overlay.mp4", f"the overlay video of {job_id}")


def _mask(files: FileStore, job_id: str, index: int) -> npt.NDArray[np.uint8]:
    try:
        masks = files.load_masks(job_id)
    except FileNotFoundError:
        raise ApiError(404, "not_found", f"masks of {job_id} are missing") from None
    if not 0 <= index < masks.shape[0]:
        raise ApiError(404, "not_found", f"frame {index} does not exist (the clip has {masks.shape[0]} frames)")
    return masks[index]


@router.get("/{job_id}/frames/{index}/mask.png", summary="One frame's mask (PNG)", response_class=Response, responses=RESULT_ERRORS)
async def get_mask_png(job_id: str, index: int, repo: RepoDep, files: FilesDep) -> Response:
    """Binary mask at the original frame size: nerve 255, background 0."""
    from gateway.store.files import mask_png

    _finished(repo, job_id, index)
    mask = await asyncio.to_thread(_mask, files, job_id, index)
    return Response(await asyncio.to_thread(mask_png, mask), media_type="image/png")


def _frames(files: FileStore, row: Analysis, settings: Settings) -> DecodedClip:
    """The analysis's upload, decoded (through the file store's cache)."""
    return files.load_clip(row.id, row.upload_ext, settings.decode_limits)


@router.get(
    "/{job_id}/frames/{index}/overlay.png",
    summary="One frame with the nerve tinted and outlined",
    response_class=Response,
    responses=RESULT_ERRORS,
)
async def get_overlay_png(job_id: str, index: int, repo: RepoDep, files: FilesDep, settings: SettingsDep) -> Response:
    """The original frame (RGB) with the nerve tinted yellow and its contour in red."""
    from gateway.store.files import overlay_png

    row = _finished(repo, job_id, index)
    mask = await asyncio.to_thread(_mask, files, job_id, index)
    try:
        clip = await asyncio.to_thread(_frames, files, row, settings)
    except (DecodeError, OSError):
        raise ApiError(404, "not_found", f"the upload of {job_id} is no longer readable") from None
    return Response(await asyncio.to_thread(overlay_png, clip.frames[index], mask), media_type="image/png")
