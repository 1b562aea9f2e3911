"""Patient, side and visit of a batch's clips, read from their paths, and the follow-up report.

An archive of recorded exams is usually laid out by patient and visit
(``P0042/2026-01-10/R_TW.mp4``). ``ultramn batch --patient-pattern REGEX`` (and
``--side-pattern``, ``--visit-pattern``) take the first group of each regular expression,
searched in the clip's name in the batch (its path inside INPUT), as the clip's patient
pseudonym, side and visit date. They go with each upload to the gateway (its follow-up,
``GET /v1/patients/{patient}``), into ``summary.csv``, and into ``followup.json``: the
:func:`ultramn.measure.followup.follow_up` report of every patient, computed here from the
batch's own results (so it needs no gateway, and works with ``--triton``).

A captured side reads ``L``/``R``/``left``/``right`` (any case); a captured visit reads
``YYYY-MM-DD``, ``YYYYMMDD``, ``YYYY_MM_DD`` or ``YYYY.MM.DD``. A capture that is not a valid
pseudonym, side or date counts as none, and the report says how many clips had none.
"""

from __future__ import annotations

import contextlib
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from ultramn.errors import UserInputError
from ultramn.measure.followup import ClipCsa, clip_csa, follow_up, parse_side, parse_visit, patient_problem

FOLLOWUP_FILE = "followup.json"


def _compile(pattern: str | None, option: str) -> re.Pattern[str] | None:
    if pattern is None:
        return None
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise UserInputError(f"{option} {pattern!r} is not a regular expression ({exc})") from exc
    if compiled.groups < 1:
        raise UserInputError(f"{option} {pattern!r} needs a group, e.g. '^(P\\d+)/': its first group is the value")
    return compiled


@dataclass(frozen=True)
class PatientRules:
    """The three patterns (any may be ``None``); :meth:`of` reads a clip's name with them."""

    patient: re.Pattern[str] | None = None
    side: re.Pattern[str] | None = None
    visit: re.Pattern[str] | None = None

    @classmethod
    def compile(cls, patient: str | None, side: str | None, visit: str | None) -> PatientRules:
        """Compile the options' patterns; :class:`UserInputError` naming the option when one is
        not a regular expression or has no group."""
        return cls(_compile(patient, "--patient-pattern"), _compile(side, "--side-pattern"), _compile(visit, "--visit-pattern"))

    def __bool__(self) -> bool:
        return any(p is not None for p in (self.patient, self.side, self.visit))

    @staticmethod
    def _group(pattern: re.Pattern[str] | None, name: str) -> str | None:
        found = pattern.search(name) if pattern is not None else None
        return found.group(1) if found is not None and found.group(1) is not None else None

    def of(self, name: str) -> dict[str, str]:
        """The upload fields of the clip called ``name``: ``patient``, ``side``, ``visit``
        (``YYYY-MM-DD``), each only when its pattern finds a valid value."""
        fields: dict[str, str] = {}
        patient = self._group(self.patient, name)
        if patient is not None and patient_problem(patient) is None:
            fields["patient"] = patient
        side = self._group(self.side, name)
        if side is not None:
            with contextlib.suppress(ValueError):  # not a side: none
                fields["side"] = parse_side(side)
        visit = self._group(self.visit, name)
        if visit is not None:
            with contextlib.suppress(ValueError):  # not a date, or a future one: none
                fields["visit"] = parse_visit(visit).isoformat()
        return fields


def followup_report(clips: Iterable[str], records: Mapping[str, dict[str, Any]], rules: PatientRules) -> dict[str, Any]:
    """``followup.json``: ``{"patients": [{"patient", "sides", "n_clips", "left_out",
    "clips_without_visit"}], "clips_without_patient"}`` over the batch's ``clips`` (their journal
    ``records``; a clip without a record counts as not succeeded)."""
    by_patient: dict[str, list[ClipCsa]] = defaultdict(list)
    left_out: dict[str, Counter[str]] = {}
    undated: Counter[str] = Counter()
    without_patient = 0
    for name in clips:
        fields = rules.of(name)
        patient = fields.get("patient")
        if patient is None:
            without_patient += 1
            continue
        left_out.setdefault(patient, Counter())  # every patient gets an entry, even with no clip that counts
        if "visit" not in fields:
            undated[patient] += 1
            continue
        rec = records.get(name) or {}
        item = clip_csa(name, date.fromisoformat(fields["visit"]), fields.get("side"), str(rec.get("status")), rec.get("result"))
        if isinstance(item, ClipCsa):
            by_patient[patient].append(item)
        else:
            left_out[patient][item] += 1
    patients = [
        {"patient": p, **follow_up(by_patient.get(p, []), left_out[p]), "clips_without_visit": undated[p]} for p in sorted(left_out)
    ]
    return {"patients": patients, "clips_without_patient": without_patient}
