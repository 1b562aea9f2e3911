"""The batch's outputs: ``results.jsonl``, ``summary.csv``, ``frames.csv`` and ``masks/<clip>.npz``.

``results.jsonl``: one JSON object per clip, in the batch's order: ``clip``, ``status``
(``succeeded``/``failed``), ``analysis_id`` (gateway runs), ``seconds``, ``error``
(``{"code", "message"}`` or null), ``masks`` (path relative to the output folder) and
``result`` (the gateway's result object, null for a failed clip).
``summary.csv``: one row per clip with :data:`SUMMARY_COLUMNS`.
``frames.csv``: one row per frame of every succeeded clip, ``clip`` then
:data:`ultramn.measure.frame_table.FRAME_COLUMNS`.
``followup.json`` (with a ``--patient-pattern``): :func:`ultramn.batch.patients.followup_report`.
All are rewritten from the state journal at the end of every run (atomically, a record at
a time).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ultramn.batch.patients import FOLLOWUP_FILE, PatientRules, followup_report
from ultramn.batch.types import ModelId
from ultramn.contract import PLANE_VIEWS
from ultramn.measure.frame_table import FrameTableWriter

RESULTS_FILE = "results.jsonl"
#: Record fields kept in the journal but not written to ``results.jsonl``.
JOURNAL_ONLY: frozenset[str] = frozenset({"sha256", "finished_at", "options", "model", "redo"})
SUMMARY_FILE = "summary.csv"
FRAMES_FILE = "frames.csv"
MASKS_DIR = "masks"

#: Columns of ``summary.csv`` (CSA in ``csa_unit``: mm2 with a known pixel spacing, else px).
#: ``view`` is the clip plane's view: the area is the nerve's CSA in ``transverse`` clips only;
#: in ``longitudinal`` ones it is the area of the nerve's band in the image. ``excursion`` is
#: measured against the probe; in transverse clips ``excursion_tissue`` is the same against the
#: tissue and ``probe_shift`` how far the image content moved (both in ``excursion_unit``).
#: ``patient``, ``side`` and ``visit`` are read from the clip's path by the batch's patterns
#: (:mod:`ultramn.batch.patients`; empty without them).
SUMMARY_COLUMNS: tuple[str, ...] = (
    "clip",
    "patient",
    "side",
    "visit",
    "plane",
    "view",
    "confidence",
    "csa_median",
    "csa_min",
    "csa_max",
    "csa_unit",
    "excursion",
    "excursion_unit",
    "excursion_tissue",
    "probe_shift",
    "n_frames",
    "status",
    "error",
    "seconds",
)


def mask_relpath(clip: str) -> str:
    """``masks/<clip>.npz`` (the clip name is a safe relative path)."""
    return f"{MASKS_DIR}/{clip}.npz"


def record(
    clip: str,
    sha256: str,
    seconds: float,
    *,
    result: dict[str, Any] | None = None,
    analysis_id: str | None = None,
    error: tuple[str, str] | None = None,
    options: dict[str, Any] | None = None,
    model: ModelId | None = None,
    redo: str | None = None,
) -> dict[str, Any]:
    """One clip's journal record and ``results.jsonl`` line (journal only: ``options``, the analysis
    options given; ``model``, the model that made ``result``; ``redo``, the id of the ``--redo`` run)."""
    return {
        "clip": clip,
        "status": "failed" if error else "succeeded",
        "analysis_id": analysis_id,
        "seconds": round(seconds, 3),
        "error": {"code": error[0], "message": error[1]} if error else None,
        "masks": None if error else mask_relpath(clip),
        "sha256": sha256,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "options": dict(options or {}),
        "model": model.as_dict() if model is not None else None,
        "redo": redo,
        "result": result,
    }


def _num(value: Any, digits: int = 4) -> Any:
    return round(float(value), digits) if isinstance(value, int | float) else ""


def summary_row(rec: dict[str, Any], follow: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The ``summary.csv`` row of a record (``follow``: its ``patient``, ``side``, ``visit``)."""
    follow = follow or {}
    res = rec.get("result") or {}
    csa = res.get("csa") or {}
    exc = res.get("excursion") or {}
    err = rec.get("error") or {}
    return {
        "clip": rec["clip"],
        "patient": follow.get("patient", ""),
        "side": follow.get("side", ""),
        "visit": follow.get("visit", ""),
        "plane": res.get("plane") or "",
        "view": PLANE_VIEWS.get(res.get("plane") or "", ""),
        "confidence": _num(res.get("plane_confidence")),
        "csa_median": _num(csa.get("median")),
        "csa_min": _num(csa.get("min")),
        "csa_max": _num(csa.get("max")),
        "csa_unit": csa.get("unit", "") if csa.get("median") is not None else "",
        "excursion": _num(exc.get("max_from_first")),
        "excursion_unit": exc.get("unit", "") if exc.get("max_from_first") is not None else "",
        "excursion_tissue": _num((exc.get("relative_to_tissue") or {}).get("max_from_first")),
        "probe_shift": _num(exc.get("tissue_shift_max")),
        "n_frames": res.get("n_frames", ""),
        "status": rec.get("status", ""),
        "error": f"{err.get('code')}: {err.get('message')}" if err else "",
        "seconds": rec.get("seconds", ""),
    }


def write_outputs(
    out: Path, clips: Iterable[str], records: Mapping[str, dict[str, Any]], rules: PatientRules | None = None
) -> tuple[int, int]:
    """Rewrite ``results.jsonl``, ``summary.csv`` and ``frames.csv`` for ``clips`` (in order),
    and ``followup.json`` when ``rules`` read a patient; (lines, clips without a record).

    Written a record at a time (``records`` may read each from the journal) into temporary
    files that replace the old ones at the end."""
    clips = list(clips)
    rules = rules or PatientRules()
    names = (RESULTS_FILE, SUMMARY_FILE, FRAMES_FILE)
    tmps = [out / f".{name}.tmp" for name in names]
    lines = missing = 0
    with (
        open(tmps[0], "w", encoding="utf-8") as results,
        open(tmps[1], "w", encoding="utf-8", newline="") as summary,
        open(tmps[2], "w", encoding="utf-8", newline="") as frames,
    ):
        writer = csv.DictWriter(summary, fieldnames=list(SUMMARY_COLUMNS), lineterminator="\n")
        writer.writeheader()
        frame_table = FrameTableWriter(frames, with_clip=True)
        for clip in clips:
            rec = records.get(clip)
            if rec is None:
                missing += 1
                continue
            results.write(json.dumps({k: v for k, v in rec.items() if k not in JOURNAL_ONLY}) + "\n")
            writer.writerow(summary_row(rec, rules.of(clip)))
            frame_table.write(rec.get("result") or {}, clip=clip)
            lines += 1
    for tmp, name in zip(tmps, names, strict=True):
        os.replace(tmp, out / name)
    if rules.patient is not None:
        tmp = out / f".{FOLLOWUP_FILE}.tmp"
        tmp.write_text(json.dumps(followup_report(clips, records, rules), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, out / FOLLOWUP_FILE)
    return lines, missing
