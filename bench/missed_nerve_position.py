"""Where in the image are the nerves a model misses? Lateral position of missed against found nerves.

Run: ``.venv/bin/python bench/missed_nerve_position.py --eval runs/eval-sweep --data data/synth-sweep``
after ``ultramn evaluate ... --out runs/eval-sweep`` on that dataset. For every frame of
``frames.csv`` with a nerve in the truth, the truth mask's centroid is taken as a fraction of
the image width; frames the model missed (``case_reported == pred_empty``: no nerve as the
gateway reports one) are set against frames it found (``both_present``). Prints quartiles of
the distance from the image's centre line (0 = centre, 0.5 = the left or right edge) and the
share of masks touching the left or right edge, then the missed rate by distance band (the
synthetic training data puts the nerve within 0.18 of the centre). Not part of the tests.
"""

from __future__ import annotations

import argparse
import csv
import itertools
from pathlib import Path

import numpy as np

from ultramn.data.clipio import read_clip
from ultramn.data.manifest import read_manifest

KINDS = {"missed": "pred_empty", "found": "both_present"}
#: Distance bands (fraction of width from the centre line) for the missed rate.
BANDS = (0.0, 0.2, 0.3, 0.4, 0.5)


def lateral_position(mask: np.ndarray) -> tuple[float, bool]:
    """Centroid column of a ``[H,W]`` mask as a fraction of W, and whether it touches a side edge."""
    cols = np.nonzero(mask)[1]
    return float(cols.mean() + 0.5) / mask.shape[1], bool(cols.min() == 0 or cols.max() == mask.shape[1] - 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--eval", type=Path, required=True, help="an `ultramn evaluate` output folder (frames.csv)")
    ap.add_argument("--data", type=Path, required=True, help="the dataset it scored")
    ap.add_argument("--planes", nargs="+", default=["TW", "TF"], help="planes to include (default: transverse)")
    args = ap.parse_args()
    files = {r.clip_id: args.data / r.file for r in read_manifest(args.data)}
    with open(args.eval / "frames.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["plane"] in args.planes]
    masks: dict[str, np.ndarray] = {}
    dists: dict[str, np.ndarray] = {}
    print(f"planes {' '.join(args.planes)}; distance of the nerve's centroid from the centre line (fraction of width)")
    print(f"{'frames':>8} {'n':>6} {'25 %':>6} {'median':>7} {'75 %':>6} {'touching a side edge':>21}")
    for label, case in KINDS.items():
        found = []
        for r in rows:
            if r["case_reported"] != case:
                continue
            if r["clip_id"] not in masks:
                masks[r["clip_id"]] = read_clip(files[r["clip_id"]]).masks
            found.append(lateral_position(masks[r["clip_id"]][int(r["frame"])]))
        if not found:
            print(f"{label:>8} {0:6d}")
            continue
        dist = np.abs(np.array([p for p, _ in found]) - 0.5)
        dists[label] = dist
        q1, q2, q3 = np.percentile(dist, [25, 50, 75])
        edge = np.mean([e for _, e in found])
        print(f"{label:>8} {len(found):6d} {q1:6.2f} {q2:7.2f} {q3:6.2f} {edge:20.0%}")
    missed, hit = dists.get("missed", np.zeros(0)), dists.get("found", np.zeros(0))
    print("missed rate by distance from the centre line:")
    for lo, hi in itertools.pairwise(BANDS):
        top = hi if hi < BANDS[-1] else np.inf
        m, h = int(((missed >= lo) & (missed < top)).sum()), int(((hit >= lo) & (hit < top)).sum())
        rate = f"{m / (m + h):.1%}" if m + h else "n/a"
        print(f"  [{lo:.1f}, {hi:.1f}{')' if hi < BANDS[-1] else ']'}: {m} of {m + h} ({rate})")


if __name__ == "__main__":
    main()
