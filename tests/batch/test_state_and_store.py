"""The batch journal (torn lines, content changes), the CSV row, and the additive store migration."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError

from gateway.store import AnalysisRepository
from gateway.store.models import Analysis, Batch
from ultramn.batch.outputs import record, summary_row
from ultramn.batch.state import TOKEN_FILE, BatchState, file_sha256


def test_journal_last_record_wins_and_torn_lines_are_ignored(tmp_path: Path) -> None:
    clip = tmp_path / "a.npy"
    clip.write_bytes(b"one")
    sha = file_sha256(clip)
    state = BatchState(tmp_path)
    state.append(record("a.npy", sha, 1.0, error=("corrupt_file", "bad")))
    state.append(record("a.npy", sha, 2.0, result={"plane": "TW"}))
    with open(tmp_path / "state.jsonl", "a") as fh:
        fh.write('{"clip": "b.npy", "status": "succ')  # a crash mid-line
    again = BatchState(tmp_path)
    assert set(again.records) == {"a.npy"} and again.is_done("a.npy", sha)
    again.append(record("c.npy", sha, 1.0, result={"plane": "TF"}))  # the next run's first clip, after the torn line
    assert set(BatchState(tmp_path).records) == {"a.npy", "c.npy"}  # was: glued to the torn line and lost
    clip.write_bytes(b"two")  # changed content: analysed again
    assert not again.is_done("a.npy", file_sha256(clip))


def test_upload_keys_are_stable_per_folder_and_differ_between_folders(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    key = BatchState(a).upload_key("exam/clip.mp4", "ab" * 32)
    assert len(key) == 64 and int(key, 16) >= 0
    assert BatchState(a).upload_key("exam/clip.mp4", "ab" * 32) == key  # a re-run sends the same key
    assert BatchState(a).upload_key("exam/clip.mp4", "cd" * 32) != key  # changed content: a new analysis
    assert BatchState(a).upload_key("exam/other.mp4", "ab" * 32) != key
    assert BatchState(b).upload_key("exam/clip.mp4", "ab" * 32) != key  # another folder, another batch
    (a / TOKEN_FILE).write_text("not a token\n")
    assert BatchState(a).upload_key("exam/clip.mp4", "ab" * 32) != key  # a damaged token is replaced
    assert len((a / TOKEN_FILE).read_text().strip()) == 32


def test_summary_row() -> None:
    result = {
        "plane": "TF",
        "plane_confidence": 0.87654321,
        "n_frames": 12,
        "csa": {"unit": "mm2", "median": 6.5, "min": 6.0, "max": 7.25},
        "excursion": {"unit": "mm", "max_from_first": 1.5, "tissue_shift_max": 4.25, "relative_to_tissue": {"max_from_first": 0.75}},
    }
    row = summary_row(record("x/y.mp4", "h", 1.23456, result=result), {"patient": "P1", "side": "L", "visit": "2026-01-10"})
    assert row == {
        "clip": "x/y.mp4",
        "patient": "P1",
        "side": "L",
        "visit": "2026-01-10",
        "plane": "TF",
        "view": "transverse",
        "confidence": 0.8765,
        "csa_median": 6.5,
        "csa_min": 6.0,
        "csa_max": 7.25,
        "csa_unit": "mm2",
        "excursion": 1.5,
        "excursion_unit": "mm",
        "excursion_tissue": 0.75,
        "probe_shift": 4.25,
        "n_frames": 12,
        "status": "succeeded",
        "error": "",
        "seconds": 1.235,
    }
    plain = {"unit": "mm", "max_from_first": 1.5}
    longitudinal = summary_row(record("l.mp4", "h", 1.0, result={**result, "plane": "LW", "excursion": plain}))
    assert longitudinal["view"] == "longitudinal" and longitudinal["excursion_tissue"] == "" and longitudinal["probe_shift"] == ""
    assert (longitudinal["patient"], longitudinal["side"], longitudinal["visit"]) == ("", "", "")  # no patterns: empty
    failed = summary_row(record("z.dcm", "h", 0.5, error=("corrupt_file", "no pixel data")))
    assert (
        failed["status"] == "failed"
        and failed["error"] == "corrupt_file: no pixel data"
        and failed["plane"] == ""
        and failed["view"] == ""
        and failed["csa_unit"] == ""
    )


def test_old_database_gets_the_batch_and_idempotency_columns(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:  # the analyses table as created before batches existed
        conn.execute(
            "CREATE TABLE analyses (id VARCHAR(32) PRIMARY KEY, created_at DATETIME, updated_at DATETIME, started_at DATETIME, "
            "finished_at DATETIME, status VARCHAR(16), upload_ext VARCHAR(16), upload_bytes INTEGER, format VARCHAR(16), options JSON, "
            "n_frames INTEGER, windows_total INTEGER, windows_done INTEGER, attempts INTEGER, plane VARCHAR(8), plane_confidence FLOAT, "
            "error_code VARCHAR(64), error_message TEXT, result JSON)"
        )
        conn.execute(
            "INSERT INTO analyses (id, status, upload_ext, options, windows_done, attempts) VALUES ('old', 'succeeded', '.mp4', '{}', 0, 1)"
        )
    repo = AnalysisRepository(f"sqlite:///{db}")
    try:
        old = repo.get("old")
        assert old is not None and old.batch_id is None
        repo.create_batch(Batch(id="b1", n_clips=1), [Analysis(id="new", batch_id="b1", batch_index=0)])
        assert [r.id for r in repo.batch_analyses("b1")] == ["new"]
        rows, nxt = repo.list_batches(10)
        assert [b.id for b in rows] == ["b1"] and nxt is None
        # the idempotency key column came too, unique like on a new database
        repo.create(Analysis(id="keyed", idempotency_key="k1"))
        found = repo.by_idempotency_key("k1")
        assert found is not None and found.id == "keyed" and repo.by_idempotency_key("k2") is None
        with pytest.raises(IntegrityError):
            repo.create(Analysis(id="twin", idempotency_key="k1"))
        repo.create(Analysis(id="unkeyed"))  # many rows without a key are fine
        repo.create_batch(Batch(id="b2", n_clips=0, idempotency_key="k1"), [])  # batches have keys of their own
        keyed = repo.batch_by_idempotency_key("k1")
        assert keyed is not None and keyed.id == "b2"
        with pytest.raises(IntegrityError):
            repo.create_batch(Batch(id="b3", n_clips=0, idempotency_key="k1"), [])
    finally:
        repo.close()
    AnalysisRepository(f"sqlite:///{db}").close()  # idempotent


def test_a_batches_table_from_before_idempotency_keys_gets_the_column(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:  # the batches table as the previous release created it
        conn.execute(
            "CREATE TABLE batches (id VARCHAR(32) PRIMARY KEY, created_at DATETIME, archive_ext VARCHAR(16), archive_bytes INTEGER, "
            "n_clips INTEGER, n_skipped INTEGER, options JSON)"
        )
        conn.execute(
            "INSERT INTO batches (id, archive_ext, archive_bytes, n_clips, n_skipped, options) VALUES ('old', '.zip', 1, 0, 0, '{}')"
        )
    repo = AnalysisRepository(f"sqlite:///{db}")
    try:
        old = repo.get_batch("old")
        assert old is not None and old.idempotency_key is None
        repo.create_batch(Batch(id="new", n_clips=0, idempotency_key="k"), [])
        with pytest.raises(IntegrityError):
            repo.create_batch(Batch(id="twin", n_clips=0, idempotency_key="k"), [])
    finally:
        repo.close()


def test_a_record_from_before_options_were_journalled_counts_as_the_defaults(tmp_path: Path) -> None:
    import json

    rec = record("a.npy", "h", 1.0, result={"plane": "TW"})
    del rec["options"]  # a journal line written by an earlier release
    (tmp_path / "state.jsonl").write_text(json.dumps(rec) + "\n")
    state = BatchState(tmp_path)
    assert state.is_done("a.npy", "h") and state.is_done("a.npy", "h", {})
    assert not state.is_done("a.npy", "h", {"pixel_spacing_mm": 0.1})
    state.append(record("a.npy", "h", 1.0, result={"plane": "TW"}, options={"pixel_spacing_mm": 0.1}))
    assert BatchState(tmp_path).is_done("a.npy", "h", {"pixel_spacing_mm": 0.1}) and not BatchState(tmp_path).is_done("a.npy", "h")


def test_journal_and_outputs_of_a_large_archive_are_not_held_in_memory(tmp_path: Path) -> None:
    import json
    import tracemalloc

    from ultramn.batch.outputs import write_outputs

    frames = [{"index": i, "plane": "TW", "area": 12.5, "centroid": [40.25, 60.5], "contour": [[1, 2]] * 20} for i in range(300)]
    big = {"plane": "TW", "plane_confidence": 0.9, "n_frames": 300, "frames": frames}  # a 300-frame clip's result
    n = 100
    with open(tmp_path / "state.jsonl", "w") as fh:  # the journal of a large batch (~7 MB)
        for i in range(n):
            fh.write(json.dumps(record(f"exam/c{i}.mp4", "h", 1.0, result=big)) + "\n")
    size = (tmp_path / "state.jsonl").stat().st_size
    assert size > 7e6
    tracemalloc.start()
    try:
        state = BatchState(tmp_path)
        assert all(state.is_done(f"exam/c{i}.mp4", "h") for i in range(n))
        assert write_outputs(tmp_path, [f"exam/c{i}.mp4" for i in range(n)], state.full_records) == (n, 0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < size / 2, peak  # was: every result in memory, several times the journal's size
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert len(lines) == n and json.loads(lines[-1])["result"] == big and "sha256" not in json.loads(lines[0])
    assert state.full("exam/c7.mp4") == json.loads((tmp_path / "state.jsonl").read_text().splitlines()[7])
