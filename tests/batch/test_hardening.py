"""`ultramn batch` as a demanding user runs it: awkward file names, outputs inside the input,
a second run on the same output, inputs that are no clips, a wrong API key."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.batch.archives import ClipSet, synth_frames, zip_with
from tests.batch.test_batch_cli import KEY, gateway_url, read_outputs, run_cli, state_lines  # noqa: F401
from ultramn.batch.discover import discover
from ultramn.serving.embedded import EmbeddedTriton


def test_a_file_name_that_is_not_utf8_is_analysed_under_an_escaped_name(
    gateway_url: str,  # noqa: F811
    triton_server: EmbeddedTriton,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    src = tmp_path / "in"
    (src / "exam é").mkdir(parents=True)
    np.save(os.fsdecode(os.fsencode(src / "exam é") + b"/caf\xe9 1.npy"), synth_frames(7))  # a Latin-1 name
    np.save(src / "exam é" / "plain.npy", synth_frames(8))
    escaped = "exam é/caf\\xe9 1.npy"
    for backend in (["--gateway", gateway_url, "--api-key", KEY], ["--triton", triton_server.grpc_url]):
        out = tmp_path / backend[0].strip("-")
        args = ["batch", str(src), "--out", str(out), *backend, "--quiet"]
        assert run_cli(monkeypatch, *args) == 0  # was a UnicodeEncodeError traceback
        results, rows = read_outputs(out)
        assert set(results) == set(rows) == {escaped, "exam é/plain.npy"}
        assert results[escaped]["status"] == "succeeded", results[escaped]["error"]
        assert (out / "masks" / "exam é" / "caf\\xe9 1.npy.npz").is_file()
        assert run_cli(monkeypatch, *args) == 0 and len(state_lines(out)) == 2  # the re-run has nothing to do


def test_an_output_folder_inside_the_input_is_not_analysed_as_clips(
    gateway_url: str,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    src = tmp_path / "exams"
    src.mkdir()
    np.save(src / "a.npy", synth_frames(9))
    np.save(src / "b.npy", synth_frames(10))
    # `ultramn batch exams --out exams/results`, another output folder in it, and `--out exams` itself
    for out in (src / "results", src / "run2", src):
        args = ["batch", str(src), "--out", str(out), "--gateway", gateway_url, "--api-key", KEY, "--quiet"]
        assert run_cli(monkeypatch, *args) == 0
        assert run_cli(monkeypatch, *args) == 0
        results, _ = read_outputs(out)
        assert set(results) == {"a.npy", "b.npy"}  # was: the first run's masks/*.npz analysed (and failing) as clips
        assert len(state_lines(out)) == 2
    found = discover(src, tmp_path / "work", out=src)
    assert [c.name for c in found.clips] == ["a.npy", "b.npy"] and found.skipped == []  # the output's own files are not "other files"


def test_a_second_run_on_the_same_output_is_refused(
    gateway_url: str,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import fcntl

    src = tmp_path / "exams"
    src.mkdir()
    np.save(src / "a.npy", synth_frames(11))
    out = tmp_path / "out"
    out.mkdir()
    args = ["batch", str(src), "--out", str(out), "--gateway", gateway_url, "--api-key", KEY, "--quiet"]
    with open(out / ".batch-lock", "w") as held:  # a run in progress (the lock a running `ultramn batch` holds)
        held.write("4242\n")
        held.flush()
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert run_cli(monkeypatch, *args) == 2  # was: a second run that redid every clip beside the first
        err = capsys.readouterr().err
        assert err.startswith("error: another `ultramn batch` (pid 4242) is writing to") and err.count("\n") == 1, err
        assert not (out / "state.jsonl").exists() and not (out / "results.jsonl").exists()
    assert run_cli(monkeypatch, *args) == 0  # once the first run is over (its lock released), a run proceeds
    assert [r["clip"] for r in state_lines(out)] == ["a.npy"]
    assert run_cli(monkeypatch, *args) == 0  # a run's own lock does not outlive it


def test_an_input_file_that_is_no_clip_or_a_damaged_archive_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io
    import tarfile
    import zipfile

    src = tmp_path / "src"
    src.mkdir()
    np.save(src / "a.npy", synth_frames(12))
    (src / "notes.txt").write_text("not a clip")
    zip_bytes, tar_bytes = io.BytesIO(), io.BytesIO()
    with zipfile.ZipFile(zip_bytes, "w") as zf:
        zf.write(src / "a.npy", "exam/a.npy")
    with tarfile.open(fileobj=tar_bytes, mode="w:gz") as tf:
        tf.add(src / "a.npy", "exam/a.npy")
    cases = {
        "notes.txt": (b"exam notes\n", "not a clip, a ZIP/TAR archive or a DICOMDIR"),
        "report.pdf": (b"%PDF-1.4 a report", "not a clip, a ZIP/TAR archive or a DICOMDIR"),
        "exams.zip": (zip_bytes.getvalue()[:200], "not a readable ZIP or TAR archive"),  # a cut-off download
        "named.zip": (b"hello, not a zip", "not a readable ZIP or TAR archive"),
        "exams.tar.gz": (tar_bytes.getvalue()[:60], "damaged or cut-off archive"),  # was: EOFError, 'aborted' and exit 130
    }
    for name, (data, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        out = tmp_path / f"out-{name}"
        code = run_cli(monkeypatch, "batch", str(path), "--out", str(out), "--gateway", "http://127.0.0.1:9", "--quiet")
        err = capsys.readouterr().err
        assert code == 2, (name, code, err)  # was 1 (a batch of one failed clip) or 130
        assert err.startswith(f"error: refused {name}: ") and message in err and err.count("\n") == 1, (name, err)
        assert not (out / "state.jsonl").exists()


def test_an_api_key_the_gateway_refuses_exits_2_before_any_clip(
    gateway_url: str,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    src = tmp_path / "exams"
    src.mkdir()
    for i in range(3):
        np.save(src / f"c{i}.npy", synth_frames(20 + i))
    for key in (["--api-key", "wrong"], []):  # a wrong key (403), none (401)
        monkeypatch.delenv("ULTRAMN_API_KEY", raising=False)
        out = tmp_path / f"out{len(key)}"
        assert run_cli(monkeypatch, "batch", str(src), "--out", str(out), "--gateway", gateway_url, *key, "--quiet") == 2
        err = capsys.readouterr().err  # was: exit 1 after every clip failed with the same 401/403
        assert err.startswith("error: the gateway at ") and "refuses the API key" in err and err.count("\n") == 1, err
        assert not (out / "state.jsonl").exists()


class GoesDown(httpx.AsyncBaseTransport):
    """Injected fault: the gateway serves ``n`` clips (up to their masks), then stops answering anything (a crash)."""

    def __init__(self, n: int) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.n = n

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.n <= 0:
            raise httpx.ConnectError("connection refused (injected)", request=request)
        if request.url.path.endswith("/masks.npz"):
            self.n -= 1
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_a_gateway_that_goes_away_stops_the_batch_and_a_rerun_finishes_it(
    gateway_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    import asyncio

    from ultramn.batch.discover import discover
    from ultramn.batch.gateway_client import GatewayAnalyzer
    from ultramn.batch.runner import BatchReport, run_batch

    src = tmp_path / "exams"
    src.mkdir()
    for i in range(6):
        np.save(src / f"c{i}.npy", synth_frames(30 + i))
    found = discover(src, tmp_path / "work")
    out = tmp_path / "out"

    async def batch(transport: httpx.AsyncBaseTransport) -> BatchReport:
        analyzer = GatewayAnalyzer(gateway_url, api_key=KEY, transport=transport, transport_retries=0, poll_s=0.05)
        try:
            return await run_batch(found.clips, analyzer, out, concurrency=1, progress=False)
        finally:
            await analyzer.aclose()

    report = asyncio.run(batch(GoesDown(2)))
    # was: every remaining clip tried in turn and recorded as failed (gateway_unreachable), each after its retries
    assert (report.succeeded, report.failed, report.not_done) == (2, 0, 4)
    assert report.stopped is not None and "cannot reach the gateway" in report.stopped
    assert [r["status"] for r in state_lines(out)] == ["succeeded", "succeeded"]
    results, _ = read_outputs(out)
    assert sorted(results) == ["c0.npy", "c1.npy"]
    report = asyncio.run(batch(httpx.AsyncHTTPTransport()))  # the gateway is back: the re-run does the rest
    assert (report.already_done, report.succeeded, report.failed, report.stopped) == (2, 4, 0, None)
    results, _ = read_outputs(out)
    assert len(results) == 6 and {r["status"] for r in results.values()} == {"succeeded"}


def test_the_direct_analyzer_says_when_triton_is_away(triton_server: EmbeddedTriton) -> None:
    import asyncio

    from gateway.batch_direct import DirectAnalyzer
    from gateway.core.config import Settings
    from gateway.triton_client import TritonClient

    async def probe() -> tuple[str | None, str | None]:
        live = await DirectAnalyzer.create(triton_server.grpc_url)
        try:
            up = await live.unavailable()
        finally:
            await live.aclose()
        settings = Settings(triton_url="127.0.0.1:9", triton_check_timeout_s=1.0)
        client = TritonClient.from_settings(settings)
        await client.start()
        away = DirectAnalyzer(client, settings, None, None)
        try:
            return up, await away.unavailable()
        finally:
            await away.aclose()

    up, down = asyncio.run(probe())
    assert up is None and down is not None and "127.0.0.1:9" in down


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_or_sighup_stops_a_run_cleanly_and_the_rerun_finishes_it(
    gateway_url: str,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    signum: int,
) -> None:
    src = tmp_path / "exams"
    src.mkdir()
    for i in range(24):
        np.save(src / f"c{i:02d}.npy", synth_frames(40 + i, n_frames=24))
    out = tmp_path / "out"
    args = ["batch", str(src), "--out", str(out), "--gateway", gateway_url, "--api-key", KEY, "--concurrency", "1", "--quiet"]
    cmd = [sys.executable, "-c", "import sys; from ultramn.cli import main; sys.argv[0] = 'ultramn'; main()", *args]
    repo = Path(__file__).resolve().parents[2]  # this checkout's ultramn, whatever the working folder
    proc = subprocess.Popen(cmd, cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "state.jsonl").is_file() or len(state_lines(out)) < 2:  # a run under way, clips done
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, err  # was: killed by the signal (-15/-1), no results.jsonl or summary.csv
    assert f"interrupted ({signal.Signals(signum).name})" in err and "Traceback" not in err, err
    done = state_lines(out)
    assert 2 <= len(done) < 24 and {r["status"] for r in done} == {"succeeded"}
    results, rows = read_outputs(out)  # the outputs were written from the journal at the stop
    assert set(results) == set(rows) == {r["clip"] for r in done}
    assert run_cli(monkeypatch, *args) == 0  # the re-run does the rest and nothing twice
    lines = state_lines(out)
    assert len(lines) == 24 and len({r["clip"] for r in lines}) == 24


def test_a_rerun_with_other_analysis_options_analyses_again(
    gateway_url: str,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    src = tmp_path / "exams"
    src.mkdir()
    np.save(src / "a.npy", synth_frames(13))
    np.save(src / "b.npy", synth_frames(14))
    out = tmp_path / "out"
    args = ["batch", str(src), "--out", str(out), "--gateway", gateway_url, "--api-key", KEY, "--quiet"]
    assert run_cli(monkeypatch, *args) == 0
    _, rows = read_outputs(out)
    assert {r["csa_unit"] for r in rows.values()} == {"px"}
    assert run_cli(monkeypatch, *args, "--pixel-spacing", "0.1") == 0
    _, rows = read_outputs(out)  # was: both skipped as done, the px results of the first run kept
    assert {r["csa_unit"] for r in rows.values()} == {"mm2"} and len(state_lines(out)) == 4
    assert run_cli(monkeypatch, *args, "--pixel-spacing", "0.1") == 0 and len(state_lines(out)) == 4  # same options: done
    assert run_cli(monkeypatch, *args, "--pixel-spacing", "0.1", "--stride", "2") == 0
    results, _ = read_outputs(out)
    assert {r["result"]["analysis"]["stride"] for r in results.values()} == {2} and len(state_lines(out)) == 6


def test_the_extracted_copy_of_an_archive_is_removed_after_the_run(
    gateway_url: str,  # noqa: F811
    clip_set: ClipSet,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "out"
    args = ["batch", str(clip_set.archive), "--out", str(out), "--gateway", gateway_url, "--api-key", KEY, "--quiet"]
    assert run_cli(monkeypatch, *args) == 1  # the corrupt clip
    assert not (out / ".work").exists()  # was: a full extracted copy of the archive left in the output folder
    assert run_cli(monkeypatch, *args) == 1 and len(state_lines(out)) == len(clip_set.clips) + 1  # resumes all the same
    empty = zip_with(tmp_path / "notes.zip", {"notes.txt": b"no clips"})
    assert run_cli(monkeypatch, "batch", str(empty), "--out", str(tmp_path / "o2"), "--quiet") == 2  # no clips: refused
    assert not (tmp_path / "o2" / ".work").exists()


def test_the_input_is_named_when_it_is_the_current_folder(
    gateway_url: str,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    src = tmp_path / "exams"
    src.mkdir()
    np.save(src / "a.npy", synth_frames(15))
    monkeypatch.chdir(src)
    assert run_cli(monkeypatch, "batch", ".", "--out", str(tmp_path / "out"), "--gateway", gateway_url, "--api-key", KEY) == 0
    assert "1 clip in exams" in capsys.readouterr().out  # was: "1 clips in " (the name of '.')


def test_sigterm_while_the_gateway_is_being_reached_exits_cleanly(tmp_path: Path) -> None:
    import socket

    src = tmp_path / "exams"
    src.mkdir()
    np.save(src / "a.npy", synth_frames(16))
    with socket.socket() as silent:  # a gateway that takes the connection and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        cmd = [sys.executable, "-c", "import sys; from ultramn.cli import main; sys.argv[0] = 'ultramn'; main()"]
        cmd += ["batch", str(src), "--out", str(tmp_path / "out"), "--gateway", url, "--quiet"]
        repo = Path(__file__).resolve().parents[2]
        proc = subprocess.Popen(cmd, cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not (tmp_path / "out" / ".batch-lock").is_file():  # past discovery: reaching the gateway
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "Traceback" not in err, err  # was: a CancelledError traceback
    assert err.count("\n") == 1 and err.startswith("interrupted (SIGTERM)"), err


def test_a_silent_port_is_no_gateway_after_the_check_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    src = tmp_path / "exams"
    src.mkdir()
    np.save(src / "a.npy", synth_frames(17))
    with socket.socket() as silent:  # something listening that never answers HTTP
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        t0 = time.monotonic()
        assert run_cli(monkeypatch, "batch", str(src), "--out", str(tmp_path / "out"), "--gateway", url, "--quiet") == 1
        assert time.monotonic() - t0 < 30  # was: the 120 s read timeout of an upload
    assert "cannot reach the gateway" in capsys.readouterr().err
