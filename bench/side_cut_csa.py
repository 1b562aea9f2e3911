"""Clip CSA of probe sweeps: with and without the frames whose nerve the image's side cuts.

Run, with the gateway up (``make up``) and a sweep set (``ultramn synth ... --sweep-off 1.0``):
``.venv/bin/ultramn batch DIR_OF_TRANSVERSE_CLIPS --out OUT`` then
``.venv/bin/python bench/side_cut_csa.py --batch OUT --data data/synth-sweep``.

For each clip of ``OUT/results.jsonl`` the gateway's clip CSA median (``result.csa.median``,
which leaves out frames with ``at_side``) is set against the median over every frame with a
nerve in the clip's view (what it reported before those frames were left out), both against
the truth: the median annotated area over the clip's frames whose mask does not touch the
image's left or right side (whole sections). Units are those of the result (px² for clips
without a pixel spacing, as the synthetic ``.npz`` files are). Prints the median absolute
error of the clip median, mean and min, over the clips, and how many clips had cut frames. Not part of the tests.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ultramn.contract import PLANE_VIEWS
from ultramn.data.clipio import read_clip
from ultramn.data.manifest import read_manifest

STATS = ("median", "mean", "min")


def truth_whole(masks: np.ndarray) -> dict[str, float] | None:
    """Median, mean and min area (px) of the ``[N,H,W]`` truth masks with a nerve not touching
    the left or right side (whole sections); ``None`` when there is none."""
    areas = [int(m.sum()) for m in masks if m.any() and not (m[:, 0].any() or m[:, -1].any())]
    if not areas:
        return None
    return {"median": float(np.median(areas)), "mean": float(np.mean(areas)), "min": float(np.min(areas))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=Path, required=True, help="an `ultramn batch` output folder (results.jsonl)")
    ap.add_argument("--data", type=Path, required=True, help="the dataset the clips came from (truth masks)")
    args = ap.parse_args()
    files = {Path(r.file).name: args.data / r.file for r in read_manifest(args.data)}
    new_err: dict[str, list[float]] = {k: [] for k in STATS}
    old_err: dict[str, list[float]] = {k: [] for k in STATS}
    n_cut = 0
    for line in (args.batch / "results.jsonl").read_text().splitlines():
        rec = json.loads(line)
        res = rec.get("result")
        if rec.get("status") != "succeeded" or not res or not res.get("csa") or res["csa"]["unit"] != "px":
            continue
        truth = truth_whole(read_clip(files[Path(rec["clip"]).name]).masks)
        if truth is None:
            continue
        view = PLANE_VIEWS.get(res["plane"])
        before = [f["csa_px"] for f in res["frames"] if f["nerve_present"] and PLANE_VIEWS.get(f["plane"]) == view]
        n_cut += res["csa"].get("n_at_side", 0) > 0
        old = {"median": float(np.median(before)), "mean": float(np.mean(before)), "min": float(np.min(before))}
        for k in STATS:
            new_err[k].append(abs(res["csa"][k] - truth[k]))
            old_err[k].append(abs(old[k] - truth[k]))
    n = len(new_err["median"])
    print(f"{n} clips ({n_cut} with frames cut by the side); clip CSA vs the truth's whole sections,")
    print("median over the clips of the absolute error, px² (mean in brackets):")
    print(f"{'':>44} {'median':>14} {'mean':>14} {'min':>14}")
    for label, err in (("leaving cut frames out (the gateway now)", new_err), ("every frame with a nerve (before)", old_err)):
        cells = " ".join(f"{np.median(err[k]):7.1f} ({np.mean(err[k]):5.1f})" for k in STATS)
        print(f"{label:>44} {cells}")


if __name__ == "__main__":
    main()
