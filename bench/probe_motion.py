"""How well does the gateway's tissue track follow the probe? Tracked content motion against the generator's truth.

Run: ``.venv/bin/python bench/probe_motion.py --data data/synth-sweep --seed 101 --participants 12 --sweep-off 1.0``
on a set made by ``ultramn synth`` with the same options. For each clip the synthetic
generator's own probe motion is recomputed from the clip's random draws
(:func:`ultramn.data.synth.generator.clip_draws`; nothing is rendered): the lateral slide plus
the in-plane tilt's lateral shift at mid-depth, in mm from the first frame. The content's track
(:func:`ultramn.measure.tissue_motion.track_tissue`, the gateway's defaults) is set against it:
per clip the largest error over its frames, then median, 90th percentile and largest by view,
and the count of clips whose track is not reliable. Then, for transverse clips, what the
tissue-relative excursion is for: the truth mask's centroid (frames where the nerve is whole
in view) set against the nerve's own glide in the generator (finger flexion), once as measured
in the image and once less the tracked content motion. One clip is regenerated first to check
that the options reproduce the set. Also the tracking time per frame (this machine, one
process; ``--speed`` times it alone at three frame sizes). Not part of the tests.

Longitudinal clips are reported for completeness: their content is dominated by the tendons'
glide along the image, not by the probe, which is why the gateway gives tissue-relative
figures only in transverse clips.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ultramn.contract import PLANE_VIEWS
from ultramn.data.clipio import read_clip
from ultramn.data.manifest import read_manifest
from ultramn.data.synth.config import SynthConfig
from ultramn.data.synth.generator import ClipSpec, clip_draws, generate_clip
from ultramn.data.synth.motion import frame_state
from ultramn.measure.tissue_motion import track_tissue


def probe_motion_mm(spec: ClipSpec, n_frames: int, height: int) -> tuple[np.ndarray, np.ndarray, float]:
    """What the generator made, lateral, in mm from frame 0: the image content's displacement (the
    probe's slide, and its tilt at mid-depth), the nerve's own glide against the tissue (finger
    flexion), and the pixel spacing."""
    _, acq, motion = clip_draws(spec)
    mid = height * acq.pixel_spacing_mm / 2
    states = [frame_state(motion, acq.fps, t) for t in range(n_frames)]
    x = np.array([-(st.slide_mm + mid * np.sin(st.tilt_rad)) for st in states])
    glide = np.array([st.flex * motion.excursion_mm * motion.excursion_dir[0] for st in states])
    return x - x[0], glide - glide[0], acq.pixel_spacing_mm


def whole_centroids_mm(masks: np.ndarray, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """Frame indices where the truth nerve is whole in view (not touching the left or right side),
    and its centroid's x there (mm)."""
    keep, xs = [], []
    for t, m in enumerate(masks):
        cols = np.nonzero(m)[1]
        if cols.size and cols.min() > 0 and cols.max() < m.shape[1] - 1:
            keep.append(t)
            xs.append((cols.mean() + 0.5) * spacing)
    return np.array(keep, int), np.array(xs)


#: Frame sizes (H, W) the ``--speed`` run times: the model's, a video export's, a full-HD screen capture.
SPEED_SIZES: tuple[tuple[int, int], ...] = ((256, 256), (480, 640), (1080, 1920))


