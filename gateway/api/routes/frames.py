"""``GET /v1/analyses/{id}/frames/{i}/image.png``: one original frame, as uploaded (grey PNG).

The web viewer draws the nerve overlay itself (from ``mask.png``) over this image, so it can
toggle the overlay and change its opacity without a round trip. The frame is read from the
stored upload through the file store's cache (:class:`gateway.store.cache.ArrayCache`: one
decode per clip however many frames are asked for at once); unlike the mask routes it is
available as soon as the upload was accepted.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response

from gateway.api.deps import ApiKeyDep, FilesDep, QueryCheckDep, RepoDep, SettingsDep
from gateway.api.openapi import error_responses
from gateway.api.routes.analyses import _frames, _row
from gateway.core.config import Settings
from gateway.core.errors import ApiError
from gateway.store import Analysis, FileStore
from gateway.store.files import png_bytes
from ultramn.data.decoders import DecodeError

router = APIRouter(prefix="/v1/analyses", tags=["analyses"], dependencies=[ApiKeyDep, QueryCheckDep])
_FRAME_ERRORS = error_responses({404: "No such analysis or frame, or its upload is no longer readable"})


def _frame_png(files: FileStore, row: Analysis, settings: Settings, index: int) -> bytes:
    clip = _frames(files, row, settings)
    if not 0 <= index < clip.n_frames:
        raise ApiError(404, "not_found", f"frame {index} does not exist (the clip has {clip.n_frames} frames)")
    return png_bytes(clip.frames[index])


@router.get("/{job_id}/frames/{index}/image.png", summary="One original frame (grey PNG)", response_class=Response, responses=_FRAME_ERRORS)
async def get_frame_png(job_id: str, index: int, repo: RepoDep, files: FilesDep, settings: SettingsDep) -> Response:
    """Frame ``index`` of the upload at its original size, grey levels as decoded."""
    row = _row(repo, job_id)
    if row.n_frames is not None and not 0 <= index < row.n_frames:
        raise ApiError(404, "not_found", f"frame {index} does not exist (the clip has {row.n_frames} frames)")
    try:
        data = await asyncio.to_thread(_frame_png, files, row, settings, index)
    except (DecodeError, OSError):
        raise ApiError(404, "not_found", f"the upload of {job_id} is no longer readable") from None
    return Response(data, media_type="image/png")  # Cache-Control: no-store (gateway.core.headers), as every /v1 answer
