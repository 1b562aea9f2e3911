"""Regions away from the nerve's track against the tissue: false detections in a clip's CSA and excursion.

Run: ``.venv/bin/python bench/off_track.py --data data/synth-sweep-tune --cache runs/pred-sweep-tune``
(``--cache``: predictions are saved there and reused by the next run on the same data).

For every transverse clip (annotated TW or TF) the shipped weights predict the nerve as
``ultramn evaluate`` does (product settings), the frames are measured in px (the synthetic
``.npz`` files have no spacing, as through the gateway) and summarised by
:func:`ultramn.measure.clip.summarize_clip` with the gateway's tissue track, with the
``off_track`` rule (``ClipConfig.off_track_diameters``) and without it (0). Reported:

- the distance of each frame's region from the clip's track median (against the tissue, in
  nerve diameters), for frames whose truth has a nerve and for false detections (truth empty),
  which is what the rule's threshold is chosen on;
- the frames the clip's CSA uses that are false detections, and true whole-section frames the
  rule leaves out, with and without the rule;
- the median absolute error of the clip's CSA median and min (px) against the truth's whole
  sections. Not part of the tests.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ultramn.contract import PLANE_VIEWS
from ultramn.data.clipio import read_clip
from ultramn.data.manifest import read_manifest
from ultramn.measure import measure_frames, summarize_clip
from ultramn.measure.clip import DEFAULT_CLIP_CONFIG, track_distances
from ultramn.measure.tissue_motion import track_tissue


def predictions(data: Path, clip_file: str, cache: Path | None, model: object) -> tuple[np.ndarray, np.ndarray]:
    """``(masks uint8 [N,H,W], plane_probs [N,4])`` of one clip, from ``cache`` when it holds them."""
    target = cache / (Path(clip_file).stem + ".npz") if cache else None
    if target is not None and target.is_file():
        with np.load(target) as z:
            return z["masks"], z["planes"]
    from ultramn.evaluate.predict import predict_clip

    pred = predict_clip(model, read_clip(data / clip_file).frames)  # type: ignore[arg-type]
    masks = pred.masks()
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(target, masks=masks, planes=pred.plane_probs)
    return masks, pred.plane_probs


def whole(mask: np.ndarray) -> bool:
    """A truth nerve in view and not touching the left or right side."""
    return bool(mask.any()) and not (mask[:, 0].any() or mask[:, -1].any())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--checkpoint", type=Path, default=Path("models/ultramn.pt"))
    ap.add_argument("--split", default="all")
    ap.add_argument("--cache", type=Path, help="folder for the predictions (reused when present)")
    args = ap.parse_args()
    records = [r for r in read_manifest(args.data) if PLANE_VIEWS.get(r.plane) == "transverse" and args.split in ("all", r.split)]
    model = None
    if args.cache is None or not all((args.cache / (Path(r.file).stem + ".npz")).is_file() for r in records):
        import torch

        from ultramn.model.checkpoint import load_checkpoint

        torch.set_num_threads(1)
        model, _ = load_checkpoint(args.checkpoint, map_location="cpu")
    rule = DEFAULT_CLIP_CONFIG
    off = replace(rule, off_track_diameters=0.0)
    dist_true: list[float] = []
    dist_false: list[float] = []
    counts = {
        "false in csa (rule off)": 0,
        "false in csa (rule on)": 0,
        "true whole left out by the rule": 0,
        "clips with frames off the track": 0,
        "clips": 0,
    }
    affected_keys = ("min off, clips with frames off the track", "min on, clips with frames off the track")
    keys = ("median off", "median on", "min off", "min on", *affected_keys)
    errors: dict[str, list[float]] = {k: [] for k in keys}
    for rec in tqdm(records, unit="clip", desc="clips"):
        clip = read_clip(args.data / rec.file)
        masks, planes = predictions(args.data, rec.file, args.cache, model)
        frames = measure_frames(masks)
        tissue = track_tissue(clip.frames)
        truth_present = [bool(m.any()) for m in clip.masks]
        candidates = summarize_clip(frames, planes, rec.fps, config=off, tissue=tissue).csa_frames
        for i, d in track_distances(frames, tissue, candidates).items():
            (dist_true if truth_present[i] else dist_false).append(d)
        truth_areas = [int(m.sum()) for m in clip.masks if whole(m)]
        counts["clips"] += 1
        affected = bool(summarize_clip(frames, planes, rec.fps, config=rule, tissue=tissue).off_track_frames)
        counts["clips with frames off the track"] += affected
        for label, config in (("off", off), ("on", rule)):
            summary = summarize_clip(frames, planes, rec.fps, config=config, tissue=tissue)
            used = summary.csa_frames
            if label == "off":
                counts["false in csa (rule off)"] += sum(not truth_present[i] for i in used)
            else:
                counts["false in csa (rule on)"] += sum(not truth_present[i] for i in used)
                counts["true whole left out by the rule"] += sum(whole(clip.masks[i]) for i in summary.off_track_frames)
            if summary.csa is not None and truth_areas:
                errors[f"median {label}"].append(abs(summary.csa.median - float(np.median(truth_areas))))
                errors[f"min {label}"].append(abs(summary.csa.min - float(np.min(truth_areas))))
                if affected:
                    errors[f"min {label}, clips with frames off the track"].append(abs(summary.csa.min - float(np.min(truth_areas))))
    print(f"{args.data}: {counts['clips']} transverse clips; rule {rule.off_track_diameters} nerve diameters")
    for label, d in (("truth has a nerve", dist_true), ("false detection", dist_false)):
        if d:
            arr = np.array(d)
            spread = f"median {np.median(arr):.2f}, 99 % {np.percentile(arr, 99):.2f}, max {arr.max():.2f}; min {arr.min():.2f}"
            print(f"  distance from the track median (nerve diameters), {label}: n {arr.size}, {spread}")
    for key, value in counts.items():
        if key != "clips":
            print(f"  {key}: {value}")
    for key, values in errors.items():
        if values:
            print(f"  clip CSA {key}: median abs error {np.median(values):.1f} px² over {len(values)} clips")


if __name__ == "__main__":
    main()
