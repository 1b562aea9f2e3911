"""Tests of the synthetic clip generator (`ultramn synth`): small sizes, few frames."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import binary_dilation, binary_erosion

from ultramn.contract import PLANES, QUALITY_GRADES, SIDES, SPLITS
from ultramn.data.clipio import read_clip
from ultramn.data.manifest import MANIFEST_NAME, read_manifest, write_manifest
from ultramn.data.synth.config import AcquisitionRanges, AnatomyRanges, MotionRanges, QualityRanges, SynthConfig
from ultramn.data.synth.generator import ClipSpec, generate_clip, generate_dataset
from ultramn.errors import UserInputError


@pytest.fixture(scope="module", autouse=True)
def psf_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private PSF cache for this module (computed once with pymust)."""
    old = os.environ.get("ULTRAMN_CACHE")
    path = tmp_path_factory.mktemp("ultramn-cache")
    os.environ["ULTRAMN_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("ULTRAMN_CACHE", None)
    else:
        os.environ["ULTRAMN_CACHE"] = old


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ultramn", *args], capture_output=True, text=True, env=os.environ.copy(), timeout=120)


def test_same_seed_is_byte_identical_for_any_worker_count(tmp_path: Path) -> None:
    cfg = SynthConfig(participants=1, seed=7, height=64, width=64, frames=3)
    generate_dataset(cfg, tmp_path / "a", workers=1)
    generate_dataset(cfg, tmp_path / "b", workers=2)
    a, b = _tree_bytes(tmp_path / "a"), _tree_bytes(tmp_path / "b")
    assert MANIFEST_NAME in a and len(a) == 9  # manifest + 8 clips
    assert a == b
    # another seed gives other pictures
    other = generate_clip(ClipSpec(SynthConfig(participants=1, seed=8, height=64, width=64, frames=3), 0, "TW", "R"))
    assert not np.array_equal(other.arrays.frames, read_clip(tmp_path / "a" / "clips" / "syn7-p0000_TW_R.npz").frames)


def test_cli_writes_dataset_layout(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    res = _run_cli(
        "synth", "--participants", "2", "--out", str(out), "--seed", "3", "--frames", "4", "--size", "64", "80", "--workers", "2"
    )
    assert res.returncode == 0, res.stderr
    records = read_manifest(out)
    assert len(records) == 16
    assert {(r.plane, r.side) for r in records} == {(p, s) for p in PLANES for s in SIDES}
    assert len({r.participant_id for r in records}) == 2
    for r in records:
        assert r.source == "synthetic" and r.file == f"clips/{r.clip_id}.npz"
        assert r.split in SPLITS and r.quality in QUALITY_GRADES
        assert (r.n_frames, r.height, r.width) == (4, 64, 80)
        assert r.pixel_spacing_mm is not None and 20 / 64 - 1e-4 <= r.pixel_spacing_mm <= 40 / 64 + 1e-4
        assert r.fps is not None and 20 <= r.fps <= 30
        clip = read_clip(out / r.file)
        assert clip.frames.shape == (4, 64, 80) and set(np.unique(clip.masks)) <= {0, 1}
        assert all(clip.masks[t].sum() > 0 for t in range(4)), f"{r.clip_id}: a frame without the nerve"
    # the split is participant-level: one split per participant
    by_pid: dict[str, set[str]] = {}
    for r in records:
        by_pid.setdefault(r.participant_id, set()).add(r.split)
    assert all(len(s) == 1 for s in by_pid.values())
    # different participants give different clips
    p0 = read_clip(out / "clips/syn3-p0000_TW_R.npz").frames
    p1 = read_clip(out / "clips/syn3-p0001_TW_R.npz").frames
    assert not np.array_equal(p0, p1)


def test_default_frames_and_size_are_sampled_per_clip() -> None:
    cfg = SynthConfig(participants=1, seed=1, height=48, width=48)
    lengths = {generate_clip(ClipSpec(cfg, 0, plane, "R")).arrays.frames.shape[0] for plane in ("TW", "LF")}
    assert all(24 <= n <= 48 for n in lengths)


@pytest.mark.parametrize(
    "args",
    [
        ("--participants", "0", "--out", "OUT"),
        ("--participants", "1", "--out", "OUT", "--size", "8", "8"),
        ("--participants", "1", "--out", "OUT", "--frames", "0"),
        ("--participants", "1", "--out", "OUT", "--workers", "0"),
        ("--participants", "1000000000", "--out", "OUT"),
        ("--participants", "1", "--out", "OUT", "--seed", "1" + "0" * 40),
        ("--participants", "1", "--out", "OUT", "--workers", "100000"),
        ("--participants", "1"),
        ("--preview", "sheet.jpg"),
    ],
)
def test_cli_bad_arguments_exit_2(tmp_path: Path, args: tuple[str, ...]) -> None:
    args = tuple(a.replace("OUT", str(tmp_path / "o")).replace("sheet.jpg", str(tmp_path / "s.jpg")) for a in args)
    res = _run_cli("synth", *args)
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert "error" in res.stderr.lower()
    assert not (tmp_path / "o" / MANIFEST_NAME).exists()


def test_cli_out_or_preview_under_a_file_exits_2_before_any_clip(tmp_path: Path) -> None:
    """--out under a file started the run, then failed with "[Errno 20] Not a directory"; --preview
    under a file said "[Errno 17] File exists" of the file."""
    (tmp_path / "notes.txt").write_text("a file")
    under = tmp_path / "notes.txt" / "synth"
    res = _run_cli("synth", "--participants", "1", "--frames", "2", "--size", "48", "48", "--workers", "1", "--out", str(under))
    assert res.returncode == 2 and f"--out {under}: {tmp_path / 'notes.txt'} is a file, not a folder" in res.stderr, res.stderr
    assert "clip/s" not in res.stderr and "Errno" not in res.stderr  # no progress bar: nothing started
    sheet = tmp_path / "notes.txt" / "sheet.png"
    res = _run_cli("synth", "--preview", str(sheet), "--size", "48", "48")
    assert res.returncode == 2 and f"--preview {sheet}: {tmp_path / 'notes.txt'} is a file, not a folder" in res.stderr, res.stderr
    (tmp_path / "sheets.png").mkdir()
    res = _run_cli("synth", "--preview", str(tmp_path / "sheets.png"), "--size", "48", "48")
    assert res.returncode == 2 and "it is a folder; give a file name" in res.stderr and "Errno" not in res.stderr, res.stderr


def test_config_rejects_bad_values() -> None:
    with pytest.raises(UserInputError, match="participants"):
        SynthConfig(participants=0)
    with pytest.raises(UserInputError, match="size"):
        SynthConfig(height=2000)
    with pytest.raises(UserInputError, match="participants"):
        SynthConfig(participants=10**9)  # would build 8e9 clip specs before the first clip
    with pytest.raises(UserInputError, match="seed"):
        SynthConfig(seed=10**30)  # ids (and file names) grow with the seed's digits
    with pytest.raises(UserInputError, match="at most 4 times the other"):
        SynthConfig(height=48, width=1024)  # a 850 mm wide field of view: the scene overflowed
    with pytest.raises(UserInputError, match="at most 4 times the other"):
        SynthConfig(height=1024, width=200)
    assert SynthConfig(height=128, width=512).width == 512  # 4:1 is still a field of view


@pytest.mark.parametrize(
    "kwargs",
    [
        {"height": 64.5},
        {"frames": "8"},
        {"participants": True},
        {"seed": 1.0},
        {"acquisition": AcquisitionRanges(fps=(float("nan"), 30.0))},
        {"acquisition": AcquisitionRanges(frames=(0, 4))},
        {"acquisition": AcquisitionRanges(depth_setting_mm=(-5.0, 30.0))},
        {"motion": MotionRanges(slide_mm=(3.0, 1.0))},
        {"quality": QualityRanges(probabilities=(0.5, 0.5, 0.5))},
        {"anatomy": AnatomyRanges(side_jitter=float("inf"))},
    ],
)
def test_config_rejects_wrong_types_and_ranges(kwargs: dict[str, object]) -> None:
    """A config that would crash mid-run (or write NaN/empty clips) is refused when it is made."""
    with pytest.raises(UserInputError):
        SynthConfig(**{"participants": 1, **kwargs})  # type: ignore[arg-type]


@pytest.mark.parametrize("workers", [0, -1, 10**6])
def test_library_rejects_bad_worker_counts(tmp_path: Path, workers: int) -> None:
    with pytest.raises(UserInputError, match="workers"):
        generate_dataset(SynthConfig(participants=1, height=48, width=48, frames=1), tmp_path / "a", workers=workers)
    assert not (tmp_path / "a").exists()


def _ring_stats(frame: np.ndarray, mask: np.ndarray) -> tuple[float, float, float]:
    """Mean inside the (eroded) mask, on a 2-px ring at/just outside its edge, and further out."""
    m = mask.astype(bool)
    inner = binary_erosion(m, iterations=1)
    ring = binary_dilation(m, iterations=2) & ~inner
    far = binary_dilation(m, iterations=12) & ~binary_dilation(m, iterations=5)
    f = frame.astype(np.float64)
    return float(f[inner].mean()), float(f[ring].mean()), float(f[far].mean())


@pytest.mark.parametrize("plane", PLANES)
def test_mask_covers_the_visible_nerve(plane: str) -> None:
    cfg = SynthConfig(participants=1, seed=11, height=160, width=160, frames=2)
    clip = generate_clip(ClipSpec(cfg, 0, plane, "R", grade="good"))
    frame, mask = clip.arrays.frames[0], clip.arrays.masks[0]
    assert mask.sum() > 30
    inside, rim, _ = _ring_stats(frame, mask)
    # bright epineurium at the mask's edge, darker fascicles inside
    assert rim > inside + 10, (plane, inside, rim)
    vals = frame[binary_erosion(mask.astype(bool), iterations=1)]
    assert vals.std() > 8, "the nerve's inside should be a mix of dark fascicles and brighter septa"
    assert np.percentile(vals, 10) < rim


def test_transverse_mask_area_matches_sampled_csa() -> None:
    cfg = SynthConfig(participants=1, seed=5, height=192, width=192, frames=1)
    for plane, (lo, hi) in (("TW", (6.0, 10.0)), ("TF", (5.0, 8.0))):
        clip = generate_clip(ClipSpec(cfg, 0, plane, "R", grade="good"))
        area = clip.arrays.masks[0].sum() * clip.acquisition.pixel_spacing_mm**2
        assert 0.7 * lo < area < 1.3 * hi, (plane, area)


def test_adjacent_frames_correlated_but_not_identical() -> None:
    cfg = SynthConfig(participants=1, seed=2, height=96, width=96, frames=6)
    for plane in ("TF", "LW"):
        frames = generate_clip(ClipSpec(cfg, 0, plane, "L", grade="good")).arrays.frames.astype(np.float64)
        for t in range(len(frames) - 1):
            r = np.corrcoef(frames[t].ravel(), frames[t + 1].ravel())[0, 1]
            assert 0.6 < r < 0.999, (plane, t, r)


def test_left_is_near_mirror_of_right() -> None:
    cfg = SynthConfig(participants=1, seed=4, height=96, width=96, frames=1)
    right = generate_clip(ClipSpec(cfg, 0, "TW", "R", grade="good"))
    left = generate_clip(ClipSpec(cfg, 0, "TW", "L", grade="good"))
    assert not np.array_equal(right.arrays.frames, left.arrays.frames)
    # the nerve's area is similar on both sides (same participant, small variation)
    a_r = right.arrays.masks[0].sum() * right.acquisition.pixel_spacing_mm**2
    a_l = left.arrays.masks[0].sum() * left.acquisition.pixel_spacing_mm**2
    assert abs(a_r - a_l) / a_r < 0.35


def test_quality_grades_differ_in_noise() -> None:
    cfg = SynthConfig(participants=1, seed=9, height=96, width=96, frames=1)
    good = generate_clip(ClipSpec(cfg, 0, "TW", "R", grade="good"))
    poor = generate_clip(ClipSpec(cfg, 0, "TW", "R", grade="poor"))
    assert good.acquisition.quality.grade == "good" and poor.acquisition.quality.grade == "poor"
    assert poor.acquisition.quality.noise_db > good.acquisition.quality.noise_db + 5


@pytest.mark.parametrize("extra", [("--frames", "40"), ("--participants", "3"), ("--workers", "2")])
def test_cli_preview_refuses_options_it_would_ignore(tmp_path: Path, extra: tuple[str, str]) -> None:
    """The contact sheet always shows 16 frames of participant 0: an option it would drop is an error."""
    path = tmp_path / "sheet.png"
    res = _run_cli("synth", "--preview", str(path), "--size", "48", "48", *extra)
    assert res.returncode == 2 and extra[0] in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert not path.exists()


def test_cli_preview(tmp_path: Path) -> None:
    path = tmp_path / "sheet.png"
    res = _run_cli("synth", "--preview", str(path), "--size", "64", "64", "--seed", "1")
    assert res.returncode == 0, res.stderr
    with Image.open(path) as im:
        w, h = im.size
    assert w > 6 * 64 and h > 4 * 64


def _start_synth(out: Path, err: Path, *args: str) -> subprocess.Popen[bytes]:
    """``ultramn synth`` in its own process group (as a terminal runs it), stderr to ``err``."""
    with err.open("wb") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "ultramn", "synth", "--out", str(out), *args], stderr=fh, env=os.environ.copy(), start_new_session=True
        )


