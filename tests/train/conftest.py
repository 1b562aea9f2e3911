"""A tiny hand-made dataset in the project's layout: a bright ring ("nerve") drifting per frame."""

from pathlib import Path

import numpy as np
import pytest

from ultramn.contract import PLANES
from ultramn.data.clipio import ClipArrays, write_clip
from ultramn.data.manifest import ClipRecord, write_manifest


def make_clip(rng: np.random.Generator, plane_idx: int, n: int, h: int = 96, w: int = 112) -> ClipArrays:
    """Frames with a dark disc in a bright rim on speckle; planes differ by background texture."""
    yy, xx = np.mgrid[0:h, 0:w]
    frames = np.empty((n, h, w), np.uint8)
    masks = np.empty((n, h, w), np.uint8)
    cx0, cy0 = rng.uniform(35, w - 35), rng.uniform(30, h - 30)
    for i in range(n):
        cx, cy = cx0 + 0.7 * i, cy0 + 0.3 * i
        r = np.hypot((xx - cx) / 1.4, yy - cy)
        bg = 60 + 25 * plane_idx + 20 * np.sin(xx / (3 + 2 * plane_idx))
        img = bg + rng.normal(0, 12, (h, w))
        img[r < 11] = 55 + rng.normal(0, 8, int((r < 11).sum()))
        img[(r >= 11) & (r < 14)] = 210
        frames[i] = np.clip(img, 0, 255).astype(np.uint8)
        masks[i] = (r < 11).astype(np.uint8)
    return ClipArrays(frames, masks)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    recs = []
    for p in range(6):
        split = ("train", "train", "train", "train", "val", "test")[p]
        for k, plane in enumerate(PLANES):
            n = 1 if (p == 0 and k == 0) else 10
            clip = make_clip(rng, k, n)
            cid = f"p{p}_{plane}"
            write_clip(root / "clips" / f"{cid}.npz", clip)
            recs.append(
                ClipRecord(
                    clip_id=cid,
                    participant_id=f"p{p}",
                    side="L",
                    plane=plane,
                    quality=("good", "fair", "poor")[p % 3],
                    pixel_spacing_mm=0.1,
                    fps=25.0,
                    n_frames=n,
                    height=96,
                    width=112,
                    split=split,
                    source="test",
                    file=f"clips/{cid}.npz",
                )
            )
    write_manifest(root, recs)
    return root
