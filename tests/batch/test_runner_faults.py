"""The runner on its own (a stub analyzer): lost masks files, an output folder that fills up."""

from __future__ import annotations

import asyncio
import errno
import io
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from ultramn.batch import runner
from ultramn.batch.discover import Clip
from ultramn.batch.runner import BatchReport, run_batch
from ultramn.batch.types import ClipAnalysis


class Stub:
    """Analyses every clip at once; counts the calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        buf = io.BytesIO()
        np.savez(buf, masks=np.zeros((1, 8, 8), np.uint8))
        self.npz = buf.getvalue()

    async def analyze(self, path: Path, name: str, key: str | None = None, fields: Mapping[str, str] | None = None) -> ClipAnalysis:
        self.calls.append(name)
        return ClipAnalysis(result={"plane": "TW", "n_frames": 1}, masks_npz=self.npz, analysis_id=f"job-{name}")

    async def unavailable(self) -> str | None:
        return None

    async def aclose(self) -> None:
        pass


def make_clips(tmp_path: Path, n: int) -> list[Clip]:
    (tmp_path / "src").mkdir(exist_ok=True)
    clips = []
    for i in range(n):
        path = tmp_path / "src" / f"c{i}.npy"
        np.save(path, np.full((1, 8, 8), i, np.uint8))
        clips.append(Clip(f"exam/c{i}.npy", path))
    return clips


def run(clips: list[Clip], out: Path, stub: Stub) -> BatchReport:
    return asyncio.run(run_batch(clips, stub, out, concurrency=1, progress=False))


def test_a_clip_whose_masks_file_is_gone_is_analysed_again(tmp_path: Path) -> None:
    clips, out, stub = make_clips(tmp_path, 3), tmp_path / "out", Stub()
    assert run(clips, out, stub).succeeded == 3
    (out / "masks" / "exam" / "c1.npy.npz").unlink()  # a partial copy of the output folder, a cleanup gone wrong
    report = run(clips, out, stub)
    assert (report.already_done, report.succeeded) == (2, 1)  # was: counted as done, results.jsonl naming a missing file
    assert stub.calls[3:] == ["exam/c1.npy"]
    assert (out / "masks" / "exam" / "c1.npy.npz").is_file()


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EROFS])
def test_an_output_folder_that_fills_up_stops_the_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, err: int) -> None:
    clips, out, stub = make_clips(tmp_path, 5), tmp_path / "out", Stub()
    write = runner._write_masks
    written: list[str] = []

    def fills_up(out: Path, clip: str, data: bytes) -> None:
        if written:
            raise OSError(err, "No space left on device" if err == errno.ENOSPC else "Read-only file system")
        write(out, clip, data)
        written.append(clip)

    monkeypatch.setattr(runner, "_write_masks", fills_up)
    report = run(clips, out, stub)
    # was: every later clip analysed, its result thrown away and recorded as failed (internal_error: OSError)
    assert (report.succeeded, report.failed, report.not_done) == (1, 0, 4)
    assert report.stopped is not None and f"cannot write to {out}" in report.stopped
    assert len(stub.calls) == 2
    assert [json.loads(line)["status"] for line in (out / "state.jsonl").read_text().splitlines()] == ["succeeded"]


def test_a_run_cancelled_while_hashing_a_large_input_stops_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    clips = make_clips(tmp_path, 200)
    real = runner.file_sha256

    def slow(path: Path) -> str:  # 200 clips x 50 ms: a large archive on a slow disk
        time.sleep(0.05)
        return real(path)

    monkeypatch.setattr(runner, "file_sha256", slow)

    async def cancelled() -> None:
        task = asyncio.ensure_future(run_batch(clips, Stub(), tmp_path / "out", progress=False))
        await asyncio.sleep(0.3)
        task.cancel()  # what Ctrl-C does
        with pytest.raises(asyncio.CancelledError):
            await task

    t0 = time.perf_counter()
    asyncio.run(cancelled())
    assert time.perf_counter() - t0 < 4.0  # was: ~10 s, waiting for every file to be hashed


def test_the_check_of_a_large_input_shows_a_progress_bar(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Hashing every clip of a large archive took its time with nothing on screen before the batch bar."""
    clips = make_clips(tmp_path, 40)
    total = sum(c.path.stat().st_size for c in clips)
    report = asyncio.run(run_batch(clips, Stub(), tmp_path / "out", concurrency=1, progress=True))
    assert report.failed == 0
    err = capsys.readouterr().err
    assert "checking clips" in err and f"/{total / 1000:.2f}k" in err  # a bar over the bytes of all clips, then the batch bar
    assert "batch" in err
    asyncio.run(run_batch(clips, Stub(), tmp_path / "out2", concurrency=1, progress=False))
    assert capsys.readouterr().err == ""  # --quiet: no bar at all


def test_a_journal_that_cannot_be_appended_to_stops_the_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk while journalling ended the run with ``[Errno 28]`` and exit 2, with no word of resuming."""
    from ultramn.batch.state import BatchState

    clips, out, stub = make_clips(tmp_path, 5), tmp_path / "out", Stub()
    append = BatchState.append
    appended: list[str] = []

    def fills_up(self: BatchState, rec: dict[str, object]) -> None:
        if appended:
            raise OSError(errno.ENOSPC, "No space left on device")
        append(self, rec)
        appended.append(str(rec["clip"]))

    monkeypatch.setattr(BatchState, "append", fills_up)
    report = run(clips, out, stub)
    assert report.stopped is not None and f"cannot write to {out} (No space left on device)" in report.stopped
    assert (report.succeeded, report.failed, report.not_done) == (1, 0, 4)
    assert len(stub.calls) == 2  # the clip whose record could not be written is not counted as done
    monkeypatch.setattr(BatchState, "append", append)
    again = run(clips, out, Stub())  # space again: the re-run does the rest
    assert (again.already_done, again.succeeded, again.stopped) == (1, 4, None)


def test_outputs_that_cannot_be_written_are_a_stop_reason_not_a_crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """results.jsonl/summary.csv on a full disk raised [Errno 28] out of the run (exit 2 in the CLI)."""

    def full(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runner, "write_outputs", full)
    out = tmp_path / "out"
    report = run(make_clips(tmp_path, 2), out, Stub())
    assert report.succeeded == 2 and report.stopped == (
        f"cannot write to {out} (No space left on device); results.jsonl and summary.csv were not written"
        " (state.jsonl keeps every clip done)"
    )
