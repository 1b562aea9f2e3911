"""Follow-up of one patient's median-nerve CSA across visits (DOMAIN.md, "Measurements").

The inputs are analysed clips, each with the patient's side (``L``/``R``, or unknown), the
visit's date and the clip's result (the gateway's result object). A clip counts when it is a
transverse view (``TW`` at the wrist, ``TF`` in the forearm: only there is the nerve's area
its cross-section) with a CSA in mm² (a pixel spacing was known: areas in pixels of
different clips are not comparable); :func:`clip_csa` says why one does not.

Per side and visit (oldest first), per site (``wrist`` from TW clips, ``forearm`` from TF
clips): the CSA is the mean of the clips' median CSAs (the usual practice of averaging
repeated measurements), with its change from the first visit and from the previous visit
that measured that site (mm², and % of the first); and where both sites were measured at a
visit, the wrist-to-forearm ratio (WFR) and the difference (ΔCSA, wrist minus forearm). The
literature's thresholds (wrist CSA 9-14 mm², WFR about 1.4) are for the reader to apply: this
module reports numbers, not diagnoses.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final, Literal, get_args

#: Sites of the transverse planes.
SITES: Final[dict[str, str]] = {"TW": "wrist", "TF": "forearm"}
Side = Literal["L", "R"]
SIDES: Final[tuple[str, ...]] = ("L", "R")
#: A patient reference: a pseudonym such as ``P-0042`` (letters, digits, ``. _ -``), not a name.
PATIENT_PATTERN: Final[re.Pattern[str]] = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: Why a clip is left out of the follow-up (the keys of :func:`follow_up`'s ``left_out``).
LeftOut = Literal["longitudinal", "no_pixel_spacing", "no_nerve", "not_succeeded"]


@dataclass(frozen=True)
class ClipCsa:
    """One transverse clip's CSA: ``csa_mm2`` (the clip's median, mm²) at ``site`` (``wrist``
    or ``forearm``) on ``side`` (``L``, ``R`` or ``None``) at the visit of ``visit``."""

    analysis_id: str
    visit: date
    side: str | None
    site: str
    csa_mm2: float


_DATE: Final[re.Pattern[str]] = re.compile(r"(\d{4})[-_.]?(\d{2})[-_.]?(\d{2})")
_SIDE_WORDS: Final[dict[str, str]] = {"l": "L", "left": "L", "r": "R", "right": "R"}


def parse_side(text: str) -> str:
    """``L`` or ``R`` for ``l``/``r``/``left``/``right`` (any case); ``ValueError`` otherwise."""
    side = _SIDE_WORDS.get(text.strip().lower())
    if side is None:
        raise ValueError(f"{text[:20]!r} is not one of L, R (or left, right)")
    return side


def parse_visit(text: str, today: date | None = None) -> date:
    """The visit date in ``YYYY-MM-DD`` (or ``YYYYMMDD``, ``YYYY_MM_DD``, ``YYYY.MM.DD``), not later
    than tomorrow (``today``: UTC by default); ``ValueError`` saying which rule it breaks."""
    found = _DATE.fullmatch(text.strip())
    try:
        day = date(*(int(g) for g in found.groups())) if found else None
    except ValueError:
        day = None
    if day is None:
        raise ValueError(f"{text[:40]!r} is not a date YYYY-MM-DD")
    if day > (today or datetime.now(UTC).date()) + timedelta(days=1):
        raise ValueError(f"{day.isoformat()} is in the future")
    return day


def patient_problem(value: str) -> str | None:
    """Why ``value`` is not a usable patient reference, or ``None``."""
    if not PATIENT_PATTERN.fullmatch(value):
        return "must be 1-64 letters, digits, '.', '_' or '-' (a pseudonym such as P-0042, not a name), starting with a letter or digit"
    return None


def clip_csa(analysis_id: str, visit: date, side: str | None, status: str, result: Mapping[str, Any] | None) -> ClipCsa | LeftOut:
    """The clip's :class:`ClipCsa`, or why it is left out of the follow-up."""
    if status != "succeeded" or not result:
        return "not_succeeded"
    site = SITES.get(str(result.get("plane")))
    if site is None:
        return "longitudinal"
    csa = result.get("csa") or {}
    median = csa.get("median")
    if csa.get("unit") != "mm2":
        return "no_pixel_spacing"
    if not isinstance(median, int | float) or not math.isfinite(median) or median <= 0:
        return "no_nerve"
    return ClipCsa(analysis_id=analysis_id, visit=visit, side=side, site=site, csa_mm2=float(median))


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _site_entry(clips: list[ClipCsa], first: float | None, previous: float | None) -> dict[str, Any]:
    csa = sum(c.csa_mm2 for c in clips) / len(clips)
    return {
        "csa_mm2": _round(csa),
        "n_clips": len(clips),
        "change_from_first_mm2": _round(csa - first) if first is not None else None,
        "change_from_first_pct": _round(100.0 * (csa - first) / first, 1) if first is not None else None,
        "change_from_previous_mm2": _round(csa - previous) if previous is not None else None,
        "analyses": [c.analysis_id for c in clips],
    }


def side_visits(clips: Iterable[ClipCsa]) -> list[dict[str, Any]]:
    """The visits of one side, oldest first (see the module docstring for the fields)."""
    by_visit: dict[date, dict[str, list[ClipCsa]]] = defaultdict(lambda: defaultdict(list))
    for clip in clips:
        by_visit[clip.visit][clip.site].append(clip)
    first: dict[str, float] = {}
    previous: dict[str, float] = {}
    visits = []
    for visit in sorted(by_visit):
        entry: dict[str, Any] = {"visit": visit.isoformat()}
        for site in SITES.values():
            site_clips = by_visit[visit].get(site)
            if not site_clips:
                entry[site] = None
                continue
            entry[site] = _site_entry(site_clips, first.get(site), previous.get(site))
            csa = sum(c.csa_mm2 for c in site_clips) / len(site_clips)
            first.setdefault(site, csa)
            previous[site] = csa
        wrist, forearm = entry["wrist"], entry["forearm"]
        both = wrist is not None and forearm is not None
        entry["wrist_to_forearm_ratio"] = _round(wrist["csa_mm2"] / forearm["csa_mm2"]) if both else None
        entry["wrist_minus_forearm_mm2"] = _round(wrist["csa_mm2"] - forearm["csa_mm2"]) if both else None
        visits.append(entry)
    return visits


def follow_up(clips: Iterable[ClipCsa], left_out: Mapping[str, int] | None = None) -> dict[str, Any]:
    """``{"sides": [{"side", "visits"}], "n_clips", "left_out"}``: sides ``L``, ``R``, then
    unknown (``None``), each with :func:`side_visits`; ``left_out`` counts the clips that did not
    count, by reason (:data:`LeftOut`)."""
    by_side: dict[str | None, list[ClipCsa]] = defaultdict(list)
    for clip in clips:
        by_side[clip.side].append(clip)
    order = [s for s in (*SIDES, None) if s in by_side]
    return {
        "sides": [{"side": side, "visits": side_visits(by_side[side])} for side in order],
        "n_clips": sum(len(v) for v in by_side.values()),
        "left_out": {reason: int((left_out or {}).get(reason, 0)) for reason in get_args(LeftOut)},
    }
