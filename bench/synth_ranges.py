"""Measure where the synthetic generator departs from its stated anatomy and motion ranges.

Run: ``.venv/bin/python bench/synth_ranges.py [--participants 500] [--clips 12]``.
Prints the figures quoted in docs/synthetic-data.md ("Known departures"):

1. the other (left) arm's CSA against the stated 6-10 mm² (wrist) and 5-8 mm² (forearm);
2. with finger flexion the only motion, each transverse clip's mask CSA over the clip
   relative to the configured CSA, and how far the mask centroid travels (mm);
3. the long-axis bands' thickness (median over columns of the mask's height, mm).

Uses only the generator's public functions (``side_anatomy``, ``generate_clip``). Not a test.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np

from ultramn.data.synth.config import MotionRanges, SynthConfig
from ultramn.data.synth.generator import ClipSpec, generate_clip, side_anatomy

STATED_CSA_MM2 = {"wrist": (6.0, 10.0), "forearm": (5.0, 8.0)}


def side_csa(participants: int, seed: int) -> None:
    cfg = SynthConfig(participants=participants, seed=seed)
    left = [side_anatomy(cfg, p, "L") for p in range(participants)]
    for site, (lo, hi) in STATED_CSA_MM2.items():
        csa = np.array([getattr(a, f"{site}_csa_mm2") for a in left])
        out = int(((csa < lo) | (csa > hi)).sum())
        print(
            f"left {site} CSA {csa.min():.2f}-{csa.max():.2f} mm2; outside {lo:g}-{hi:g}: {out}/{participants} ({out / participants:.0%})"
        )


def flexion_only(clips: int, seed: int, frames: int) -> None:
    still = replace(MotionRanges(), slide_mm=(0.0, 0.0), tilt_deg=(0.0, 0.0), compression=(0.0, 0.0), pulse_frac=(0.0, 0.0))
    cfg = replace(SynthConfig(participants=clips, seed=seed, frames=frames), motion=still)
    for plane, site in (("TW", "wrist"), ("TF", "forearm")):
        low, high, travel = [], [], []
        for p in range(clips):
            clip = generate_clip(ClipSpec(cfg, p, plane, "R"))
            s = clip.acquisition.pixel_spacing_mm
            masks = clip.arrays.masks.astype(bool)
            ratio = masks.sum((1, 2)) * s * s / getattr(side_anatomy(cfg, p, "R"), f"{site}_csa_mm2")
            low.append(ratio.min())
            high.append(ratio.max())
            centroids = np.array([np.argwhere(m).mean(0) for m in masks]) * s
            travel.append(float(np.linalg.norm(centroids - centroids[0], axis=1).max()))
        print(
            f"{plane} flexion only, {clips} clips: mask CSA / configured CSA, lowest per clip {min(low):.2f}-{max(low):.2f} "
            f"(median {np.median(low):.2f}), highest {max(high):.2f}; centroid travel {min(travel):.2f}-{max(travel):.2f} mm "
            f"(median {np.median(travel):.2f})"
        )


def band_thickness(clips: int, seed: int, frames: int) -> None:
    cfg = SynthConfig(participants=clips, seed=seed, frames=frames)
    for plane in ("LW", "LF"):
        thick = []
        for p in range(clips):
            clip = generate_clip(ClipSpec(cfg, p, plane, "R"))
            thick.append(float(np.median(clip.arrays.masks[0].sum(0))) * clip.acquisition.pixel_spacing_mm)
        print(f"{plane} band thickness (median column height of frame 0), {clips} clips: {min(thick):.2f}-{max(thick):.2f} mm")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--participants", type=int, default=500, help="participants for the side-to-side CSA check")
    ap.add_argument("--clips", type=int, default=12, help="clips per plane for the motion and band checks")
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    side_csa(args.participants, args.seed)
    flexion_only(args.clips, args.seed, args.frames)
    band_thickness(args.clips, args.seed, args.frames)


if __name__ == "__main__":
    main()
