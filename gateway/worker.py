"""The background job queue.

Contract with the API:

- an upload is on disk and its row is in the database (status ``queued``) *before*
  :meth:`JobQueue.submit` is called, so a restart loses no accepted work: at start-up
  rows left ``running`` go back to ``queued`` and every ``queued`` row is enqueued again;
- the queue is bounded: more than ``queue_max`` queued + running single uploads ->
  :class:`QueueFullError` (the API answers 429); a batch's clips count against a limit of
  their own (the same size, :meth:`JobQueue.has_batch_room`), so a draining batch never
  locks single uploads out;
- single uploads go first: a worker takes the oldest waiting upload before any batch clip
  (a batch of thousands of clips does not delay someone waiting for one clip);
- ``workers`` tasks run jobs concurrently (their windows share the Triton client's
  semaphore); ``workers=0`` accepts and queues without processing;
- a job that finds Triton unavailable goes back to ``queued`` and is retried after an
  exponential back-off (``retry_initial_s`` doubling up to ``retry_max_s``), for as long
  as it takes: the job is kept, it completes once Triton is back;
- waiters (``wait=true`` requests) are told when a job finishes or hits an unavailable Triton.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from enum import StrEnum

from gateway.core.config import Settings
from gateway.core.errors import decode_error_to_api
from gateway.core.metrics import Metrics
from gateway.pipeline import ClipContext, Pipeline
from gateway.store import AnalysisRepository, FileStore, JobStatus
from gateway.store.models import utcnow
from gateway.triton_client import ContractMismatchError, TritonClient, TritonUnavailableError
from ultramn.data.decoders import DecodedClip, DecodeError

log = logging.getLogger("gateway.worker")


class QueueFullError(RuntimeError):
    """More than ``queue_max`` jobs are queued or running."""


class Outcome(StrEnum):
    """What a waiter learns."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TRITON_UNAVAILABLE = "triton_unavailable"
    DELETED = "deleted"
    TIMEOUT = "timeout"


@dataclass
class Progress:
    """Windows done / total of a running job."""

    done: int = 0
    total: int = 0


