"""Follow-up across visits through the real app and Triton: the upload's ``patient``, ``side``
and ``visit`` fields, the ``patient``/``side`` list filters and ``GET /v1/patients/{patient}``."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import inspect

from gateway.store import Analysis, AnalysisRepository, JobStatus
from tests.gateway.helpers import assert_error, make_settings, running_gateway, upload
from tests.serving.fixtures import EmbeddedTriton

pytestmark = pytest.mark.anyio

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def done_row(job_id: str, patient: str, visit: str, side: str | None, plane: str, csa: float | None, unit: str = "mm2") -> Analysis:
    """A finished analysis as the worker stores it, with only the result fields the follow-up reads."""
    return Analysis(
        id=job_id,
        status=JobStatus.SUCCEEDED.value,
        patient=patient,
        side=side,
        visit=visit,
        plane=plane,
        result={"plane": plane, "csa": {"unit": unit, "median": csa}},
    )


async def test_uploads_with_a_patient_make_a_follow_up(triton_server: EmbeddedTriton, tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", triton_server.grpc_url)
    async with running_gateway(settings) as client:
        # a real transverse clip with its pixel spacing (TW, CSA in mm²) and a longitudinal one without
        tw = await upload(client, SAMPLES / "sample_TW.npz", wait=True, patient="P-0042", side="r", visit="2026-01-10")
        assert tw.status_code == 200, tw.text
        body = tw.json()
        assert (body["patient"], body["side"], body["visit"]) == ("P-0042", "R", "2026-01-10")
        assert body["result"]["plane"] == "TW" and body["result"]["csa"]["unit"] == "mm2"
        lf = await upload(client, SAMPLES / "sample_LF.mp4", wait=True, patient="P-0042", side="R")
        assert lf.status_code == 200 and lf.json()["visit"] == datetime.now(UTC).date().isoformat()  # today by default
        other = await upload(client, SAMPLES / "sample_TW.npz", wait=True)
        assert other.json()["patient"] is None and other.json()["visit"] is None

        r = await client.get("/v1/patients/P-0042")
        assert r.status_code == 200, r.text
        report = r.json()
        assert report["patient"] == "P-0042" and report["n_clips"] == 1
        assert report["left_out"] == {"longitudinal": 1, "no_pixel_spacing": 0, "no_nerve": 0, "not_succeeded": 0}
        (side,) = report["sides"]
        (visit,) = side["visits"]
        assert side["side"] == "R" and visit["visit"] == "2026-01-10" and visit["forearm"] is None
        assert visit["wrist"]["analyses"] == [body["id"]]
        assert visit["wrist"]["csa_mm2"] == pytest.approx(body["result"]["csa"]["median"], abs=1e-3)

        listed = (await client.get("/v1/analyses", params={"patient": "P-0042"})).json()["items"]
        assert {a["id"] for a in listed} == {body["id"], lf.json()["id"]}
        assert [a["id"] for a in (await client.get("/v1/analyses", params={"patient": "P-0042", "side": "L"})).json()["items"]] == []

        # bad fields are refused before anything is stored
        for fields, words in (
            ({"patient": "Jane Doe"}, "patient: must be"),
            ({"patient": "P1", "side": "up"}, "side: 'up' is not one of L, R"),
            ({"patient": "P1", "visit": "2026-13-01"}, "visit: '2026-13-01' is not a date"),
            ({"patient": "P1", "visit": "10/01/2026"}, "is not a date YYYY-MM-DD"),
            ({"patient": "P1", "visit": "2999-01-01"}, "is in the future"),
        ):
            bad = await upload(client, SAMPLES / "sample_TW.npz", **fields)
            assert words in assert_error(bad, 422, "validation_error")["error"]["message"], (fields, bad.text)
        assert (await client.get("/v1/analyses", params={"patient": "P1"})).json()["items"] == []
        assert_error(await client.get("/v1/patients/P-9999"), 404, "not_found")
        assert_error(await client.get("/v1/patients/Jane Doe"), 422, "validation_error")

        # erasing the patient removes its analyses and their files, and nobody else's
        overlay = await client.get(f"/v1/analyses/{body['id']}/overlay.mp4")
        assert overlay.status_code == 200
        data = settings.data_dir
        assert any((data / "uploads").glob(f"{body['id']}.*")) and (data / "overlays" / f"{body['id']}.mp4").is_file()
        gone = await client.delete("/v1/patients/P-0042")
        assert gone.status_code == 200 and gone.json() == {"patient": "P-0042", "deleted": 2}
        for job_id in (body["id"], lf.json()["id"]):
            assert_error(await client.get(f"/v1/analyses/{job_id}"), 404, "not_found")
            assert not any(p.name.startswith(job_id) for p in data.rglob("*")), job_id  # upload, masks, video
        assert (await client.get(f"/v1/analyses/{other.json()['id']}")).status_code == 200
        assert_error(await client.get("/v1/patients/P-0042"), 404, "not_found")
        assert_error(await client.delete("/v1/patients/P-0042"), 404, "not_found")
        assert_error(await client.delete("/v1/patients/Jane Doe"), 422, "validation_error")


async def test_visits_sides_ratio_and_change_from_stored_analyses(triton_server: EmbeddedTriton, tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", triton_server.grpc_url)
    settings.data_dir.mkdir(parents=True)
    repo = AnalysisRepository(settings.sqlalchemy_url)
    for row in (
        done_row("a1", "P7", "2026-02-01", "R", "TW", 14.0),
        done_row("a2", "P7", "2026-02-01", "R", "TW", 12.0),
        done_row("a3", "P7", "2026-02-01", "R", "TF", 8.0),
        done_row("a4", "P7", "2026-05-01", "R", "TW", 10.4),
        done_row("a5", "P7", "2026-05-01", "R", "TF", 8.0),
        done_row("a6", "P7", "2026-05-01", "L", "TW", 9.0),
        done_row("a7", "P7", "2026-05-01", "L", "TW", 700.0, unit="px"),
        done_row("a8", "P7", "2026-05-01", "L", "TW", None),
    ):
        repo.create(row)
    repo.create(Analysis(id="a9", status=JobStatus.FAILED.value, patient="P7", side="L", visit="2026-05-01"))
    repo.close()
    async with running_gateway(settings) as client:
        report = (await client.get("/v1/patients/P7")).json()
    left, right = report["sides"]
    assert left["side"] == "L" and [v["wrist"]["csa_mm2"] for v in left["visits"]] == [9.0]
    first, second = right["visits"]
    assert (first["wrist"]["csa_mm2"], first["wrist"]["n_clips"], first["forearm"]["csa_mm2"]) == (13.0, 2, 8.0)
    assert first["wrist_to_forearm_ratio"] == 1.625 and first["wrist_minus_forearm_mm2"] == 5.0
    assert second["wrist"]["change_from_first_mm2"] == -2.6 and second["wrist"]["change_from_first_pct"] == -20.0
    assert second["wrist_to_forearm_ratio"] == 1.3
    assert report["n_clips"] == 6
    assert report["left_out"] == {"longitudinal": 0, "no_pixel_spacing": 1, "no_nerve": 1, "not_succeeded": 1}


def test_a_database_of_an_older_gateway_gets_the_follow_up_columns(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    AnalysisRepository(url).close()
    with sqlite3.connect(tmp_path / "old.db") as db:  # back to the schema before follow-up
        db.execute("DROP INDEX ix_analyses_patient")
        for column in ("patient", "side", "visit"):
            db.execute(f"ALTER TABLE analyses DROP COLUMN {column}")
        columns = "id, created_at, updated_at, status, upload_ext, upload_bytes, options, windows_done, attempts"
        now = "2026-01-01 00:00:00"
        db.execute(f"INSERT INTO analyses ({columns}) VALUES ('old', '{now}', '{now}', 'succeeded', '', 0, '{{}}', 0, 0)")
    repo = AnalysisRepository(url)
    try:
        assert {"patient", "side", "visit"} <= {c["name"] for c in inspect(repo.engine).get_columns("analyses")}
        old = repo.get("old")
        assert old is not None and old.patient is None  # the old row is kept, without a patient
        repo.create(done_row("new", "P1", "2026-01-01", "L", "TW", 9.0))
        assert [r.id for r in repo.patient_analyses("P1")] == ["new"]
    finally:
        repo.close()
