"""How much of a marked nerve the gateway's ROI box leaves out: real stills, or synthetic clips.

Run::

    .venv/bin/python bench/roi_nerve_coverage.py [--data ../shared/data/usgra_seg] [--label 1]
    .venv/bin/python bench/roi_nerve_coverage.py --clips data/synth [--split test]

Stills (``--data``): for every ``images/NAME.png`` with ``masks/NAME.png`` under ``--data`` (and
its ``test/`` folder), the box :func:`gateway.pipeline.roi.find_roi` gives for the image as a
one-frame clip, and the share of the mask's ``--label`` pixels outside it.

Clips (``--clips``, a dataset in the project's layout, e.g. ``ultramn synth``'s border-free
clips): each clip of ``--split`` (all when omitted) whole and its first frame alone (a still),
the box and the share of the clip's nerve pixels outside it.

The gateway analyses only the box, so a nerve part outside it is lost. Prints one line per
input that loses more than ``--report`` of its nerve, then a summary (inputs cropped, median
box area, inputs losing nerve). Border-free B-mode images should keep their nerve whole.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.pipeline.roi import RoiConfig, find_roi
from ultramn.data.clipio import read_clip
from ultramn.data.decoders import decode
from ultramn.data.manifest import read_manifest


def stills(data: Path, label: int) -> Iterator[tuple[str, npt.NDArray[np.uint8], npt.NDArray[np.bool_]]]:
    """``(name, frames [1,H,W] uint8, nerve [1,H,W] bool)`` of each image with a mask."""
    for folder in (f for f in (data, data / "test") if (f / "images").is_dir()):
        for image in sorted((folder / "images").glob("*.png")):
            mask_path = folder / "masks" / image.name
            if mask_path.is_file():
                yield f"{folder.name}/{image.name}", decode(image).frames, (np.asarray(Image.open(mask_path)) == label)[None]


def clips(root: Path, split: str | None) -> Iterator[tuple[str, npt.NDArray[np.uint8], npt.NDArray[np.bool_]]]:
    """Each clip of ``split`` whole, then its first frame alone: ``(name, frames, nerve masks)``."""
    for rec in read_manifest(root):
        if split is None or rec.split == split:
            clip = read_clip(root / rec.file)
            yield rec.clip_id, clip.frames, clip.masks > 0
            yield f"{rec.clip_id} (frame 0)", clip.frames[:1], clip.masks[:1] > 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "usgra_seg")
    ap.add_argument("--label", type=int, default=1, help="mask value of the nerve (usgra_seg: 1)")
    ap.add_argument("--clips", type=Path, default=None, help="a dataset of clips (manifest.csv) instead of --data's stills")
    ap.add_argument("--split", default=None, help="with --clips: only this split")
    ap.add_argument("--report", type=float, default=0.01, help="report inputs losing more than this share of the nerve")
    args = ap.parse_args()
    if args.clips is not None:
        if not (args.clips / "manifest.csv").is_file():
            ap.error(f"no manifest.csv in {args.clips}")
        inputs = clips(args.clips, args.split)
    else:
        if not any((f / "images").is_dir() for f in (args.data, args.data / "test")):
            ap.error(f"no images/ folder under {args.data}")
        inputs = stills(args.data, args.label)
    n = cropped = losing = 0
    areas: list[float] = []
    for name, frames, nerve in inputs:
        _, h, w = frames.shape
        x0, y0, x1, y1 = find_roi(frames, RoiConfig())
        inside = np.zeros((h, w), bool)
        inside[y0:y1, x0:x1] = True
        lost = float((nerve & ~inside).sum() / max(1, nerve.sum()))
        n += 1
        cropped += (x0, y0, x1, y1) != (0, 0, w, h)
        areas.append((x1 - x0) * (y1 - y0) / (w * h))
        if lost > args.report:
            losing += 1
            print(f"{name}: box {(x0, y0, x1, y1)} of {w}x{h}, nerve outside {lost:.0%}")
    if n == 0:
        print("no inputs found", file=sys.stderr)
        return 2
    box = float(np.median(areas))
    what = "inputs" if args.clips is not None else "images"
    print(f"{n} {what}: {cropped} cropped (median box {box:.2f} of the frame); {losing} lose more than {args.report:.0%} of the nerve")
    return 0


if __name__ == "__main__":
    sys.exit(main())
