"""`ultramn analyze` on bad options, a re-used output folder, a URL that is not a gateway and Ctrl-C
(the real gateway in a thread on the real Triton)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from gateway.main import create_app
from gateway.threaded_server import serve_in_thread
from tests.cli import run_ultramn
from tests.gateway.conftest import SynthClip
from tests.gateway.helpers import make_settings, write_clip
from ultramn.serving.embedded import EmbeddedTriton

KEY = "k"


@pytest.fixture
def gateway_url(triton_server: EmbeddedTriton, tmp_path: Path) -> Iterator[str]:
    settings = make_settings(tmp_path / "data", triton_server.grpc_url, api_key=KEY)
    with serve_in_thread(create_app(settings)) as url:
        yield url


def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """``ultramn analyze ARGS``: (exit code, stderr)."""
    return run_ultramn(monkeypatch, capsys, "analyze", *args)


def analyses(gateway_url: str) -> list[dict[str, Any]]:
    resp = httpx.get(f"{gateway_url}/v1/analyses", headers={"X-API-Key": KEY})
    assert resp.status_code == 200, resp.text
    items: list[dict[str, Any]] = resp.json()["items"]
    return items


@pytest.mark.parametrize(
    ("option", "value"), [("--timeout", "-5"), ("--timeout", "0"), ("--timeout", "nan"), ("--stride", "0"), ("--stride", "9")]
)
def test_analyze_refuses_bad_numbers_before_uploading(
    option: str, value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = tmp_path / "clip.npy"
    np.save(clip, np.zeros((2, 8, 8), np.uint8))
    # nobody listens on port 9: an upload would end in exit 1 ("cannot reach")
    code, err = run_cli(monkeypatch, capsys, str(clip), "--gateway", "http://127.0.0.1:9", f"{option}={value}", "--quiet")
    assert code == 2, err
    assert err.startswith(f"error: {option} must be") and err.count("\n") == 1, err
    assert not (tmp_path / "clip.npy.ultramn").exists()


def test_analyze_given_a_folder_points_to_batch(
    gateway_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Was: "does not exist or is not a file" of a folder that exists."""
    code, err = run_cli(monkeypatch, capsys, str(tmp_path), "--gateway", gateway_url, "--api-key", KEY, "--quiet")
    assert code == 2 and "is a folder" in err and f"ultramn batch {tmp_path}" in err, err
    assert analyses(gateway_url) == []


@pytest.mark.parametrize(
    ("option", "value", "words"),
    [
        ("--patient", "Jane Doe", "--patient 'Jane Doe': must be"),
        ("--side", "up", "--side 'up' is not one of L, R"),
        ("--visit", "1/3/2026", "--visit '1/3/2026' is not a date YYYY-MM-DD"),
    ],
)
def test_analyze_checks_the_follow_up_options_before_uploading(
    gateway_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    clip: SynthClip,
    option: str,
    value: str,
    words: str,
) -> None:
    path = write_clip("npy", clip.frames[:4], tmp_path / "files")
    code, err = run_cli(monkeypatch, capsys, str(path), "--gateway", gateway_url, "--api-key", KEY, option, value, "--quiet")
    assert code == 2 and words in err, err
    assert analyses(gateway_url) == []


def test_analyze_checks_out_before_uploading(
    gateway_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], clip: SynthClip
) -> None:
    path = write_clip("npy", clip.frames[:4], tmp_path / "files")
    outfile = tmp_path / "outfile"
    outfile.write_text("mine")
    code, err = run_cli(monkeypatch, capsys, str(path), "--gateway", gateway_url, "--api-key", KEY, "--out", str(outfile), "--quiet")
    assert code == 2, err
    assert "--out" in err and "not a folder" in err and err.count("\n") == 1, err
    assert analyses(gateway_url) == []  # nothing was uploaded
    assert outfile.read_text() == "mine"


def test_analyze_replaces_an_earlier_result(
    gateway_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], clip: SynthClip
) -> None:
    out = tmp_path / "out"
    (out / "masks").mkdir(parents=True)
    for i in range(24):  # an earlier 24-frame result
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(out / "masks" / f"frame_{i:04d}.png")
    (out / "result.json").write_text(json.dumps({"result": {"n_frames": 24}}))
    (out / "masks.npz").write_bytes(b"old")
    (out / "overlay.mp4").write_bytes(b"an earlier result's video")  # not asked for this time: removed, not left stale
    (out / "notes.txt").write_text("mine")
    (out / "masks" / "notes.txt").write_text("mine too")
    still = write_clip("png", clip.frames, tmp_path / "files")  # one frame
    code, err = run_cli(monkeypatch, capsys, str(still), "--gateway", gateway_url, "--api-key", KEY, "--out", str(out), "--quiet")
    assert code == 0, err
    assert json.loads((out / "result.json").read_text())["result"]["n_frames"] == 1
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["frame_0000.png", "notes.txt"]
    # no temporary folder left
    assert sorted(p.name for p in out.iterdir()) == ["frames.csv", "masks", "masks.npz", "notes.txt", "result.json"]
    with np.load(out / "masks.npz") as data:
        assert data["masks"].shape == (1, *clip.frames.shape[1:])
    assert (out / "notes.txt").read_text() == "mine" and (out / "masks" / "notes.txt").read_text() == "mine too"


def test_analyze_says_when_the_url_is_not_a_gateway(
    gateway_url: str,
    triton_server: EmbeddedTriton,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    clip: SynthClip,
) -> None:
    path = write_clip("npy", clip.frames[:4], tmp_path / "files")
    for url in (f"{gateway_url}/foo", f"http://{triton_server.http_url}"):  # a wrong path; Triton's own HTTP port
        code, err = run_cli(monkeypatch, capsys, str(path), "--gateway", url, "--api-key", KEY, "--out", str(tmp_path / "o"), "--quiet")
        assert code == 1, (url, err)
        assert err == f"error: {url} is not an UltraMN gateway (HTTP 404 on /health/live)\n", err
        assert not (tmp_path / "o").exists()
    assert analyses(gateway_url) == []


def test_analyze_ctrl_c_names_the_job_that_continues(
    gateway_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], clip: SynthClip
) -> None:
    path = write_clip("npy", clip.frames, tmp_path / "files")
    real_get = httpx.Client.get

    def get(self: httpx.Client, url: str, *args: Any, **kwargs: Any) -> httpx.Response:
        if str(url).startswith("/v1/analyses/"):  # the first poll: Ctrl-C
            raise KeyboardInterrupt
        return real_get(self, url, *args, **kwargs)

    monkeypatch.setattr(httpx.Client, "get", get)
    code, err = run_cli(monkeypatch, capsys, str(path), "--gateway", gateway_url, "--api-key", KEY, "--out", str(tmp_path / "o"), "--quiet")
    monkeypatch.undo()
    assert code == 130, err
    [job] = analyses(gateway_url)
    url = f"{gateway_url}/v1/analyses/{job['id']}"
    assert err == f"interrupted; the analysis {job['id']} continues on the gateway (GET {url})\n", err
    assert httpx.get(url, headers={"X-API-Key": KEY}).status_code == 200
    assert not (tmp_path / "o").exists()