def speed(frames: int = 30, rounds: int = 3) -> None:
    """Tracking time per frame at :data:`SPEED_SIZES` (random frames; median of ``rounds``)."""
    rng = np.random.default_rng(0)
    print(f"tracking time, {frames} random frames, median of {rounds} rounds")
    for h, w in SPEED_SIZES:
        clip = rng.integers(0, 256, (frames, h, w), dtype=np.uint8)
        times = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            track_tissue(clip)
            times.append(time.perf_counter() - t0)
        print(f"  {h:>5} x {w:<5} {1000 * float(np.median(times)) / frames:6.2f} ms a frame")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, help="a set made by `ultramn synth`")
    ap.add_argument("--seed", type=int, help="its --seed")
    ap.add_argument("--participants", type=int, help="its --participants")
    ap.add_argument("--sweep-off", type=float, default=0.0, help="its --sweep-off")
    ap.add_argument("--split", default="all", help="only clips of this split (default all)")
    ap.add_argument("--speed", action="store_true", help="only time the tracking at three frame sizes")
    args = ap.parse_args()
    if args.speed:
        speed()
        return
    if args.data is None or args.seed is None or args.participants is None:
        ap.error("--data, --seed and --participants are needed (or --speed)")
    records = [r for r in read_manifest(args.data) if args.split in ("all", r.split)]
    if not records:
        raise SystemExit(f"no clips in {args.data} (split {args.split})")
    h, w = records[0].height, records[0].width
    config = SynthConfig(participants=args.participants, seed=args.seed, height=h, width=w, sweep_off=args.sweep_off)

    def spec_of(rec_participant: str, plane: str, side: str) -> ClipSpec:
        return ClipSpec(config, int(rec_participant.rsplit("p", 1)[1]), plane, side)

    first = records[0]
    again = generate_clip(spec_of(first.participant_id, first.plane, first.side)).arrays.frames
    if not np.array_equal(again, read_clip(args.data / first.file).frames):
        raise SystemExit(f"{first.clip_id}: these options do not reproduce {args.data} (check --seed, --participants, --sweep-off)")

    errors: dict[str, list[float]] = {"transverse": [], "longitudinal": []}
    ranges: dict[str, list[float]] = {"transverse": [], "longitudinal": []}
    unreliable = {"transverse": 0, "longitudinal": 0}
    glide_errors: dict[str, list[float]] = {"in the image": [], "against the tissue": []}
    seconds, frames_done = 0.0, 0
    for rec in tqdm(records, unit="clip", desc="tracking"):
        clip = read_clip(args.data / rec.file)
        frames = clip.frames
        truth, glide, spacing = probe_motion_mm(spec_of(rec.participant_id, rec.plane, rec.side), len(frames), h)
        t0 = time.perf_counter()
        track = track_tissue(frames)
        seconds += time.perf_counter() - t0
        frames_done += len(frames)
        view = PLANE_VIEWS[rec.plane]
        shift_mm = track.shifts_px[:, 0] * spacing
        errors[view].append(float(np.abs(shift_mm - truth).max()))
        ranges[view].append(float(np.ptp(truth)))
        unreliable[view] += not track.reliable
        keep, cx = whole_centroids_mm(clip.masks, spacing)
        if view == "transverse" and keep.size >= 2:  # the truth nerve's track against its own glide
            for label, track_mm in (("in the image", cx), ("against the tissue", cx - shift_mm[keep])):
                moved = track_mm - track_mm[0]
                glide_errors[label].append(float(np.abs(moved - (glide[keep] - glide[keep[0]])).max()))
    print(f"{args.data}: {len(records)} clips, {frames_done} frames; tracking {1000 * seconds / frames_done:.2f} ms a frame")
    heads = f"{'view':<13} {'clips':>5} {'probe range median / max (mm)':>30} {'error median':>13}"
    print(f"{heads} {'90 %':>6} {'max':>6} {'> 1 mm':>7} {'unreliable':>11}")
    for view, errs in errors.items():
        if not errs:
            continue
        e, r = np.array(errs), np.array(ranges[view])
        print(
            f"{view:<13} {len(e):>5} {np.median(r):>19.1f} / {r.max():>8.1f} {np.median(e):>13.2f} {np.percentile(e, 90):>6.2f}"
            f" {e.max():>6.2f} {int((e > 1).sum()):>7} {unreliable[view]:>11}"
        )
    if glide_errors["in the image"]:
        print("transverse clips, the truth mask's centroid over its whole-section frames against the nerve's own glide (mm):")
        for label, errs in glide_errors.items():
            e = np.array(errs)
            print(f"  {label:<19} clips {len(e):>3}  error median {np.median(e):.2f}  90 % {np.percentile(e, 90):.2f}  max {e.max():.2f}")


if __name__ == "__main__":
    main()