def _wait_for_first_clip(proc: subprocess.Popen[bytes], out: Path) -> None:
    deadline = time.monotonic() + 60
    while not list(out.glob("clips/*.npz")):
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before its first clip"
        time.sleep(0.02)


def _group_gone(pgid: int, timeout: float) -> bool:
    """True once no process of the group ``pgid`` is left (waits up to ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def _assert_only_whole_clips(out: Path) -> list[Path]:
    """No manifest; every clip file present loads (a cut-short write may leave only a ``.tmp``)."""
    assert not (out / MANIFEST_NAME).exists()
    files = sorted(out.glob("clips/*.npz"))
    for path in files:
        clip = read_clip(path)
        assert clip.frames.shape == clip.masks.shape
    return files


def test_ctrl_c_stops_a_parallel_run_at_once(tmp_path: Path) -> None:
    """Ctrl-C reaches the whole process group: the run stops, it does not go on to finish every clip."""
    out = tmp_path / "ds"
    proc = _start_synth(out, tmp_path / "err.txt", "--participants", "4", "--frames", "24", "--workers", "2")
    try:
        _wait_for_first_clip(proc, out)
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=60) == 130
        assert _group_gone(proc.pid, 10), "worker processes outlived the interrupted run"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    err = (tmp_path / "err.txt").read_text()
    assert "interrupted" in err and "Traceback" not in err, err
    files = _assert_only_whole_clips(out)
    assert len(files) <= 8, f"the interrupted run went on: {len(files)} of 32 clips written"
    assert not list(out.glob("clips/*.tmp"))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killed_run_leaves_no_worker_behind(tmp_path: Path, sig: signal.Signals) -> None:
    out = tmp_path / "ds"
    proc = _start_synth(out, tmp_path / "err.txt", "--participants", "4", "--frames", "24", "--workers", "2")
    try:
        _wait_for_first_clip(proc, out)
        proc.send_signal(sig)  # the parent only: its workers must end with it
        proc.wait(timeout=60)
        assert _group_gone(proc.pid, 15), "orphaned worker processes kept running after the parent was killed"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    _assert_only_whole_clips(out)


def test_an_error_in_a_worker_stops_the_run_at_once(tmp_path: Path) -> None:
    """A clip that cannot be written ends the run then, not after every other clip is made."""
    out = tmp_path / "ds"
    (out / "clips" / "syn0-p0000_TW_L.npz").mkdir(parents=True)  # the first clip's file is a folder
    with pytest.raises(OSError):
        generate_dataset(SynthConfig(participants=4, frames=24), out, workers=2)
    assert len(list(out.glob("clips/*.npz"))) <= 8, "the run went on after the error"
    assert not (out / MANIFEST_NAME).exists() and not list(out.glob("clips/*.tmp"))


def test_rerun_replaces_an_earlier_synthetic_set(tmp_path: Path) -> None:
    """Re-running into a synthetic set gives exactly what a new folder gets: no stale rows or clips."""
    small = SynthConfig(participants=1, seed=4, height=48, width=48, frames=1)
    generate_dataset(replace(small, participants=2, frames=2), tmp_path / "ds", workers=1)
    generate_dataset(small, tmp_path / "ds", workers=1)
    generate_dataset(small, tmp_path / "fresh", workers=1)
    assert _tree_bytes(tmp_path / "ds") == _tree_bytes(tmp_path / "fresh")


def test_failed_rerun_leaves_no_stale_manifest(tmp_path: Path) -> None:
    """A re-run that stops half-way must not leave the old manifest describing overwritten clips."""
    out = tmp_path / "ds"
    cfg = SynthConfig(participants=1, seed=4, height=48, width=48, frames=2)
    generate_dataset(cfg, out, workers=1)
    blocked = out / "clips" / "syn4-p0000_LW_L.npz"  # the third clip: a folder now stands in its way
    blocked.unlink()
    blocked.mkdir()
    with pytest.raises(OSError):
        generate_dataset(replace(cfg, frames=3), out, workers=1)
    assert read_clip(out / "clips" / "syn4-p0000_TW_L.npz").frames.shape[0] == 3  # overwritten before the failure
    assert not (out / MANIFEST_NAME).exists()


def test_synth_refuses_to_replace_another_dataset(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    generate_dataset(SynthConfig(participants=1, seed=4, height=48, width=48, frames=1), out, workers=1)
    records = read_manifest(out)
    write_manifest(out, [records[0], replace(records[1], clip_id="usgra-0001", source="images:usgra", file="clips/usgra-0001.npz")])
    before = (out / MANIFEST_NAME).read_bytes()
    res = _run_cli("synth", "--participants", "1", "--out", str(out), "--frames", "1", "--size", "48", "48", "--workers", "1")
    assert res.returncode == 2 and "not synthetic" in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert (out / MANIFEST_NAME).read_bytes() == before
    (out / MANIFEST_NAME).write_text("not,a\nmanifest\n")
    with pytest.raises(UserInputError, match="manifest"):
        generate_dataset(SynthConfig(participants=1, seed=4, height=48, width=48, frames=1), out, workers=1)


# --- sweeps: the probe slides off (or onto) the nerve --------------------------------------------


def _empty_frames(masks: np.ndarray) -> np.ndarray:
    return masks.reshape(len(masks), -1).sum(1) == 0


@pytest.mark.parametrize("plane", ["TW", "TF"])
def test_sweep_takes_the_nerve_out_of_view_for_a_run_of_frames(plane: str) -> None:
    cfg = SynthConfig(participants=3, seed=4, height=96, width=96, frames=30, sweep_off=1.0)
    for participant in range(3):
        spec = ClipSpec(cfg, participant, plane, "R")
        clip = generate_clip(spec)
        empty = _empty_frames(clip.arrays.masks)
        assert 0.15 * len(empty) <= empty.sum() <= 0.9 * len(empty), empty
        # one run of nerve-free frames, at the end (off the nerve) or at the start (onto it)
        first, last = int(np.argmax(empty)), len(empty) - int(np.argmax(empty[::-1]))
        assert empty[first:last].all()
        assert first == 0 or last == len(empty)
        # the image still shows tissue, not a blank screen, where the nerve is gone
        assert clip.arrays.frames[empty].mean() > 5


def test_sweep_leaves_other_clips_byte_identical() -> None:
    """Longitudinal clips never sweep, and a transverse clip that does not sweep (or a set with
    --sweep-off 0) is the clip it was without the option: the sweep draws from its own stream."""
    base = SynthConfig(participants=4, seed=9, height=64, width=64, frames=6)
    half = replace(base, sweep_off=0.5)
    swept = 0
    for participant in range(4):
        for plane in PLANES:
            a = generate_clip(ClipSpec(base, participant, plane, "L")).arrays
            b = generate_clip(ClipSpec(half, participant, plane, "L")).arrays
            same = np.array_equal(a.frames, b.frames) and np.array_equal(a.masks, b.masks)
            if plane.startswith("L"):
                assert same, (participant, plane)
            swept += not same
            if not same:  # a sweep: part of the clip without the nerve
                assert _empty_frames(b.masks).any()
    assert 1 <= swept <= 7  # about half of the 8 transverse clips


def test_sweep_offset_moves_monotonically_between_its_ends() -> None:
    from ultramn.data.synth.motion import Sweep

    off = Sweep(distance_mm=-20.0, start_s=0.2, end_s=0.8)
    onto = replace(off, onto=True)
    times = np.linspace(0, 1, 41)
    o = np.array([off.offset_mm(t) for t in times])
    assert o[0] == 0.0 and o[-1] == -20.0 and np.all(np.diff(o) <= 0)
    assert np.allclose([onto.offset_mm(t) for t in times], -20.0 - o)
    assert off.offset_mm(0.1) == 0.0 and off.offset_mm(0.9) == -20.0


@pytest.mark.parametrize("value", ["-0.1", "1.5", "nan", "x"])
def test_cli_refuses_a_bad_sweep_share(tmp_path: Path, value: str) -> None:
    out = tmp_path / "ds"
    r = _run_cli("synth", "--participants", "1", "--out", str(out), "--sweep-off", value)
    assert r.returncode == 2, r.stderr
    assert "--sweep-off" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()


def test_cli_sweep_set_has_frames_without_the_nerve(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    r = _run_cli(
        "synth", "--participants", "1", "--out", str(out), "--frames", "12", "--size", "64", "64", "--sweep-off", "1", "--workers", "1"
    )
    assert r.returncode == 0, r.stderr
    empty = {rec.plane: int(_empty_frames(read_clip(out / rec.file).masks).sum()) for rec in read_manifest(out) if rec.side == "L"}
    assert empty["TW"] > 0 and empty["TF"] > 0
    assert empty["LW"] == 0 and empty["LF"] == 0
