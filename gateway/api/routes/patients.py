"""``/v1/patients/{patient}``: one patient's median-nerve CSA across visits (follow-up), and
the deletion of every analysis of a patient.

Analyses uploaded with a ``patient`` pseudonym (and ``side``, ``visit``) are grouped by side
and visit (:mod:`ultramn.measure.followup`): per visit the wrist (TW) and forearm (TF) CSA,
their ratio and difference, and each site's change since the first and the previous visit.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import date
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from gateway.api.deps import ApiKeyDep, FilesDep, JobsDep, QueryCheckDep, RepoDep
from gateway.api.openapi import error_responses
from gateway.core.errors import ApiError
from gateway.store import Analysis
from ultramn.measure.followup import ClipCsa, clip_csa, follow_up, patient_problem

router = APIRouter(prefix="/v1/patients", tags=["patients"], dependencies=[ApiKeyDep, QueryCheckDep])


class SiteCsa(BaseModel):
    """One site's CSA at a visit: the mean of its clips' median CSAs (mm²) and its changes."""

    csa_mm2: float
    n_clips: int
    change_from_first_mm2: float | None = Field(description="since the first visit that measured this site")
    change_from_first_pct: float | None = Field(description="the same, in % of the first visit's CSA")
    change_from_previous_mm2: float | None = Field(description="since the previous visit that measured this site")
    analyses: list[str]


class VisitFollowUp(BaseModel):
    """One visit of one side: each site's CSA (``None`` when not measured), their ratio and difference."""

    visit: str = Field(description="YYYY-MM-DD")
    wrist: SiteCsa | None = Field(description="from TW clips")
    forearm: SiteCsa | None = Field(description="from TF clips")
    wrist_to_forearm_ratio: float | None = Field(description="WFR: wrist CSA / forearm CSA, when both were measured")
    wrist_minus_forearm_mm2: float | None = Field(description="ΔCSA: wrist CSA - forearm CSA, when both were measured")


class SideFollowUp(BaseModel):
    """The visits of one side, oldest first (side ``None``: uploads that gave no side)."""

    side: str | None
    visits: list[VisitFollowUp]


class PatientFollowUp(BaseModel):
    """A patient's follow-up; ``left_out`` counts the analyses that could not count, by reason."""

    patient: str
    sides: list[SideFollowUp]
    n_clips: int = Field(description="analyses that count")
    left_out: dict[str, int] = Field(
        description="longitudinal (LW/LF view), no_pixel_spacing (CSA in px), no_nerve, not_succeeded (queued, running or failed)"
    )
    links: dict[str, str]


def _visit(row: Analysis) -> date:
    """The row's visit date (its upload's date, UTC, if it has none)."""
    return date.fromisoformat(row.visit) if row.visit else row.created_at.date()


def report(patient: str, rows: list[Analysis]) -> dict[str, Any]:
    """The follow-up report of ``patient`` from its analyses."""
    clips: list[ClipCsa] = []
    left_out: Counter[str] = Counter()
    for row in rows:
        item = clip_csa(row.id, _visit(row), row.side, row.status, row.result)
        if isinstance(item, ClipCsa):
            clips.append(item)
        else:
            left_out[item] += 1
    return {"patient": patient, **follow_up(clips, left_out), "links": {"analyses": f"/v1/analyses?patient={patient}"}}


@router.get(
    "/{patient}",
    summary="A patient's CSA across visits (follow-up)",
    response_model=PatientFollowUp,
    responses=error_responses({404: "No analysis of this patient", 422: "Not a valid patient pseudonym"}),
)
async def get_patient(patient: str, repo: RepoDep) -> dict[str, Any]:
    """Every analysis uploaded with this ``patient``, by side and visit: wrist (TW) and forearm
    (TF) CSA in mm² (transverse clips with a pixel spacing), the wrist-to-forearm ratio and
    difference, and each site's change since the first and the previous visit."""
    if problem := patient_problem(patient):
        raise ApiError(422, "validation_error", f"patient: {problem}")
    rows = list(await asyncio.to_thread(repo.patient_analyses, patient))
    if not rows:
        raise ApiError(404, "not_found", f"no analysis of patient {patient}")
    return report(patient, rows)


class PatientDeleted(BaseModel):
    """What ``DELETE /v1/patients/{patient}`` removed."""

    patient: str
    deleted: int = Field(description="analyses removed, with their uploads, masks and overlay videos")


@router.delete(
    "/{patient}",
    summary="Delete every analysis of a patient",
    response_model=PatientDeleted,
    responses=error_responses({404: "No analysis of this patient", 422: "Not a valid patient pseudonym"}),
)
async def delete_patient(patient: str, repo: RepoDep, files: FilesDep, jobs: JobsDep) -> dict[str, Any]:
    """Remove every analysis uploaded with this ``patient``: rows, uploads, masks and overlay
    videos (as ``DELETE /v1/analyses/{id}`` does for each; a running job is discarded when it ends)."""
    if problem := patient_problem(patient):
        raise ApiError(422, "validation_error", f"patient: {problem}")
    rows = list(await asyncio.to_thread(repo.patient_analyses, patient))
    if not rows:
        raise ApiError(404, "not_found", f"no analysis of patient {patient}")
    deleted = 0
    for row in rows:
        if await asyncio.to_thread(repo.delete, row.id):
            deleted += 1
        jobs.forget(row.id)
        await asyncio.to_thread(files.delete, row.id, row.upload_ext)
    return {"patient": patient, "deleted": deleted}
