"""`ultramn batch` against the REAL stack: uvicorn serving create_app (in a thread) on the real Triton,
and the ``--triton`` direct path on the same archive."""

from __future__ import annotations

import csv
import json
import shutil
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from gateway.main import create_app
from gateway.threaded_server import serve_in_thread
from tests.batch.archives import CORRUPT, N_FRAMES, ClipSet, malicious
from tests.gateway.helpers import make_settings
from ultramn.batch.outputs import SUMMARY_COLUMNS
from ultramn.cli import main
from ultramn.measure.frame_table import FRAME_COLUMNS
from ultramn.serving.embedded import EmbeddedTriton

KEY = "batch-key"


@pytest.fixture(scope="module")
def gateway_url(triton_server: EmbeddedTriton, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = make_settings(tmp_path_factory.mktemp("gw"), triton_server.grpc_url, api_key=KEY)
    with serve_in_thread(create_app(settings)) as url:
        yield url


def run_cli(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    """``ultramn ARGS`` through the real entry point; its exit code."""
    monkeypatch.setattr(sys, "argv", ["ultramn", *args])
    try:
        main()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def read_outputs(out: Path) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, str]]]:
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    with open(out / "summary.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == SUMMARY_COLUMNS
        rows = list(reader)
    assert len(lines) == len({r["clip"] for r in lines}) and len(rows) == len(lines)
    with open(out / "frames.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == ("clip", *FRAME_COLUMNS)
        frame_rows = list(reader)
    # frames.csv: every frame of every succeeded clip, in the clips' order, as its result says
    expected = [(r["clip"], i, f["csa_px"]) for r in lines if r["result"] for i, f in enumerate(r["result"].get("frames", []))]
    assert [(f["clip"], int(f["frame"]), int(f["csa_px"])) for f in frame_rows] == expected
    return {r["clip"]: r for r in lines}, {r["clip"]: r for r in rows}


def check_outputs(out: Path, clip_set: ClipSet) -> dict[str, dict[str, Any]]:
    """Every clip has a line and a row; good ones succeeded with masks; the corrupt one failed with its error."""
    results, rows = read_outputs(out)
    assert set(results) == set(clip_set.clips) == set(rows)
    for name in clip_set.good:
        rec, row = results[name], rows[name]
        assert rec["status"] == "succeeded", rec["error"]
        assert rec["result"]["n_frames"] == N_FRAMES and rec["result"]["plane"] in ("TW", "TF", "LW", "LF")
        assert rec["result"]["analysis"]["temporal_filter"] == 5 and rec["result"]["analysis"]["blend"] == "triangular"
        assert row["status"] == "succeeded" and row["plane"] == rec["result"]["plane"] and row["n_frames"] == str(N_FRAMES)
        assert float(row["confidence"]) == pytest.approx(rec["result"]["plane_confidence"], abs=1e-4)
        assert float(row["seconds"]) > 0 and row["error"] == ""
        with np.load(out / rec["masks"]) as data:
            assert data["masks"].shape == (N_FRAMES, clip_set.clips[name].shape[1], clip_set.clips[name].shape[2])  # type: ignore[union-attr]
            assert data["plane_probs"].shape == (N_FRAMES, 4)
    bad, bad_row = results[CORRUPT], rows[CORRUPT]
    assert bad["status"] == "failed" and bad["result"] is None and bad["masks"] is None
    assert bad["error"]["code"] == "unsupported_media_type" and "unrecognised content" in bad["error"]["message"]
    # the message names the clip (gateway: its name in the batch; direct: its file), never the gateway's "upload.mp4"
    assert bad["error"]["message"].split(":")[0] in (CORRUPT, Path(CORRUPT).name), bad["error"]
    assert bad_row["status"] == "failed" and bad_row["error"].startswith("unsupported_media_type:") and bad_row["plane"] == ""
    assert not (out / "masks" / f"{CORRUPT}.npz").exists()
    return results


def analyses_on(gateway_url: str) -> list[str]:
    r = httpx.get(f"{gateway_url}/v1/analyses", params={"limit": 200}, headers={"X-API-Key": KEY})
    assert r.status_code == 200, r.text
    return [item["id"] for item in r.json()["items"]]


def state_lines(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "state.jsonl").read_text().splitlines()]


def test_batch_through_the_gateway_is_complete_and_resumable(
    gateway_url: str, clip_set: ClipSet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    args = ["batch", str(clip_set.archive), "--out", str(out), "--gateway", gateway_url, "--api-key", KEY, "--concurrency", "3", "--quiet"]
    assert run_cli(monkeypatch, *args) == 1  # one clip failed: reported, not fatal
    results = check_outputs(out, clip_set)
    ids = analyses_on(gateway_url)
    assert sorted(ids) == sorted(results[n]["analysis_id"] for n in clip_set.good)  # the corrupt upload was refused (415)
    assert len(state_lines(out)) == len(clip_set.clips)

    # re-run: the done clips are skipped, only the failed one is tried again
    assert run_cli(monkeypatch, *args) == 1
    lines = state_lines(out)
    assert len(lines) == len(clip_set.clips) + 1 and lines[-1]["clip"] == CORRUPT and lines[-1]["status"] == "failed"
    assert sorted(analyses_on(gateway_url)) == sorted(ids)  # nothing new analysed
    again = check_outputs(out, clip_set)
    assert {n: again[n]["analysis_id"] for n in clip_set.good} == {n: results[n]["analysis_id"] for n in clip_set.good}

    # fix the corrupt clip's content: it is retried and now succeeds; a changed clip is analysed again
    fixed = tmp_path / "fixed"
    fixed.mkdir()
    with zipfile.ZipFile(clip_set.archive) as zf:
        zf.extractall(fixed)
    good_mp4 = fixed / "exam1" / "clip_a.mp4"
    shutil.copy(good_mp4, fixed / CORRUPT)
    args[1] = str(fixed)
    assert run_cli(monkeypatch, *args) == 0
    lines = state_lines(out)
    assert [rec["clip"] for rec in lines[len(clip_set.clips) + 1 :]] == [CORRUPT]
    final, rows = read_outputs(out)
    assert final[CORRUPT]["status"] == "succeeded" and rows[CORRUPT]["status"] == "succeeded"
    assert len(analyses_on(gateway_url)) == len(ids) + 1


def test_batch_direct_on_triton_matches_the_gateway(
    gateway_url: str, triton_server: EmbeddedTriton, clip_set: ClipSet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    direct, via = tmp_path / "direct", tmp_path / "via"
    assert run_cli(monkeypatch, "batch", str(clip_set.tar), "--out", str(direct), "--triton", triton_server.grpc_url, "--quiet") == 1
    results = check_outputs(direct, clip_set)
    assert all(results[n]["analysis_id"] is None for n in clip_set.good)
    assert run_cli(monkeypatch, "batch", str(clip_set.tar), "--out", str(via), "--gateway", gateway_url, "--api-key", KEY, "--quiet") == 1
    via_results = check_outputs(via, clip_set)
    for name in clip_set.good:  # same pipeline, same model: same answers
        a, b = results[name]["result"], via_results[name]["result"]
        assert a["plane"] == b["plane"] and a["plane_confidence"] == pytest.approx(b["plane_confidence"], abs=1e-6)
        with np.load(direct / results[name]["masks"]) as da, np.load(via / via_results[name]["masks"]) as db:
            assert np.array_equal(da["masks"], db["masks"])
    # a re-run of the direct path does nothing new but the failed clip
    assert run_cli(monkeypatch, "batch", str(clip_set.tar), "--out", str(direct), "--triton", triton_server.grpc_url, "--quiet") == 1
    assert [r["clip"] for r in state_lines(direct)][len(clip_set.clips) :] == [CORRUPT]


def test_hostile_archives_and_bad_input_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for what, path in malicious(tmp_path / "evil").items():
        out = tmp_path / f"out-{what}"
        assert run_cli(monkeypatch, "batch", str(path), "--out", str(out), "--gateway", "http://127.0.0.1:9", "--quiet") == 2, what
        err = capsys.readouterr().err
        assert f"refused {path.name}" in err, (what, err)
        assert not (out / "results.jsonl").exists()
    assert not (tmp_path / "evil.png").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no clips here")
    assert run_cli(monkeypatch, "batch", str(empty), "--out", str(tmp_path / "o1"), "--quiet") == 2
    assert "no clips" in capsys.readouterr().err
    for stride in ("0", "9"):  # the API's bounds, checked before any clip (--triton failed every clip with stride 9)
        code = run_cli(monkeypatch, "batch", str(empty), "--out", str(tmp_path / "o3"), "--triton", "127.0.0.1:9", "--stride", stride)
        assert code == 2 and "--stride must be in [1, 8] frames" in capsys.readouterr().err
    assert run_cli(monkeypatch, "batch", str(tmp_path / "missing"), "--out", str(tmp_path / "o2"), "--quiet") == 2


def test_an_out_under_a_file_or_a_malformed_triton_address_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file as --out gave "[Errno 17] File exists", one under a file "[Errno 20] Not a directory"; a --triton
    without a port was tried as an address and reported as an unreachable Triton (exit 1)."""
    clips = tmp_path / "clips"
    clips.mkdir()
    (tmp_path / "notes.txt").write_text("a file")
    for out, expected in (
        (tmp_path / "notes.txt", "it is a file, not a folder"),
        (tmp_path / "notes.txt" / "o", f"{tmp_path / 'notes.txt'} is a file, not a folder"),
    ):
        assert run_cli(monkeypatch, "batch", str(clips), "--out", str(out), "--gateway", "http://127.0.0.1:9", "--quiet") == 2
        err = capsys.readouterr().err
        assert f"--out {out}: {expected}" in err and "Errno" not in err, err
    for address in ("127.0.0.1", "localhost:grpc", "ftp://127.0.0.1:8001", "127.0.0.1:8001/v2"):
        assert run_cli(monkeypatch, "batch", str(clips), "--out", str(tmp_path / "o"), "--triton", address, "--quiet") == 2
        err = capsys.readouterr().err
        assert f"--triton must be HOST:PORT (a gRPC address such as 127.0.0.1:8001), got {address!r}" in err, err
    assert not (tmp_path / "o").exists()


def test_unreachable_gateway_exits_1(
    clip_set: ClipSet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "o"
    code = run_cli(monkeypatch, "batch", str(clip_set.archive), "--out", str(out), "--gateway", "http://127.0.0.1:9", "--quiet")
    assert code == 1 and "cannot reach the gateway" in capsys.readouterr().err


def test_triton_path_without_the_serve_extra_exits_2(
    clip_set: ClipSet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "gateway.batch_direct", None)  # import fails as without fastapi/tritonclient
    code = run_cli(monkeypatch, "batch", str(clip_set.archive), "--out", str(tmp_path / "o"), "--triton", "127.0.0.1:9", "--quiet")
    assert code == 2 and "needs the serve extra" in capsys.readouterr().err


class LosesAnswers(httpx.AsyncBaseTransport):
    """Injected fault: the first ``n`` uploads reach the gateway, their answers are lost."""

    def __init__(self, n: int) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.n = n

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        resp = await self.inner.handle_async_request(request)
        if request.method == "POST" and self.n > 0:
            self.n -= 1
            await resp.aread()
            await resp.aclose()
            raise httpx.ReadError("connection reset (injected)", request=request)
        return resp

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_lost_answers_are_retried_and_a_rerun_gets_the_accepted_jobs_back(
    gateway_url: str, clip_set: ClipSet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from ultramn.batch.discover import discover
    from ultramn.batch.gateway_client import GatewayAnalyzer
    from ultramn.batch.runner import run_batch

    found = discover(clip_set.archive, tmp_path / "work")
    before = set(analyses_on(gateway_url))

    async def batch(out: Path, lost: int, retries: int) -> int:
        analyzer = GatewayAnalyzer(gateway_url, api_key=KEY, transport=LosesAnswers(lost), transport_retries=retries, poll_s=0.05)
        try:  # the model the gateway serves goes into the keys, as in the CLI
            model = await analyzer.served_model()
            return (await run_batch(found.clips, analyzer, out, concurrency=2, progress=False, model=model)).failed
        finally:
            await analyzer.aclose()

    # every first answer lost, retried at once with the same key: one job per clip, not two
    retried = tmp_path / "retried"
    assert asyncio.run(batch(retried, lost=2, retries=3)) == 1  # only the corrupt clip
    results = check_outputs(retried, clip_set)
    made = set(analyses_on(gateway_url)) - before
    assert made == {results[n]["analysis_id"] for n in clip_set.good}

    # the batch "interrupted" with uploads accepted but unanswered (no retries): every clip failed ...
    out = tmp_path / "out"
    assert asyncio.run(batch(out, lost=len(clip_set.clips), retries=0)) == len(clip_set.clips)
    assert {r["error"]["code"] for r in state_lines(out)} == {"gateway_unreachable"}
    accepted = set(analyses_on(gateway_url)) - before - made
    assert len(accepted) == len(clip_set.good)  # ... yet the gateway has them
    # the re-run (the real CLI, same folder) gets those jobs back instead of uploading them a second time
    args = ["batch", str(clip_set.archive), "--out", str(out), "--gateway", gateway_url, "--api-key", KEY, "--quiet"]
    assert run_cli(monkeypatch, *args) == 1
    rerun = check_outputs(out, clip_set)
    assert {rerun[n]["analysis_id"] for n in clip_set.good} == accepted
    assert set(analyses_on(gateway_url)) - before - made == accepted
    # another output folder is another batch: its clips are analysed afresh
    assert run_cli(monkeypatch, *[*args[:3], str(tmp_path / "other"), *args[4:]]) == 1
    assert len(set(analyses_on(gateway_url)) - before - made - accepted) == len(clip_set.good)
