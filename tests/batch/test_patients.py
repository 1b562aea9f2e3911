"""Patient, side and visit read from a batch's clip paths, and ``followup.json``: the rules on
names, then ``ultramn batch`` through the real gateway on a folder laid out by patient and visit."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.batch.test_batch_cli import KEY, gateway_url, run_cli  # noqa: F401
from ultramn.batch.patients import PatientRules, followup_report
from ultramn.errors import UserInputError

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
RULES = PatientRules.compile(r"^(P\d+)/", r"/([LR]|left|right)_", r"/(\d{4}-?\d{2}-?\d{2})/")


def test_the_patterns_read_patient_side_and_visit_from_a_path() -> None:
    assert RULES.of("P0042/2026-01-10/R_TW.mp4") == {"patient": "P0042", "side": "R", "visit": "2026-01-10"}
    assert RULES.of("P0042/20260315/left_TF.dcm") == {"patient": "P0042", "side": "L", "visit": "2026-03-15"}
    assert RULES.of("P7/2026-02-30/R_TW.mp4") == {"patient": "P7", "side": "R"}  # no such day: no visit
    assert RULES.of("misc/clip.mp4") == {}
    assert not PatientRules() and RULES.of("x") == {} and PatientRules().of("P1/2026-01-01/R_x") == {}
    loose = PatientRules.compile(r"^(P\d+)/", r"/(\w+?)_", r"/([\d._-]+)/")  # any word for the side, any date form
    assert loose.of("P1/2026.01.10/Right_TW.mp4") == {"patient": "P1", "side": "R", "visit": "2026-01-10"}
    assert loose.of("P1/2999-01-01/up_TW.mp4") == {"patient": "P1"}  # a future date and not a side: none


@pytest.mark.parametrize(
    ("patient", "side", "visit", "words"),
    [
        (r"^P\d+/", None, None, "--patient-pattern '^P\\\\d+/' needs a group"),
        ("(unclosed", None, None, "--patient-pattern '(unclosed' is not a regular expression"),
        (None, "[LR", None, "--side-pattern"),
        (None, None, r"\d{8}", "--visit-pattern"),
    ],
)
def test_patterns_without_a_group_or_that_do_not_compile_are_refused(
    patient: str | None, side: str | None, visit: str | None, words: str
) -> None:
    with pytest.raises(UserInputError) as exc:
        PatientRules.compile(patient, side, visit)
    assert words in str(exc.value)


def test_the_report_groups_by_patient_and_counts_what_it_leaves_out() -> None:
    def done(plane: str, csa: float | None, unit: str = "mm2") -> dict[str, object]:
        return {"status": "succeeded", "result": {"plane": plane, "csa": {"unit": unit, "median": csa}}}

    records = {
        "P1/2026-01-10/R_TW.mp4": done("TW", 12.0),
        "P1/2026-01-10/R_TF.mp4": done("TF", 8.0),
        "P1/2026-04-10/R_TW.mp4": done("TW", 10.0),
        "P1/2026-04-10/R_LW.mp4": done("LW", 40.0),
        "P1/undated/R_TW.mp4": done("TW", 11.0),
        "P2/2026-01-10/L_TW.mp4": {"status": "failed", "result": None},
        "loose.mp4": done("TW", 9.0),
    }
    report = followup_report([*records, "P2/2026-02-01/L_TW.mp4"], records, RULES)  # the last one has no record yet
    assert report["clips_without_patient"] == 1
    p1, p2 = report["patients"]
    assert p1["patient"] == "P1" and p1["clips_without_visit"] == 1 and p1["n_clips"] == 3
    (right,) = p1["sides"]
    first, second = right["visits"]
    assert first["wrist_to_forearm_ratio"] == 1.5 and second["wrist"]["change_from_first_mm2"] == -2.0
    assert first["wrist"]["analyses"] == ["P1/2026-01-10/R_TW.mp4"]  # the clip's name in the batch
    assert p1["left_out"]["longitudinal"] == 1
    assert p2["patient"] == "P2" and p2["sides"] == [] and p2["left_out"]["not_succeeded"] == 2


def test_batch_writes_followup_json_and_the_gateway_keeps_the_patient(
    gateway_url: str,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exams = tmp_path / "exams"
    for rel, sample in (
        ("P0042/2026-01-10/R_TW.npz", "sample_TW.npz"),
        ("P0042/20260315/R_TW.npz", "sample_TW.npz"),
        ("P0042/20260315/R_LF.mp4", "sample_LF.mp4"),
        ("misc/clip.npz", "sample_TW.npz"),
    ):
        (exams / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(SAMPLES / sample, exams / rel)
    out = tmp_path / "out"
    args = ["batch", str(exams), "--out", str(out), "--gateway", gateway_url, "--api-key", KEY, "--quiet"]
    patterns = ["--patient-pattern", r"^(P\d+)/", "--side-pattern", r"/([LR])_", "--visit-pattern", r"/(\d{4}-?\d{2}-?\d{2})/"]
    assert run_cli(monkeypatch, *args, *patterns) == 0

    report = json.loads((out / "followup.json").read_text())
    assert report["clips_without_patient"] == 1
    (patient,) = report["patients"]
    assert patient["patient"] == "P0042" and patient["n_clips"] == 2 and patient["left_out"]["longitudinal"] == 1
    (right,) = patient["sides"]
    assert [v["visit"] for v in right["visits"]] == ["2026-01-10", "2026-03-15"]
    assert right["visits"][1]["wrist"]["change_from_first_mm2"] == 0.0  # the same clip at both visits
    with open(out / "summary.csv", newline="") as fh:
        rows = {r["clip"]: r for r in csv.DictReader(fh)}
    assert (rows["P0042/20260315/R_LF.mp4"]["patient"], rows["P0042/20260315/R_LF.mp4"]["visit"]) == ("P0042", "2026-03-15")
    assert rows["misc/clip.npz"]["patient"] == "" and rows["misc/clip.npz"]["side"] == ""

    # the gateway stored the fields with each upload: its own follow-up agrees
    served = httpx.get(f"{gateway_url}/v1/patients/P0042", headers={"X-API-Key": KEY}, timeout=30).json()

    def csa_by_visit(sides: list[dict[str, Any]]) -> list[list[tuple[str, float]]]:
        return [[(v["visit"], v["wrist"]["csa_mm2"]) for v in s["visits"]] for s in sides]

    assert csa_by_visit(served["sides"]) == csa_by_visit(patient["sides"])  # (its analyses are named by id, not path)
    assert served["n_clips"] == 2 and served["left_out"] == patient["left_out"]

    # a pattern without a group is refused before anything runs
    assert run_cli(monkeypatch, *args, "--patient-pattern", r"^P\d+/") == 2
