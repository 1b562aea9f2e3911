"""Run a batch: analyse every clip not done yet, at most ``concurrency`` at a time.

Each finished clip is journalled at once (:class:`~ultramn.batch.state.BatchState`) and its
masks written to ``masks/<clip>.npz``; a clip that fails is recorded with its error and the
batch goes on. ``results.jsonl`` and ``summary.csv`` are rewritten at the end (also after
Ctrl-C). A tqdm bar shows clips done, the rate and the ETA.

When a clip fails because the back end did not answer (:data:`~ultramn.batch.types.BACKEND_DOWN_CODES`)
and :meth:`~ultramn.batch.types.Analyzer.unavailable` confirms that it is down, the batch
stops: that clip and the ones not started yet are left unrecorded (they are not bad clips;
the next run does them) instead of each failing in turn, and the report says why it stopped.
So does a clip refused because the back end cannot store anything now
(:data:`~ultramn.batch.types.BACKEND_REFUSES_CODES`: a full disk), and one whose masks cannot
be written because the output folder is full or read-only (:data:`OUTPUT_FULL_ERRNOS`). A
clip whose masks file has gone since it succeeded is analysed again (through a gateway, the
clip's key gets the earlier job back).

A clip done before under a model other than the one the back end serves now is analysed
again, and with ``redo`` every clip is (see :mod:`ultramn.batch.state`); their uploads carry
new keys, so a gateway does not give the old job back. The new record replaces the old one
in ``results.jsonl``, ``summary.csv`` and ``masks/``.
"""

from __future__ import annotations

import asyncio
import errno
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ultramn.batch.discover import Clip
from ultramn.batch.outputs import mask_relpath, record, write_outputs
from ultramn.batch.patients import PatientRules
from ultramn.batch.state import BatchState, file_sha256
from ultramn.batch.types import BACKEND_DOWN_CODES, BACKEND_REFUSES_CODES, Analyzer, ClipError, ModelId


@dataclass(frozen=True)
class BatchReport:
    """What a run did: clips in the batch, already done before, analysed now (ok / failed), wall time,
    and why it stopped early (the back end went away: ``stopped``), with clips left undone.

    Of the clips analysed now, ``model_changed`` had been done before under another model and
    ``redone`` had been done before under this one and were analysed again for ``--redo``;
    ``not_in_input`` clips of earlier runs are not in this input."""

    total: int
    already_done: int
    succeeded: int
    failed: int
    seconds: float
    stopped: str | None = None
    model_changed: int = 0
    redone: int = 0
    #: clips the journal has from earlier runs that this input no longer holds: left out of
    #: ``results.jsonl`` and ``summary.csv``, their records kept in ``state.jsonl``, their masks in ``masks/``
    not_in_input: int = 0

    @property
    def not_done(self) -> int:
        """Clips neither done before nor analysed in this run (left by a stop)."""
        return self.total - self.already_done - self.succeeded - self.failed

    @property
    def processed(self) -> int:
        """Clips analysed in this run."""
        return self.succeeded + self.failed


#: ``OSError`` numbers that say the output folder takes no more files (full, over quota, read-only).
OUTPUT_FULL_ERRNOS: frozenset[int] = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


def _write_masks(out: Path, clip: str, data: bytes) -> None:
    path = out / mask_relpath(clip)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _hash_all(clips: list[Clip]) -> dict[str, str]:
    return {c.name: file_sha256(c.path) for c in clips}


def _size(clip: Clip) -> int:
    try:
        return clip.path.stat().st_size
    except OSError:
        return 0  # gone or unreadable: hashing it says why


async def _hashes(clips: list[Clip], chunk: int = 32, progress: bool = True) -> dict[str, str]:
    """Each clip's content hash, ``chunk`` files per worker-thread call: a run cancelled now
    (Ctrl-C) waits for one chunk, not for the whole archive to be read. A bar (bytes read,
    rate, ETA) shows the check of a large input before the batch bar starts."""
    hashes: dict[str, str] = {}
    sizes = [_size(c) for c in clips]
    with tqdm(
        total=sum(sizes), unit="B", unit_scale=True, desc="checking clips", disable=not progress, leave=False, dynamic_ncols=True
    ) as bar:
        for i in range(0, len(clips), chunk):
            hashes.update(await asyncio.to_thread(_hash_all, clips[i : i + chunk]))
            bar.update(sum(sizes[i : i + chunk]))
    return hashes


