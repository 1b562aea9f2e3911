"""``ultramn evaluate``'s excursion of the predicted against the annotated nerve (transverse clips)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from tests.measure.test_tissue_motion import shifted_frames, speckle
from ultramn.contract import PLANES
from ultramn.data.clipio import ClipArrays, write_clip
from ultramn.data.manifest import ClipRecord, write_manifest
from ultramn.evaluate.excursion import EXCURSION_COLUMNS, clip_excursions
from ultramn.evaluate.predict import ClipPrediction
from ultramn.evaluate.runner import evaluate_dataset

SLIDE = [0.0, 4.0, 8.0, 12.0, 16.0, 20.0]  # px: the probe slides, the content moves
GLIDE = [0, 1, 2, 3, 2, 1]  # px: the nerve's own motion against the tissue


def sliding_clip(glide: list[int]) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """Speckle frames whose content moves by :data:`SLIDE`, and a nerve square that moves with it plus ``glide``."""
    frames = shifted_frames(speckle((256, 256), seed=3), [(dx, 0.0) for dx in SLIDE], 160)
    masks = np.zeros(frames.shape, np.uint8)
    for t, (dx, g) in enumerate(zip(SLIDE, glide, strict=True)):
        x = 40 + round(dx) + g
        masks[t, 60:80, x : x + 20] = 1
    return frames, masks


def test_a_prediction_that_misses_the_glide_is_off_by_it_against_the_tissue() -> None:
    frames, gt = sliding_clip(GLIDE)
    _, pred = sliding_clip([0] * len(GLIDE))  # follows the tissue, not the nerve's own motion
    out = clip_excursions("TW", frames, gt, pred, 20.0, 0.1)
    assert out["excursion_tissue_gt"] == pytest.approx(0.3, abs=0.03) and out["excursion_tissue_pred"] == pytest.approx(0.0, abs=0.03)
    assert out["excursion_tissue_error"] == pytest.approx(0.3, abs=0.03)
    assert out["excursion_gt"] == pytest.approx(2.1, abs=0.03) and out["excursion_error"] == pytest.approx(0.1, abs=0.03)
    for plane in ("LW", "", None):  # longitudinal or unlabelled: no excursion columns
        assert all(math.isnan(v) for v in clip_excursions(plane, frames, gt, pred, 20.0, 0.1).values())
    assert all(math.isnan(v) for v in clip_excursions("TF", frames[:1], gt[:1], pred[:1], 20.0, 0.1).values())
    assert set(out) == set(EXCURSION_COLUMNS)


def test_evaluate_reports_the_excursion_of_transverse_clips(tmp_path: Path) -> None:
    frames, gt = sliding_clip(GLIDE)
    _, pred = sliding_clip([0] * len(GLIDE))
    root = tmp_path / "data"
    records = []
    for clip_id, participant, plane in (("t1", "p0", "TW"), ("t2", "p1", "TF"), ("l1", "p2", "LW")):
        write_clip(root / f"clips/{clip_id}.npz", ClipArrays(frames=frames, masks=gt))
        records.append(
            ClipRecord(clip_id, participant, "L", plane, "", 0.1, 20.0, len(frames), 160, 160, "test", "test", f"clips/{clip_id}.npz")
        )
    write_manifest(root, records)

    def predict(clip_frames: npt.NDArray[np.uint8]) -> ClipPrediction:
        planes = np.zeros((clip_frames.shape[0], len(PLANES)), np.float32)
        planes[:, 0] = 1.0
        return ClipPrediction(mask_probs=pred.astype(np.float32), plane_probs=planes)

    out = tmp_path / "eval"
    m = evaluate_dataset(root, "test", predict, out, n_boot=100, progress=False)
    exc = m["excursion"]
    assert exc["units"] == "mm" and exc["n_clips"] == 2  # the LW clip has no excursion to score
    assert exc["tissue"]["n_clips"] == 2 and exc["tissue"]["gt_median"] == pytest.approx(0.3, abs=0.03)
    assert exc["tissue"]["abs_error_median"] == pytest.approx(0.3, abs=0.03)
    assert exc["image"]["abs_error_median"] == pytest.approx(0.1, abs=0.03)
    assert exc["tissue"]["abs_error_median_ci"]["estimate"] == pytest.approx(exc["tissue"]["abs_error_median"])
    assert (
        "| excursion against the tissue: abs error median (mm, 2 transverse clips; truth median 0.30) | 0.30 ["
        in (out / "report.md").read_text()
    )
    header = (out / "clips.csv").read_text().splitlines()[0].split(",")
    assert set(EXCURSION_COLUMNS) <= set(header)
