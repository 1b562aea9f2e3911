"""``ultramn live``: a recorded clip replayed to the real gateway's live stream (and the real Triton)."""

from __future__ import annotations

import csv
import re
import sys
from pathlib import Path

import httpx
import pytest

from tests.gateway.test_live import KEY, live_url  # noqa: F401 - the module's gateway fixture
from ultramn.cli import main
from ultramn.measure.frame_table import FRAME_COLUMNS

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "sample_TW.npz"


def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["ultramn", "live", *args])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("fps", ["0", "10"])
def test_a_replayed_clip_gets_every_frame_once_in_the_csv(
    live_url: str,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    fps: str,
) -> None:
    out = tmp_path / "live.csv"
    args = [str(SAMPLE), "--gateway", live_url, "--api-key", KEY, "--pixel-spacing", "0.1371", "--fps", fps, "--out", str(out), "--quiet"]
    code, stdout, err = run_cli(monkeypatch, capsys, *args)
    assert code == 0, err
    with open(out, newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == FRAME_COLUMNS
        rows = list(reader)
    assert sorted(int(r["frame"]) for r in rows) == list(range(24))  # every frame once: a result or a skip
    analysed = [r for r in rows if r["plane"]]
    skipped = [r for r in rows if not r["plane"]]
    assert all(r["nerve_present"] == "" and r["csa_px"] == "" for r in skipped)  # a skipped frame: its number only
    assert analysed and all(r["plane"] == "TW" and float(r["csa_mm2"]) > 0 for r in analysed)  # the sample is a TW clip in mm
    summary = re.search(r"24 frames sent, (\d+) analysed, (\d+) skipped", stdout)
    assert summary is not None and (int(summary[1]), int(summary[2])) == (len(analysed), len(skipped)), stdout
    if fps == "10":  # a third of the clip's own rate: the server keeps up, with room to spare on a busy machine
        assert not skipped


def test_bad_input_and_a_refused_key_exit_2(
    live_url: str,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run_cli(monkeypatch, capsys, str(SAMPLE), "--gateway", live_url, "--api-key", "wrong", "--out", str(tmp_path / "a.csv"))
    assert code == 2 and "refused the API key" in err, err
    code, _, err = run_cli(monkeypatch, capsys, str(tmp_path / "none.mp4"), "--gateway", live_url)
    assert code == 2 and "is not a file" in err
    (tmp_path / "notes.mp4").write_text("not a video")
    code, _, err = run_cli(monkeypatch, capsys, str(tmp_path / "notes.mp4"), "--gateway", live_url, "--out", str(tmp_path / "b.csv"))
    assert code == 2 and "unrecognised content" in err, err
    code, _, err = run_cli(monkeypatch, capsys, str(SAMPLE), "--gateway", "http://127.0.0.1:9", "--out", str(tmp_path / "c.csv"))
    assert code == 1 and "cannot reach" in err and not (tmp_path / "c.csv").exists()


def test_a_recorded_replay_becomes_an_analysis_of_the_patient(
    live_url: str,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = [str(SAMPLE), "--gateway", live_url, "--api-key", KEY, "--fps", "0", "--out", str(tmp_path / "r.csv"), "--quiet"]
    code, stdout, err = run_cli(monkeypatch, capsys, *args, "--record", "--patient", "P-cli", "--side", "L")
    assert code == 0, err
    found = re.search(r"recorded as analysis ([0-9a-f]{32}) \(24 frames\)", stdout)
    assert found is not None, stdout
    job = httpx.get(f"{live_url}/v1/analyses/{found[1]}", headers={"X-API-Key": KEY}, timeout=30).json()
    assert (job["patient"], job["side"], job["n_frames"], job["format"]) == ("P-cli", "L", 24, "live")
    # the follow-up options are for a recording only
    code, _, err = run_cli(monkeypatch, capsys, *args, "--patient", "P-cli")
    assert code == 2 and "go with --record" in err
