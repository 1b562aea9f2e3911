"""``ultramn batch --triton URL``: analyse clips in-process with the gateway's pipeline, straight on Triton.

No gateway server, no database: :class:`DirectAnalyzer` runs
``decode -> roi -> preprocess -> windows -> inference -> stitch -> postprocess``
(:func:`gateway.pipeline.build_pipeline`, the same stages and settings as the gateway;
``ULTRAMN_*`` variables apply) with one gRPC client to Triton. It lives in ``gateway``
because ``ultramn`` never imports ``gateway``; the CLI imports it only for ``--triton``.
"""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from gateway.core.config import Settings
from gateway.pipeline import ClipContext, PipelineConfig, build_pipeline
from gateway.triton_client import ContractMismatchError, TritonClient, TritonUnavailableError
from ultramn.batch.types import ClipAnalysis, ClipError, ModelId
from ultramn.data.decoders import CorruptFileError, DecodeError, LimitExceededError, UnsupportedFormatError


def _grpc_target(url: str) -> str:
    """``host:port`` from ``grpc://host:port``, ``http://host:port`` or ``host:port``."""
    for prefix in ("grpc://", "http://", "https://"):
        if url.startswith(prefix):
            return url[len(prefix) :].rstrip("/")
    return url.rstrip("/")


def decode_error_code(exc: DecodeError) -> str:
    """The gateway's error code for a decoder error (see docs/api.md)."""
    if isinstance(exc, UnsupportedFormatError):
        return "unsupported_media_type"
    if isinstance(exc, LimitExceededError):
        return "limit_exceeded"
    if isinstance(exc, CorruptFileError):
        return "corrupt_file"
    return "undecodable"


class DirectAnalyzer:
    """An :class:`ultramn.batch.types.Analyzer` on Triton's gRPC endpoint (use :meth:`create`)."""

    def __init__(self, triton: TritonClient, settings: Settings, pixel_spacing_mm: float | None, stride: int | None) -> None:
        self.triton = triton
        self.settings = settings
        self.pixel_spacing_mm = pixel_spacing_mm
        self.stride = stride
        self.pipeline = build_pipeline(PipelineConfig.from_settings(settings, private_names=False), triton)

    @classmethod
    async def create(
        cls, triton_url: str, *, pixel_spacing_mm: float | None = None, stride: int | None = None, repository: Path | None = None
    ) -> DirectAnalyzer:
        """Connect to Triton and check that the model is ready and matches the contract (``repository``:
        the model repository it serves, to name the weights; default ``ULTRAMN_MODEL_REPOSITORY``)."""
        settings = Settings(triton_url=_grpc_target(triton_url))
        if repository is not None:
            settings = settings.model_copy(update={"model_repository": repository})
        client = TritonClient.from_settings(settings)
        try:
            await client.start()
            if not await client.is_ready():
                raise TritonUnavailableError(f"Triton at {settings.triton_url} is not ready (model {settings.model_name!r})")
            await client.ensure_checked()
        except BaseException:
            await client.close()
            raise
        return cls(client, settings, pixel_spacing_mm, stride)

    @property
    def model(self) -> ModelId | None:
        """The model Triton serves (name and version, learnt by :meth:`create`'s check), as results name it."""
        return ModelId.of(self.triton.model_identity())

    async def unavailable(self) -> str | None:
        """Why Triton cannot analyse now (the server or the model is not ready), or ``None``."""
        if await self.triton.is_ready():
            return None
        return f"Triton at {self.settings.triton_url} is not ready (model {self.settings.model_name!r})"

    async def aclose(self) -> None:
        """Close the gRPC channel."""
        await self.triton.close()

    async def analyze(self, path: Path, name: str, key: str | None = None, fields: Mapping[str, str] | None = None) -> ClipAnalysis:
        """Run the pipeline on one clip file; decoder and Triton errors become :class:`ClipError`.

        ``key`` and ``fields`` are not used: nothing here outlives the call, so there is no
        earlier job to get back and no store to keep a patient in (``followup.json`` has them).
        """
        ctx = ClipContext(
            job_id=uuid.uuid4().hex, source=path, filename=path.name, pixel_spacing_mm=self.pixel_spacing_mm, stride=self.stride
        )
        try:
            await self.pipeline.run(ctx)
        except DecodeError as exc:
            raise ClipError(decode_error_code(exc), str(exc)) from exc
        except TritonUnavailableError as exc:
            raise ClipError("triton_unavailable", str(exc)) from exc
        except ContractMismatchError as exc:
            raise ClipError("contract_mismatch", str(exc)) from exc
        except Exception as exc:
            raise ClipError("analysis_failed", f"{type(exc).__name__}: {exc}"[:500]) from exc
        assert ctx.result is not None and ctx.masks is not None and ctx.frame_planes is not None and ctx.roi is not None
        result = dict(ctx.result)
        result["timings_ms"] = dict(ctx.timings)
        result["model"] = self.triton.model_identity()
        result["analysis"] = self.pipeline.config.provenance(ctx.stride)
        masks, planes, roi = ctx.masks, ctx.frame_planes, ctx.roi
        npz = await asyncio.to_thread(_npz_bytes, masks, planes, roi)
        return ClipAnalysis(result=result, masks_npz=npz, analysis_id=None)


def _npz_bytes(masks: np.ndarray, plane_probs: np.ndarray, roi: tuple[int, int, int, int]) -> bytes:
    """The gateway's ``masks.npz`` layout (see :class:`gateway.store.files.FileStore`)."""
    buf = io.BytesIO()
    np.savez_compressed(buf, masks=masks.astype(np.uint8), plane_probs=plane_probs.astype(np.float32), roi=np.asarray(roi, np.int64))
    return buf.getvalue()