async def run_batch(
    clips: list[Clip],
    analyzer: Analyzer,
    out: Path,
    *,
    concurrency: int = 4,
    progress: bool = True,
    options: dict[str, Any] | None = None,
    model: ModelId | None = None,
    redo: bool = False,
    rules: PatientRules | None = None,
) -> BatchReport:
    """Analyse the clips of ``clips`` not yet done in ``out``; see the module docstring.

    ``options``: the analysis options the analyzer was made with (``{"pixel_spacing_mm": 0.1}``;
    leave out the defaults): a clip done before with other options is analysed again.
    ``model``: the model the back end serves (``None``: unknown): a clip done before under another
    one is analysed again. ``redo``: analyse every clip again (resuming an unfinished redo).
    ``rules``: read each clip's patient, side and visit from its name (sent with its upload, and
    written to ``summary.csv`` and ``followup.json``; they do not make a done clip run again)."""
    rules = rules or PatientRules()
    options = {k: v for k, v in (options or {}).items() if v is not None}
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    out.mkdir(parents=True, exist_ok=True)
    state = BatchState(out)
    redo_id = state.begin_redo() if redo else None
    if not redo:
        state.end_redo()  # an unfinished redo is dropped: a later --redo starts afresh
    hashes = await _hashes(clips, progress=progress)

    def done(clip: Clip, strict: bool = True) -> bool:
        """Succeeded before on this content with these options (``strict``: under ``model``, in this redo),
        and its masks are still there."""
        served, this_redo = (model, redo_id) if strict else (None, None)
        return state.is_done(clip.name, hashes[clip.name], options, served, this_redo) and (out / mask_relpath(clip.name)).is_file()

    todo = [c for c in clips if not done(c)]
    already = len(clips) - len(todo)
    # why a clip done before is analysed again: another model served now, else --redo
    again = {c.name: "model" if state.other_model(c.name, model) else "redo" for c in todo if done(c, strict=False)}
    # keys of another model or redo: a gateway must not give back the job of an earlier analysis
    salts = [f"model={model.name}/{model.version}" + (f"/{model.weights}" if model.weights else "")] if model else []
    salts += [f"redo={redo_id}"] if redo_id else []
    salt = "\n".join(salts)
    keys = {c.name: state.upload_key(c.name, hashes[c.name], salt) for c in todo}
    counts = {"ok": 0, "failed": 0, "model": 0, "redo": 0}
    bar = tqdm(total=len(clips), initial=already, unit="clip", desc="batch", disable=not progress, dynamic_ncols=True)
    sem = asyncio.Semaphore(concurrency)
    t_start = time.perf_counter()

    stopped: list[str] = []

    async def one(clip: Clip) -> None:
        async with sem:
            if stopped:
                return
            t0 = time.perf_counter()
            try:
                analysis = await analyzer.analyze(clip.path, clip.name, key=keys[clip.name], fields=rules.of(clip.name))
                await asyncio.to_thread(_write_masks, out, clip.name, analysis.masks_npz)
                rec = record(
                    clip.name,
                    hashes[clip.name],
                    time.perf_counter() - t0,
                    result=analysis.result,
                    analysis_id=analysis.analysis_id,
                    options=options,
                    model=ModelId.of(analysis.result.get("model")) or model,  # the model that made it
                    redo=redo_id,
                )
                counts["ok"] += 1
            except ClipError as exc:
                if exc.code in BACKEND_DOWN_CODES | BACKEND_REFUSES_CODES:
                    if stopped:
                        reason: str | None = stopped[0]
                    elif exc.code in BACKEND_REFUSES_CODES:
                        reason = f"the back end takes no clips now ({exc.code}: {exc.message})"
                    else:
                        reason = await analyzer.unavailable()
                    if reason is not None:
                        stopped[:] = [reason]
                        return  # not the clip's fault: left for the next run, not recorded as failed
                rec = record(clip.name, hashes[clip.name], time.perf_counter() - t0, error=(exc.code, exc.message), options=options)
                counts["failed"] += 1
            except OSError as exc:
                if exc.errno in OUTPUT_FULL_ERRNOS:  # every clip after would fail the same way, after its analysis
                    stopped[:] = [f"cannot write to {out} ({exc.strerror or exc})"]
                    return
                error = ("internal_error", f"{type(exc).__name__}: {exc}"[:500])
                rec = record(clip.name, hashes[clip.name], time.perf_counter() - t0, error=error, options=options)
                counts["failed"] += 1
            except Exception as exc:  # a bug or an I/O error on one clip must not stop the batch
                error = ("internal_error", f"{type(exc).__name__}: {exc}"[:500])
                rec = record(clip.name, hashes[clip.name], time.perf_counter() - t0, error=error, options=options)
                counts["failed"] += 1
            try:
                state.append(rec)
            except OSError as exc:
                if exc.errno not in OUTPUT_FULL_ERRNOS:
                    raise
                # not journalled, so not done: the re-run analyses it again (through a gateway, its key gets this job back)
                stopped[:] = [f"cannot write to {out} ({exc.strerror or exc})"]
                counts["ok" if rec["status"] == "succeeded" else "failed"] -= 1
                return
            if clip.name in again:
                counts[again[clip.name]] += 1
            bar.update(1)
            bar.set_postfix(ok=counts["ok"], failed=counts["failed"], refresh=False)

    try:
        await asyncio.gather(*(one(c) for c in todo))
        if redo_id is not None and not stopped:
            state.end_redo()  # every clip done in this redo: the next --redo starts afresh
    finally:
        bar.close()
        try:
            write_outputs(out, [c.name for c in clips], state.full_records, rules)
        except OSError as exc:
            if exc.errno not in OUTPUT_FULL_ERRNOS:
                raise
            reason = stopped[0] if stopped else f"cannot write to {out} ({exc.strerror or exc})"
            stopped[:] = [f"{reason}; results.jsonl and summary.csv were not written (state.jsonl keeps every clip done)"]
    return BatchReport(
        len(clips),
        already,
        counts["ok"],
        counts["failed"],
        time.perf_counter() - t_start,
        stopped[0] if stopped else None,
        model_changed=counts["model"],
        redone=counts["redo"],
        not_in_input=len(state.records.keys() - {c.name for c in clips}),
    )
