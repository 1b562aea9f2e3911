"""The live stream ``WS /v1/live`` on the real gateway (uvicorn in a thread) and the real Triton,
driven by a real WebSocket client (``websockets``)."""

from __future__ import annotations

import contextlib
import io
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import numpy as np
import pytest
from PIL import Image
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from gateway.main import create_app
from gateway.threaded_server import serve_in_thread
from tests.gateway.conftest import SynthClip, synth_clip
from tests.gateway.helpers import make_settings
from tests.serving.fixtures import EmbeddedTriton, ServedModel
from ultramn.contract import CONTRACT, PLANES
from ultramn.serving.embedded import Ports, free_ports

KEY = "live-key"


@pytest.fixture(scope="module")
def live_url(triton_server: EmbeddedTriton, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = make_settings(
        tmp_path_factory.mktemp("live"), triton_server.grpc_url, api_key=KEY, live_max_streams=1, live_idle_timeout_s=3.0
    )
    with serve_in_thread(create_app(settings)) as url:
        yield url


@pytest.fixture(scope="module")
def tw_clip() -> SynthClip:
    """24 frames of a transverse clip at 256 x 256 (the shipped model's training size)."""
    return synth_clip(n_frames=24, height=256, width=256, seed=5, plane="TW")


def png(frame: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG")
    return buf.getvalue()


def ws_url(url: str, **params: str) -> str:
    query = urlencode({"key": KEY, **params})
    return url.replace("http://", "ws://") + f"/v1/live?{query}"


@contextlib.contextmanager
def ready_stream(url: str, first_message: bool = False) -> Iterator[Any]:
    """A stream past its ``ready`` message (``first_message``: yield it too, as ``(ws, ready)``).
    The fixture allows one stream at a time, and the server frees a closed stream's slot once
    its analysis in progress ends: retry while busy."""
    deadline = time.monotonic() + 10
    while True:
        with connect(url) as ws:
            first = json.loads(ws.recv(timeout=30))
            if first["type"] == "ready":
                yield (ws, first) if first_message else ws
                return
            assert first["code"] == "busy" and time.monotonic() < deadline, first
        time.sleep(0.1)


def live_metrics(url: str) -> dict[str, float]:
    """The live stream's Prometheus figures: frames analysed, windows analysed, streams open."""
    text = httpx.get(f"{url}/metrics", timeout=30).text

    def value(name: str) -> float:
        found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
        return float(found[1]) if found else 0.0

    return {
        "analysed": value('ultramn_live_frames_total{outcome="analysed"}'),
        "windows": value("ultramn_live_window_seconds_count"),
        "open": value("ultramn_live_streams"),
    }


def messages_until_close(ws: ClientConnection) -> list[dict[str, Any]]:
    out = []
    try:
        while True:
            out.append(json.loads(ws.recv(timeout=60)))
    except ConnectionClosed:
        return out


def test_each_frame_gets_its_result_as_it_comes(live_url: str, tw_clip: SynthClip) -> None:
    spacing = f"{tw_clip.spacing_mm:.4f}"
    before = live_metrics(live_url)
    with ready_stream(ws_url(live_url, pixel_spacing_mm=spacing), first_message=True) as (ws, ready):
        assert ready["type"] == "ready" and ready["window_frames"] == 8 and ready["planes"] == list(PLANES)
        assert ready["pixel_spacing_mm"] == pytest.approx(float(spacing))
        live: dict[int, dict[str, Any]] = {}
        for i, frame in enumerate(tw_clip.frames):  # one frame, then its answer: as a scanner at a slow rate
            ws.send(png(frame))
            answer = json.loads(ws.recv(timeout=60))
            assert answer["type"] == "frames" and answer["skipped"] == [], answer
            assert [f["index"] for f in answer["frames"]] == [i]  # exactly the new frame
            assert answer["window"] == [max(0, i - 7), i] and answer["analysis_ms"] > 0
            assert {"roi", "inference", "postprocess", "total"} <= set(answer["timings_ms"])
            live[i] = answer["frames"][0]
        ws.send(json.dumps({"type": "end"}))
        end = messages_until_close(ws)
    assert end == [{"type": "end", "frames": 24, "skipped": 0}]
    after = live_metrics(live_url)
    assert after["analysed"] - before["analysed"] == 24 and after["windows"] - before["windows"] == 24
    assert after["open"] == 0
    # the same clip analysed offline: the live frames (which saw only the frames before them) agree
    r = httpx.post(
        f"{live_url}/v1/analyses",
        files={"file": ("tw.npz", _npz(tw_clip))},
        data={"wait": "true", "pixel_spacing_mm": spacing},
        headers={"X-API-Key": KEY},
        timeout=120,
    )
    offline = r.json()["result"]["frames"]
    assert sum(live[i]["plane"] == offline[i]["plane"] for i in range(24)) >= 22
    both = [i for i in range(24) if live[i]["nerve_present"] and offline[i]["nerve_present"]]
    assert len(both) >= 20
    rel = [abs(live[i]["csa_mm2"] - offline[i]["csa_mm2"]) / offline[i]["csa_mm2"] for i in both]
    assert float(np.median(rel)) < 0.1, rel
    assert all(live[i]["contour"] and live[i]["csa_mm2"] > 0 for i in both)


def test_frames_sent_faster_than_analysed_are_reported_once_or_skipped(live_url: str, tw_clip: SynthClip) -> None:
    frames = np.concatenate([tw_clip.frames, tw_clip.frames])  # 48 frames, all at once
    with ready_stream(ws_url(live_url)) as ws:
        for frame in frames:
            ws.send(png(frame))
        ws.send(json.dumps({"type": "end"}))
        got = messages_until_close(ws)
    answers = [m for m in got if m["type"] == "frames"]
    reported = [f["index"] for m in answers for f in m["frames"]]
    skipped = [i for m in answers for i in m["skipped"]]
    assert sorted(reported + skipped) == list(range(48))  # every frame once: a result or a skip, never both, never lost
    assert all(len(m["frames"]) <= 8 for m in answers)  # never more than a window at once: the work stays bounded
    assert got[-1] == {"type": "end", "frames": 48, "skipped": len(skipped)}
    assert all(f["csa_mm2"] is None for m in answers for f in m["frames"])  # no spacing given: px only


def test_bad_messages_are_answered_and_the_stream_goes_on(live_url: str, tw_clip: SynthClip) -> None:
    with ready_stream(ws_url(live_url)) as ws:
        ws.send(b"not an image")
        bad = json.loads(ws.recv(timeout=30))
        assert bad["type"] == "error" and bad["code"] == "bad_frame" and bad["index"] == 0
        ws.send(png(tw_clip.frames[0]))
        assert [f["index"] for f in json.loads(ws.recv(timeout=60))["frames"]] == [0]
        ws.send(png(tw_clip.frames[1][:100]))  # another size than the stream's
        other = json.loads(ws.recv(timeout=30))
        assert other["code"] == "bad_frame" and "256x256" in other["message"]
        ws.send("hello")
        assert json.loads(ws.recv(timeout=30))["code"] == "bad_message"
        ws.send(png(tw_clip.frames[1]))
        assert [f["index"] for f in json.loads(ws.recv(timeout=60))["frames"]] == [1]


def test_a_stream_that_goes_quiet_is_closed(live_url: str) -> None:
    with ready_stream(ws_url(live_url)) as ws:
        end = messages_until_close(ws)  # nothing sent: closed after the idle timeout (3 s here)
        assert ws.close_code == 1001
    assert end == [{"type": "end", "reason": "no message for 3 s", "frames": 0, "skipped": 0}]


def test_key_spacing_and_stream_limit_are_checked(live_url: str) -> None:
    with pytest.raises(InvalidStatus):  # closed before the handshake completes: 403
        connect(live_url.replace("http://", "ws://") + "/v1/live")
    with connect(ws_url(live_url, pixel_spacing_mm="80")) as ws:  # micrometres taken for millimetres
        (error,) = messages_until_close(ws)
        assert error["code"] == "validation_error" and "pixel_spacing_mm" in error["message"] and ws.close_code == 1008
    with ready_stream(ws_url(live_url)) as first, connect(ws_url(live_url)) as second:  # the limit is 1 stream here
        (busy,) = messages_until_close(second)
        assert busy["code"] == "busy" and second.close_code == 1013
        assert first.state.name == "OPEN"  # the first stream is not disturbed
    with ready_stream(ws_url(live_url)) as again:  # the first one's slot is free again
        again.send(b"x")
        assert json.loads(again.recv(timeout=30))["code"] == "bad_frame"


def _npz(clip: SynthClip) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, frames=clip.frames)
    return buf.getvalue()


def test_triton_going_away_closes_the_stream_with_try_again_later(served_model: ServedModel, tmp_path: Path, tw_clip: SynthClip) -> None:
    server = EmbeddedTriton(served_model.repository, Ports(*free_ports(3)), models=[CONTRACT.name], log_path=tmp_path / "t.log").start()
    try:
        settings = make_settings(tmp_path / "data", server.grpc_url, api_key=KEY, triton_check_timeout_s=2.0)
        with serve_in_thread(create_app(settings)) as url, connect(ws_url(url)) as ws:
            assert json.loads(ws.recv(timeout=30))["type"] == "ready"
            ws.send(png(tw_clip.frames[0]))
            assert json.loads(ws.recv(timeout=60))["type"] == "frames"
            server.stop()  # the inference server goes away mid-stream
            ws.send(png(tw_clip.frames[1]))
            (error,) = messages_until_close(ws)
            assert error["type"] == "error" and error["code"] == "triton_unavailable", error
            assert ws.close_code == 1013
            assert httpx.get(f"{url}/health/live", timeout=10).status_code == 200  # the gateway itself goes on
    finally:
        server.stop()


def test_a_client_gone_mid_analysis_frees_its_stream(live_url: str, tw_clip: SynthClip) -> None:
    for _ in range(3):  # the limit is 1 stream here: a leaked slot would make the next one busy
        with ready_stream(ws_url(live_url)) as ws:
            for frame in tw_clip.frames[:8]:
                ws.send(png(frame))
        time.sleep(0.5)  # gone while its frames are being analysed: the analysis in progress ends, then the slot is free
    with ready_stream(ws_url(live_url)) as ws:
        ws.send(png(tw_clip.frames[0]))
        assert [f["index"] for f in json.loads(ws.recv(timeout=60))["frames"]] == [0]


def test_a_fault_in_the_analysis_ends_the_stream_not_the_gateway(
    live_url: str, tw_clip: SynthClip, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.live import LiveSession

    async def broken(self: LiveSession) -> dict[str, Any]:
        raise ValueError("injected fault")

    monkeypatch.setattr(LiveSession, "analyse", broken)
    with ready_stream(ws_url(live_url)) as ws:
        ws.send(png(tw_clip.frames[0]))
        (error,) = messages_until_close(ws)
        assert error["code"] == "internal_error" and ws.close_code == 1011
    monkeypatch.undo()
    with ready_stream(ws_url(live_url)) as ws:  # the next stream is served
        ws.send(png(tw_clip.frames[0]))
        assert json.loads(ws.recv(timeout=60))["type"] == "frames"


def test_a_recorded_stream_becomes_a_stored_analysis_with_its_follow_up(live_url: str, tw_clip: SynthClip) -> None:
    spacing = f"{tw_clip.spacing_mm:.4f}"
    url = ws_url(live_url, pixel_spacing_mm=spacing, record="true", fps="20", patient="P-live", side="R", visit="2026-02-02")
    with ready_stream(url) as ws:
        for frame in tw_clip.frames[:16]:
            ws.send(png(frame))
        ws.send(json.dumps({"type": "end"}))
        end = messages_until_close(ws)[-1]
    assert end["type"] == "end" and end["frames"] == 16
    stored = end["analysis"]
    assert stored["n_frames"] == 16 and stored["fps"] == 20.0 and stored["links"]["self"] == f"/v1/analyses/{stored['id']}"
    headers = {"X-API-Key": KEY}
    deadline = time.monotonic() + 120
    while (job := httpx.get(f"{live_url}{stored['links']['self']}", headers=headers, timeout=30).json())["status"] != "succeeded":
        assert job["status"] in ("queued", "running") and time.monotonic() < deadline, job
        time.sleep(0.2)
    assert (job["patient"], job["side"], job["visit"], job["format"]) == ("P-live", "R", "2026-02-02", "live")
    result = job["result"]
    assert result["n_frames"] == 16 and result["fps"] == 20.0 and result["pixel_spacing_mm"]["dx"] == pytest.approx(float(spacing))
    image = httpx.get(f"{live_url}/v1/analyses/{stored['id']}/frames/3/image.png", headers=headers, timeout=30)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(image.content))), tw_clip.frames[3])  # the frames as streamed
    follow = httpx.get(f"{live_url}/v1/patients/P-live", headers=headers, timeout=30).json()
    assert follow["n_clips"] == 1 and follow["sides"][0]["visits"][0]["visit"] == "2026-02-02"


def test_a_recording_is_kept_when_the_client_goes_away_and_bad_follow_up_fields_are_refused(live_url: str, tw_clip: SynthClip) -> None:
    headers = {"X-API-Key": KEY}
    before = {a["id"] for a in httpx.get(f"{live_url}/v1/analyses", params={"patient": "P-gone"}, headers=headers).json()["items"]}
    with ready_stream(ws_url(live_url, record="1", patient="P-gone")) as ws:
        for frame in tw_clip.frames[:10]:
            ws.send(png(frame))
        ws.recv(timeout=60)  # at least one analysis done: the frames are in
    deadline = time.monotonic() + 30
    while not (items := httpx.get(f"{live_url}/v1/analyses", params={"patient": "P-gone"}, headers=headers).json()["items"]):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert {a["id"] for a in items} - before and items[0]["n_frames"] == 10  # every frame received was kept
    for params, words in (({"patient": "Jane Doe"}, "patient"), ({"fps": "0"}, "fps"), ({"record": "maybe"}, "record")):
        with connect(ws_url(live_url, **params)) as ws:
            (error,) = messages_until_close(ws)
            assert error["code"] == "validation_error" and words in error["message"] and ws.close_code == 1008
