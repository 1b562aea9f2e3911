"""`ultramn synth` starts no more workers than memory holds, and refuses a clip that cannot fit."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.bench_synth_memory import measure
from tests.cli import run_ultramn
from ultramn.data.clipio import read_clip
from ultramn.data.manifest import read_manifest
from ultramn.data.synth import generator
from ultramn.data.synth.memory import GIB, USABLE_SHARE, available_bytes, clip_peak_bytes, plan_workers
from ultramn.errors import UserInputError


def test_estimate_grows_with_frames_and_pixels() -> None:
    small = clip_peak_bytes(256, 256, 48)
    assert clip_peak_bytes(256, 256, 400) > small
    assert clip_peak_bytes(512, 512, 48) > small
    # the frames and masks alone of 1000 frames of 1024 x 1024: 2 GiB
    assert clip_peak_bytes(1024, 1024, 1000) > 2 * GIB


@pytest.mark.parametrize(
    ("height", "width", "frames", "plane", "sweep"), [(512, 128, 48, "LF", False), (256, 256, 160, "LF", False), (256, 384, 48, "TW", True)]
)
def test_estimate_is_above_the_measured_peak(height: int, width: int, frames: int, plane: str, sweep: bool) -> None:
    """A real clip generated and written in a fresh process stays under the planner's figure
    (``sweep``: a clip sliding off the nerve, whose canvas is wider)."""
    peak = measure(height, width, frames, plane, sweep)
    assert peak < clip_peak_bytes(height, width, frames, sweep)


def test_a_sweep_is_planned_with_its_wider_canvas() -> None:
    assert clip_peak_bytes(512, 512, 48, sweep=True) > clip_peak_bytes(512, 512, 48)


def test_plan_keeps_the_request_when_memory_holds_it() -> None:
    per = clip_peak_bytes(64, 64, 8)
    plan = plan_workers(64, 64, 8, requested=3, n_clips=16, available=100 * per)
    assert (plan.workers, plan.note) == (3, None)
    assert plan_workers(64, 64, 8, requested=None, n_clips=2, available=100 * per, cpus=8).workers == 2  # one per clip at most
    assert plan_workers(64, 64, 8, requested=None, n_clips=16, available=None, cpus=5).workers == 5  # memory unknown


def test_plan_lowers_workers_to_what_memory_holds_and_says_so() -> None:
    per = clip_peak_bytes(512, 512, 200)
    available = int(3.5 * per / USABLE_SHARE)  # room for 3
    plan = plan_workers(512, 512, 200, requested=8, n_clips=40, available=available)
    assert plan.workers == 3
    assert plan.note is not None and "--workers 8" in plan.note and "using 3" in plan.note
    default = plan_workers(512, 512, 200, requested=None, n_clips=40, available=available, cpus=16)
    assert default.workers == 3 and default.note is not None and "one per CPU" in default.note
    # less than one worker's share but the clip itself fits: one worker, not none
    assert plan_workers(512, 512, 200, requested=4, n_clips=40, available=per + 1).workers == 1


def test_plan_refuses_a_clip_larger_than_the_available_memory() -> None:
    with pytest.raises(UserInputError, match=r"1000 frames of 1024 x 1024 needs about .* GiB .* smaller --size or --frames"):
        plan_workers(1024, 1024, 1000, requested=1, n_clips=8, available=2 * GIB)


def test_available_bytes_reads_meminfo(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemFree:         1000 kB\nMemAvailable:   20000000 kB\n")
    assert available_bytes(meminfo) == 20000000 * 1024
    meminfo.write_text("MemTotal:       24000000 kB\n")
    assert available_bytes(meminfo) is None
    assert available_bytes(tmp_path / "missing") is None
    real = available_bytes()
    assert real is None or real > 0


def test_cli_refuses_a_clip_that_cannot_fit_before_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(generator, "available_bytes", lambda: 1 * GIB)  # injected: a small machine
    out = tmp_path / "synth"
    code, err = run_ultramn(
        monkeypatch, capsys, "synth", "--participants", "1", "--out", str(out), "--size", "1024", "1024", "--frames", "1000"
    )
    assert code == 2
    assert "needs about" in err and "1.0 GiB is available" in err and "Traceback" not in err
    assert not out.exists()


def test_cli_lowers_workers_with_a_note_and_still_writes_every_clip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    per = clip_peak_bytes(48, 48, 2)
    monkeypatch.setattr(generator, "available_bytes", lambda: int(1.5 * per / USABLE_SHARE))  # room for 1
    started: list[int] = []
    real = generator.generate_dataset

    def spy(*args: object, **kwargs: object) -> object:
        started.append(int(kwargs["workers"]))  # type: ignore[call-overload]
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(generator, "generate_dataset", spy)
    out = tmp_path / "synth"
    code, err = run_ultramn(
        monkeypatch, capsys, "synth", "--participants", "1", "--out", str(out), "--size", "48", "48", "--frames", "2", "--workers", "4"
    )
    assert code == 0, err
    assert "note: --workers 4 would need" in err and "using 1" in err
    assert started == [1]
    records = read_manifest(out)
    assert len(records) == 8
    assert all(read_clip(out / r.file).frames.shape == (2, 48, 48) for r in records)
