"""`ultramn analyze` against the real gateway served by uvicorn (in a thread) and the real Triton."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from gateway.main import create_app
from gateway.threaded_server import serve_in_thread
from tests.gateway.conftest import SynthClip
from tests.gateway.helpers import make_settings, write_clip
from ultramn.cli import app as cli_app
from ultramn.cli import main
from ultramn.serving.embedded import EmbeddedTriton


@pytest.fixture
def gateway_url(triton_server: EmbeddedTriton, tmp_path: Path) -> Iterator[str]:
    settings = make_settings(tmp_path / "data", triton_server.grpc_url, api_key="k")
    with serve_in_thread(create_app(settings)) as url:
        yield url


def test_analyze_writes_results(gateway_url: str, tmp_path: Path, clip: SynthClip) -> None:
    path = write_clip("mp4", clip.frames, tmp_path / "files")
    out = tmp_path / "out"
    runner = CliRunner()
    args = ["analyze", str(path), "--gateway", gateway_url, "--out", str(out), "--api-key", "k", "--pixel-spacing", "0.2", "--quiet"]
    res = runner.invoke(cli_app, args)
    assert res.exit_code == 0, res.output
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "succeeded" and result["result"]["n_frames"] == 16
    assert result["result"]["spacing_source"] == "request"
    with np.load(out / "masks.npz") as data:
        masks = data["masks"]
    pngs = sorted((out / "masks").glob("frame_*.png"))
    assert len(pngs) == 16 and masks.shape == (16, 128, 160)
    assert np.array_equal(np.asarray(Image.open(pngs[5])) > 0, masks[5] > 0)
    with open(out / "frames.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [float(r["csa_mm2"] or 0) for r in rows] == [f["csa_mm2"] or 0 for f in result["result"]["frames"]]
    assert not (out / "overlay.mp4").exists()  # only with --video

    res = runner.invoke(cli_app, [*args, "--video", "--patient", "P-7", "--side", "l", "--visit", "2026-03-01"])
    assert res.exit_code == 0, res.output
    again = json.loads((out / "result.json").read_text())
    assert (again["patient"], again["side"], again["visit"]) == ("P-7", "L", "2026-03-01")
    with av.open(str(out / "overlay.mp4")) as video:
        assert sum(1 for _ in video.decode(video=0)) == 16


def test_analyze_bad_input_exits_2(gateway_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bogus = tmp_path / "notes.mp4"
    bogus.write_text("not a video")
    for args, code in (
        (["analyze", str(bogus), "--gateway", gateway_url, "--api-key", "k", "--quiet"], 2),  # 415 from the gateway
        (["analyze", str(bogus), "--gateway", gateway_url, "--api-key", "wrong", "--quiet"], 2),  # 403
        (["analyze", str(tmp_path / "missing.mp4"), "--gateway", gateway_url], 2),
        (["analyze", str(bogus), "--gateway", gateway_url, "--pixel-spacing", "80"], 2),  # um taken for mm
        (["analyze", str(bogus), "--gateway", "http://127.0.0.1:9", "--quiet"], 1),  # nobody there
    ):
        monkeypatch.setattr(sys, "argv", ["ultramn", *args])
        with pytest.raises(SystemExit) as exc:
            main()
        assert exc.value.code == code, args
