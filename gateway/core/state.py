"""What the app holds for its lifetime (created in the lifespan, closed at shutdown)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from gateway.core.config import Settings
from gateway.core.metrics import Metrics
from gateway.core.uploads import UploadSlots
from gateway.store import AnalysisRepository, FileStore
from gateway.triton_client import TritonClient
from gateway.worker import JobQueue


@dataclass
class AppState:
    """Settings, metrics, store, Triton client and job queue of one app."""

    settings: Settings
    metrics: Metrics
    repo: AnalysisRepository
    files: FileStore
    triton: TritonClient
    jobs: JobQueue
    #: request-time decodes at once (``ULTRAMN_DECODE_CONCURRENCY``): each holds a pool thread
    #: and its clip's memory; more uploads wait their turn instead of starving the other routes
    decode_slots: asyncio.Semaphore
    #: upload bodies received and stored at once (``ULTRAMN_UPLOAD_CONCURRENCY``), with a disk check
    uploads: UploadSlots
