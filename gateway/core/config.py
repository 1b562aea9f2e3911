"""Gateway settings (pydantic-settings): environment variables with the prefix ``ULTRAMN_``.

Example: ``ULTRAMN_TRITON_URL=triton:8001 ULTRAMN_API_KEY=secret uvicorn gateway.main:app``.
Every field below is one variable (upper case, prefixed); docs/api.md has the table.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ultramn.contract import CONTRACT
from ultramn.data.decoders import DecodeLimits
from ultramn.windowing import DEFAULT_BLEND, DEFAULT_MIN_SIMILARITY, DEFAULT_TEMPORAL_FILTER, Blend, check_temporal_filter, default_stride


class Settings(BaseSettings):
    """All knobs of the gateway (units in the names: ``_s`` seconds, ``_bytes``, ``_mm``)."""

    model_config = SettingsConfigDict(env_prefix="ULTRAMN_", env_file=None, extra="ignore", frozen=True)

    # Triton ------------------------------------------------------------------------------
    triton_url: str = Field("127.0.0.1:8001", description="Triton gRPC endpoint host:port.")
    model_name: str = Field(CONTRACT.name, description="Model name in the Triton repository.")
    model_version: str = Field("", description="Model version ('' = the server's choice).")
    model_repository: Path | None = Field(
        None,
        description="Triton's model repository as this process sees it (read only), to name the served weights: the SHA-256 "
        "of the checkpoint the ONNX model was built from, in its build record (model.onnx.json). Unset: results name "
        "the model's name and version only, and `ultramn batch` cannot tell new weights under the same version.",
    )
    infer_concurrency: int = Field(8, ge=1, description="Windows in flight to Triton at once (per gateway process).")
    infer_timeout_s: float = Field(30.0, gt=0, description="Deadline of one inference request.")
    triton_check_timeout_s: float = Field(2.0, gt=0, description="Deadline of readiness/config calls.")

    # storage -----------------------------------------------------------------------------
    data_dir: Path = Field(Path("data/gateway"), description="Folder for uploads, masks and the SQLite database.")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default sqlite:///<data_dir>/ultramn.db.")

    # jobs --------------------------------------------------------------------------------
    workers: int = Field(1, ge=0, description="Clips analysed at once (0 = accept and queue only).")
    queue_max: int = Field(
        32, ge=1, description="Queued + running single uploads (more get 429 queue_full); also batch clips handed to the workers at once."
    )
    retry_initial_s: float = Field(0.5, gt=0, description="First back-off when Triton is unavailable.")
    retry_max_s: float = Field(10.0, gt=0, description="Longest back-off between retries.")
    retry_after_s: int = Field(5, ge=1, description="Retry-After header value (s) of 429/503 answers.")
    wait_max_frames: int = Field(300, ge=1, description="wait=true answers with the result only up to this many frames.")
    wait_timeout_s: float = Field(60.0, gt=0, description="Longest time a wait=true request waits for its result.")

    # input limits ------------------------------------------------------------------------
    max_upload_bytes: int = Field(512 * 1024**2, ge=1, description="Largest request body (upload) in bytes: 413 beyond.")
    max_frames: int = Field(5000, ge=1, description="Most frames a clip may have: 422 beyond.")
    max_side: int = Field(4096, ge=8, description="Largest frame side in pixels: 422 beyond.")
    max_clip_pixels: int = Field(
        512 * 1024**2,
        ge=64 * 64,
        description="Most pixels in a decoded clip (frames x height x width): 422 beyond. A job's peak memory grows "
        "with the clip (about 3.2 bytes per pixel, bench/bench_memory.py), so this bounds memory per worker.",
    )
    upload_concurrency: int = Field(
        8,
        ge=1,
        description="Uploads (single clips and batch archives together) received and stored at once; each holds up to "
        "twice its size of disk until it is queued. More get 429 uploads_busy before their body is read.",
    )
    decode_concurrency: int = Field(
        2,
        ge=1,
        description="Uploads decoded at once at request time (each holds a thread and its clip's memory); "
        "more wait their turn, so decodes cannot starve the other routes of threads.",
    )
    frame_cache_bytes: int = Field(
        512 * 1024**2,
        ge=0,
        description="Decoded uploads and masks kept in memory for the viewer's frame, mask and overlay routes "
        "(least recently used dropped first; 0 = no cache).",
    )
    max_batch_clips: int = Field(2000, ge=1, description="Most clips one batch archive may hold: 422 beyond.")
    max_archive_members: int = Field(10_000, ge=1, description="Most members (files and folders) of a batch archive: 422 beyond.")
    max_archive_ratio: float = Field(200.0, gt=1, description="Largest compression ratio of an archive member (zip bombs): 422 beyond.")
    max_archive_uploads: int = Field(
        100, ge=1, description="A batch archive may unpack to this many times max_upload_bytes in all: 422 beyond."
    )

    # analysis ----------------------------------------------------------------------------
    default_stride: int = Field(default_stride(CONTRACT.window_frames), ge=1, description="Default window stride in frames.")
    stitch_blend: Blend = Field(DEFAULT_BLEND, description="Weighting of overlapping windows per window position: triangular or uniform.")
    stitch_temporal_filter: int = Field(
        DEFAULT_TEMPORAL_FILTER,
        ge=1,
        description="Frames (odd) in the centred mean of the stitched mask probabilities; 1 = off.",
    )
    stitch_temporal_min_similarity: float = Field(
        DEFAULT_MIN_SIMILARITY,
        ge=0,
        le=1,
        description="Motion gate of that mean: neighbours whose nerve map has a lower cosine similarity are left out; 0 = all.",
    )
    mask_threshold: float = Field(0.5, gt=0, lt=1, description="Nerve probability threshold.")
    roi_enabled: bool = Field(True, description="Crop the imaging region (drop on-screen text and borders).")

    # live stream (/v1/live) -------------------------------------------------------------
    live_max_streams: int = Field(2, ge=1, le=64, description="Live streams at once; one more is refused (busy).")
    live_idle_timeout_s: float = Field(30.0, gt=0, description="A live stream that sends nothing for this long is closed.")
    live_max_frame_bytes: int = Field(8 * 1024**2, ge=1024, description="Largest message (one encoded frame) of a live stream.")

    # API ---------------------------------------------------------------------------------
    api_key: str | None = Field(None, description="When set, data endpoints need header X-API-Key with this value.")
    log_level: str = Field("INFO", description="Log level of the gateway's JSON logs.")

    @field_validator("stitch_temporal_filter")
    @classmethod
    def _odd_filter(cls, value: int) -> int:
        return check_temporal_filter(value)

    @cached_property
    def sqlalchemy_url(self) -> str:
        """The database URL in use (SQLite in :attr:`data_dir` unless :attr:`database_url`)."""
        return self.database_url or f"sqlite:///{(self.data_dir / 'ultramn.db').resolve()}"

    @cached_property
    def decode_limits(self) -> DecodeLimits:
        """Decoder bounds from :attr:`max_frames`, :attr:`max_side` and :attr:`max_clip_pixels`."""
        return DecodeLimits(max_frames=self.max_frames, max_side=self.max_side, max_pixels=self.max_clip_pixels)


def get_settings() -> Settings:
    """Settings from the environment."""
    return Settings()