class JobQueue:
    """See the module docstring."""

    #: decoded clips kept in memory between upload and processing (bytes of frames, all jobs)
    CLIP_CACHE_BYTES = 512 * 1024**2

    def __init__(
        self, settings: Settings, repo: AnalysisRepository, files: FileStore, pipeline: Pipeline, triton: TritonClient, metrics: Metrics
    ) -> None:
        self.settings = settings
        self.repo = repo
        self.files = files
        self.pipeline = pipeline
        self.triton = triton
        self.metrics = metrics
        # (priority, arrival, job id): single uploads (0) before batch clips (1), oldest first
        self._queue: asyncio.PriorityQueue[tuple[int, int, str]] = asyncio.PriorityQueue()
        self._arrivals = 0
        self._pending: set[str] = set()  # queued (incl. backing off) + running
        self._batch: set[str] = set()  # the pending jobs that are batch clips
        self._running: set[str] = set()  # in a worker's hands now
        self._clips: OrderedDict[str, DecodedClip] = OrderedDict()
        self._decode_ms: dict[str, float] = {}
        self._waiters: dict[str, list[asyncio.Future[Outcome]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._retries: set[asyncio.Task[None]] = set()
        self.progress: dict[str, Progress] = {}

    # lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Recover unfinished jobs from the database and start the worker tasks."""
        requeued = self.repo.requeue_running()
        pending = self.repo.pending_ids()
        batch_ids = set(self.repo.pending_batch_ids())
        for job_id in pending:
            self._pending.add(job_id)
            if job_id in batch_ids:
                self._batch.add(job_id)
            self._enqueue(job_id)
        if pending:
            log.info("resuming unfinished jobs", extra={"jobs": len(pending), "were_running": requeued})
        self._tasks = [asyncio.create_task(self._run(), name=f"worker-{i}") for i in range(self.settings.workers)]

    async def stop(self) -> None:
        """Cancel the workers; running jobs stay ``running`` in the database and resume at the next start."""
        tasks = self._tasks + list(self._retries)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._retries.clear()
        for futures in self._waiters.values():
            for fut in futures:
                if not fut.done():
                    fut.cancel()

    # API side --------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        """Queued + running jobs (single uploads and batch clips)."""
        return len(self._pending)

    @property
    def upload_depth(self) -> int:
        """Queued + running single uploads (what ``queue_max`` bounds for ``POST /v1/analyses``)."""
        return len(self._pending) - len(self._batch)

    def has_room(self) -> bool:
        """Whether one more single upload may be accepted."""
        return self.upload_depth < self.settings.queue_max

    def has_batch_room(self) -> bool:
        """Whether one more batch clip may be handed over (batch clips have a limit of their own)."""
        return len(self._batch) < self.settings.queue_max

    def submit(self, job_id: str, clip: DecodedClip | None = None, decode_ms: float | None = None, *, batch: bool = False) -> None:
        """Enqueue a job whose upload and row are already stored; :class:`QueueFullError` when full.

        ``clip``: the upload already decoded by the request (``decode_ms`` took), reused by
        the pipeline's decode stage when still in memory. ``batch``: a batch's clip (its own
        limit, behind single uploads).
        """
        if not (self.has_batch_room() if batch else self.has_room()):
            depth = len(self._batch) if batch else self.upload_depth
            kind = "batch clips" if batch else "analyses"
            raise QueueFullError(f"{depth} {kind} are queued or running (limit {self.settings.queue_max})")
        self._pending.add(job_id)
        if batch:
            self._batch.add(job_id)
        if clip is not None:
            self._remember(job_id, clip, decode_ms)
        self._enqueue(job_id)

    def forget(self, job_id: str) -> None:
        """Drop in-memory state of a deleted job (a running one finishes and is discarded).

        A queued one frees its place in the queue limit at once; its id, still in the
        queue, is skipped when a worker reaches it.
        """
        if job_id not in self._running:
            self._drop(job_id)
        self._clips.pop(job_id, None)
        self._notify(job_id, Outcome.DELETED)

    def is_pending(self, job_id: str) -> bool:
        """Whether the job is queued or running in this process."""
        return job_id in self._pending

    def watch(self, job_id: str) -> asyncio.Future[Outcome]:
        """A future resolved with the job's next :class:`Outcome` (register before submitting)."""
        fut: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(job_id, []).append(fut)
        return fut

    async def wait(self, job_id: str, timeout: float, fut: asyncio.Future[Outcome] | None = None) -> Outcome:
        """Wait until the job finishes or hits an unavailable Triton, at most ``timeout`` s."""
        fut = fut or self.watch(job_id)
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            return Outcome.TIMEOUT
        finally:
            futures = self._waiters.get(job_id, [])
            if fut in futures:
                futures.remove(fut)
            if not futures:
                self._waiters.pop(job_id, None)

    def unwatch(self, job_id: str, fut: asyncio.Future[Outcome]) -> None:
        """Drop a future from :meth:`watch` that nobody will await."""
        futures = self._waiters.get(job_id, [])
        if fut in futures:
            futures.remove(fut)
        if not futures:
            self._waiters.pop(job_id, None)

    # internals -------------------------------------------------------------------------
    def _remember(self, job_id: str, clip: DecodedClip, decode_ms: float | None) -> None:
        self._clips[job_id] = clip
        if decode_ms is not None:
            self._decode_ms[job_id] = decode_ms
        while sum(c.frames.nbytes for c in self._clips.values()) > self.CLIP_CACHE_BYTES and len(self._clips) > 1:
            self._clips.popitem(last=False)

    def _notify(self, job_id: str, outcome: Outcome) -> None:
        for fut in self._waiters.get(job_id, []):
            if not fut.done():
                fut.set_result(outcome)

    def _backoff(self, attempts: int) -> float:
        return float(min(self.settings.retry_max_s, self.settings.retry_initial_s * 2 ** max(attempts - 1, 0)))

    def _enqueue(self, job_id: str) -> None:
        self._arrivals += 1
        self._queue.put_nowait((1 if job_id in self._batch else 0, self._arrivals, job_id))

    async def _requeue_later(self, job_id: str, delay: float) -> None:
        await asyncio.sleep(delay)
        self._enqueue(job_id)

    async def _run(self) -> None:
        while True:
            _, _, job_id = await self._queue.get()
            self._running.add(job_id)
            try:
                await self._process(job_id)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never let one job kill the worker, nor leave it "running"
                log.exception("worker error", extra={"job_id": job_id})
                self._give_up(job_id, exc)
            finally:
                self._running.discard(job_id)

    async def _process(self, job_id: str) -> None:
        row = self.repo.get(job_id)
        if row is None or row.status not in (JobStatus.QUEUED.value, JobStatus.RUNNING.value):
            self._drop(job_id)
            return
        attempts = row.attempts + 1
        self.repo.update(job_id, status=JobStatus.RUNNING.value, started_at=utcnow(), attempts=attempts)
        progress = self.progress.setdefault(job_id, Progress())

        def on_progress(done: int, total: int) -> None:
            progress.done, progress.total = done, total

        options = row.options or {}
        ctx = ClipContext(
            job_id=job_id,
            source=self.files.upload_path(job_id, row.upload_ext),
            filename=f"upload{row.upload_ext}",
            pixel_spacing_mm=options.get("pixel_spacing_mm"),
            stride=options.get("stride"),
            progress=on_progress,
            clip=self._clips.get(job_id),
        )
        cached = ctx.clip is not None
        t0 = time.perf_counter()
        try:
            await self.pipeline.run(ctx)
        except TritonUnavailableError as exc:
            delay = self._backoff(attempts)
            self.repo.update(job_id, status=JobStatus.QUEUED.value, error_code="triton_unavailable", error_message=str(exc)[:500])
            log.warning("triton unavailable; job requeued", extra={"job_id": job_id, "attempt": attempts, "retry_in_s": delay})
            self._notify(job_id, Outcome.TRITON_UNAVAILABLE)
            task = asyncio.create_task(self._requeue_later(job_id, delay))
            self._retries.add(task)
            task.add_done_callback(self._retries.discard)
            return
        except DecodeError as exc:  # the same code a single upload of the file gets (a batch's clips decode here)
            self._finish_failed(job_id, decode_error_to_api(exc).code, str(exc))
            return
        except ContractMismatchError as exc:  # Triton came back serving a model the gateway cannot read
            log.error("the served model does not match the contract", extra={"job_id": job_id, "error": str(exc)[:300]})
            self._finish_failed(job_id, "contract_mismatch", str(exc)[:500])
            return
        except Exception as exc:
            log.exception("analysis failed", extra={"job_id": job_id})
            self._finish_failed(job_id, "analysis_failed", f"{type(exc).__name__}: {exc}"[:500])
            return
        assert ctx.result is not None and ctx.masks is not None and ctx.frame_planes is not None and ctx.roi is not None
        if not self.repo.exists(job_id):  # deleted while running
            self._drop(job_id)
            return
        try:  # compressing a long clip's masks takes seconds: not on the event loop
            await asyncio.to_thread(self.files.save_masks, job_id, ctx.masks, ctx.frame_planes, ctx.roi)
        except OSError as exc:  # full disk, unwritable store: the job fails with a message, the worker goes on
            log.exception("storing the result failed", extra={"job_id": job_id})
            self._finish_failed(job_id, "storage_error", f"could not store the result: {exc.strerror or exc}")
            return
        result = dict(ctx.result)
        timings = dict(ctx.timings)
        if cached and job_id in self._decode_ms:  # the request decoded the upload: report that time
            timings["decode"] = round(self._decode_ms[job_id], 2)
            timings["total"] = round(sum(v for k, v in timings.items() if k != "total"), 2)
        result["timings_ms"] = timings
        result["model"] = self.triton.model_identity()
        result["analysis"] = self.pipeline.config.provenance(ctx.stride)
        n_windows = int(ctx.indices.shape[0]) if ctx.indices is not None else 0
        stored = await asyncio.to_thread(
            self.repo.update,
            job_id,
            status=JobStatus.SUCCEEDED.value,
            finished_at=utcnow(),
            format=ctx.require_clip().format,
            n_frames=result["n_frames"],
            windows_total=n_windows,
            windows_done=n_windows,
            plane=result["plane"],
            plane_confidence=result["plane_confidence"],
            error_code=None,
            error_message=None,
            result=result,
        )
        if stored is None:  # deleted meanwhile (a later delete removes the files itself): its masks must not stay behind
            self.files.delete(job_id, row.upload_ext)
            self._drop(job_id)
            return
        self.metrics.jobs.labels("succeeded").inc()
        log.info(
            "analysis done",
            extra={
                "job_id": job_id,
                "n_frames": result["n_frames"],
                "windows": n_windows,
                "timings_ms": ctx.timings,
                "wall_ms": round((time.perf_counter() - t0) * 1000, 1),
            },
        )
        self._drop(job_id)
        self._notify(job_id, Outcome.SUCCEEDED)

    def _finish_failed(self, job_id: str, code: str, message: str) -> None:
        stored = self.repo.update(job_id, status=JobStatus.FAILED.value, finished_at=utcnow(), error_code=code, error_message=message)
        if stored is None:  # deleted while it ran (its upload went with it): not a failure to count
            self._drop(job_id)
            self._notify(job_id, Outcome.DELETED)
            return
        self.metrics.jobs.labels("failed").inc()
        log.warning("analysis failed", extra={"job_id": job_id, "error_code": code})
        self._drop(job_id)
        self._notify(job_id, Outcome.FAILED)

    def _give_up(self, job_id: str, exc: Exception) -> None:
        """After an unexpected error: mark the job failed when the database still answers, and
        in any case free its queue slot and wake its waiters (it must never stay "running")."""
        try:
            self._finish_failed(job_id, "internal_error", f"{type(exc).__name__}: {exc}"[:500])
        except Exception:
            log.exception("could not mark the job failed", extra={"job_id": job_id})
            self._drop(job_id)
            self._notify(job_id, Outcome.FAILED)

    def _drop(self, job_id: str) -> None:
        self._pending.discard(job_id)
        self._batch.discard(job_id)
        self._clips.pop(job_id, None)
        self._decode_ms.pop(job_id, None)
        self.progress.pop(job_id, None)


__all__ = ["JobQueue", "Outcome", "Progress", "QueueFullError"]
