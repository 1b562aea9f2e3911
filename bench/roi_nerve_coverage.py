"""How much of an expert-marked nerve the gateway's ROI box leaves out, on real still images.

Run: ``.venv/bin/python bench/roi_nerve_coverage.py [--data ../shared/data/usgra_seg] [--label 1]``.

For every ``images/NAME.png`` with ``masks/NAME.png`` under ``--data`` (and its ``test/``
folder): the box :func:`gateway.pipeline.roi.find_roi` gives for the image as a one-frame
clip, and the share of the mask's ``--label`` pixels outside it. The gateway analyses only
the box, so a nerve part outside it is lost. Prints one line per image that loses more than
``--report`` of its nerve, then a summary (images cropped, median box area, images losing
nerve). Border-free B-mode images should keep their nerve whole.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.pipeline.roi import RoiConfig, find_roi
from ultramn.data.decoders import decode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "usgra_seg")
    ap.add_argument("--label", type=int, default=1, help="mask value of the nerve (usgra_seg: 1)")
    ap.add_argument("--report", type=float, default=0.01, help="report images losing more than this share of the nerve")
    args = ap.parse_args()
    folders = [f for f in (args.data, args.data / "test") if (f / "images").is_dir()]
    if not folders:
        ap.error(f"no images/ folder under {args.data}")
    n = cropped = losing = 0
    areas: list[float] = []
    for folder in folders:
        for image in sorted((folder / "images").glob("*.png")):
            mask_path = folder / "masks" / image.name
            if not mask_path.is_file():
                continue
            frames = decode(image).frames
            nerve = np.asarray(Image.open(mask_path)) == args.label
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
                print(f"{folder.name}/{image.name}: box {(x0, y0, x1, y1)} of {w}x{h}, nerve outside {lost:.0%}")
    box = float(np.median(areas))
    print(f"{n} images: {cropped} cropped (median box {box:.2f} of the frame); {losing} lose more than {args.report:.0%} of the nerve")
    return 0


if __name__ == "__main__":
    sys.exit(main())
