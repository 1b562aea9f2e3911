"""Pipeline stages without a server: geometry of the mask mapping, contract check, windows."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.pipeline import postprocess, preprocess, stitch, windows
from gateway.pipeline.context import ClipContext
from gateway.triton_client import ContractMismatchError, check_model_config
from ultramn.contract import CONTRACT
from ultramn.data.decoders import DecodedClip
from ultramn.windowing import DEFAULT_MIN_SIMILARITY, DEFAULT_TEMPORAL_FILTER


def test_masks_go_back_to_the_original_geometry_through_the_roi() -> None:
    """A disc predicted in model geometry lands where it belongs in the full (uncropped) frame."""
    n, h0, w0 = 3, 220, 280
    roi = (52, 34, 212, 162)  # 160 x 128 crop
    frames = np.zeros((n, h0, w0), np.uint8)
    ctx = ClipContext(job_id="x", clip=DecodedClip(frames, 25.0, 0.2, (0.2, 0.2), "npy"), roi=roi)
    model = CONTRACT.height, CONTRACT.width
    # a disc in model geometry that is an ellipse of 40 x 32 px centred at (80, 64) in the 160 x 128 crop
    sx, sy = CONTRACT.width / 160, CONTRACT.height / 128
    yy, xx = np.mgrid[0 : model[0], 0 : model[1]]
    ellipse = (((xx - 80 * sx) / (20 * sx)) ** 2 + ((yy - 64 * sy) / (16 * sy)) ** 2 <= 1).astype(np.float32)
    probs = np.stack([ellipse] * n)
    ctx.frame_mask_probs = probs
    ctx.frame_planes = np.tile(np.array([[0.7, 0.1, 0.1, 0.1]], np.float32), (n, 1))
    postprocess.run(ctx, postprocess.PostprocessConfig())
    assert ctx.masks is not None and ctx.masks.shape == (n, h0, w0)
    assert ctx.masks[:, : roi[1]].sum() == 0 and ctx.masks[:, :, : roi[0]].sum() == 0
    assert ctx.result is not None
    f = ctx.result["frames"][0]
    cx, cy = f["centroid"]
    assert cx == pytest.approx(52 + 80, abs=1.0) and cy == pytest.approx(34 + 64, abs=1.0)
    x0, y0, x1, y1 = f["bbox"]
    assert (x1 - x0) == pytest.approx(40, abs=3) and (y1 - y0) == pytest.approx(32, abs=3)
    assert f["flattening_ratio"] == pytest.approx(1.25, abs=0.08)
    assert f["csa_mm2"] == pytest.approx(f["csa_px"] * 0.04, rel=1e-6)
    xs = [p[0] for p in f["contour"]]
    assert min(xs) >= x0 - 1 and max(xs) <= x1
    assert ctx.result["roi"] == {"x0": 52, "y0": 34, "x1": 212, "y1": 162}
    assert ctx.result["plane"] == "TW" and ctx.result["spacing_source"] == "file"
    assert ctx.result["csa"]["unit"] == "mm2" or ctx.result["csa"]["unit"].startswith("mm")


def test_preprocess_windows_stitch_shapes() -> None:
    frames = np.random.default_rng(0).integers(0, 255, (10, 60, 90), dtype=np.uint8)
    ctx = ClipContext(job_id="x", clip=DecodedClip(frames, None, None, None, "npy"), roi=(10, 5, 70, 55))
    preprocess.run(ctx, preprocess.PreprocessConfig())
    assert ctx.model_frames is not None and ctx.model_frames.shape == (10, CONTRACT.height, CONTRACT.width)
    assert ctx.model_frames.dtype == np.float32 and ctx.model_frames.min() >= 0 and ctx.model_frames.max() <= 1
    windows.run(ctx, windows.WindowConfig(stride=4))
    assert ctx.indices is not None and ctx.indices.tolist()[-1] == [2, 3, 4, 5, 6, 7, 8, 9]
    nw = ctx.indices.shape[0]
    ctx.window_masks = np.ones((nw, CONTRACT.window_frames, CONTRACT.height, CONTRACT.width), np.float32) * 0.25
    ctx.window_planes = np.tile(np.array([[0.1, 0.6, 0.2, 0.1]], np.float32), (nw, 1))
    stitch.run(ctx)
    assert ctx.frame_mask_probs is not None and ctx.frame_mask_probs.shape == (10, CONTRACT.height, CONTRACT.width)
    np.testing.assert_allclose(ctx.frame_mask_probs, 0.25, atol=1e-6)


def _config(**changes: object) -> dict[str, object]:
    cfg: dict[str, object] = {
        "name": "ultramn",
        "input": [{"name": t.name, "data_type": t.dtype, "dims": [str(d) for d in t.dims]} for t in CONTRACT.inputs],
        "output": [{"name": t.name, "data_type": t.dtype, "dims": [str(d) for d in t.dims]} for t in CONTRACT.served_outputs],
    }
    cfg.update(changes)
    return cfg


def test_model_config_is_checked_against_the_contract() -> None:
    check_model_config(_config())
    bad_dims = _config(input=[{"name": "frames", "data_type": "TYPE_FP32", "dims": ["1", "16", "128", "128"]}])
    with pytest.raises(ContractMismatchError, match="frames"):
        check_model_config(bad_dims)
    missing = _config(output=[{"name": "plane_probs", "data_type": "TYPE_FP32", "dims": ["4"]}])
    with pytest.raises(ContractMismatchError, match="mask_probs"):
        check_model_config(missing)


def test_stitch_blend_comes_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """ULTRAMN_STITCH_BLEND reaches the stitch stage; an unknown value is refused at start-up."""
    from pydantic import ValidationError

    from gateway.core.config import Settings
    from gateway.pipeline.runner import PipelineConfig

    assert PipelineConfig.from_settings(Settings()).stitch.blend == "triangular"
    monkeypatch.setenv("ULTRAMN_STITCH_BLEND", "uniform")
    monkeypatch.setenv("ULTRAMN_STITCH_TEMPORAL_FILTER", "1")  # the window weights alone
    config = PipelineConfig.from_settings(Settings())
    assert config.stitch.blend == "uniform"
    # two windows that disagree: uniform gives their plain mean on the shared frames
    frames = np.zeros((12, 8, 8), np.uint8)
    ctx = ClipContext(job_id="x", clip=DecodedClip(frames, None, None, None, "npy"), roi=(0, 0, 8, 8))
    ctx.indices = np.array([list(range(8)), list(range(4, 12))])
    ctx.window_masks = np.stack([np.ones((8, 2, 2), np.float32), np.zeros((8, 2, 2), np.float32)])
    ctx.window_planes = np.full((2, 4), 0.25, np.float32)
    stitch.run(ctx, config.stitch)
    assert ctx.frame_mask_probs is not None
    np.testing.assert_allclose(ctx.frame_mask_probs[4:8], 0.5)
    stitch.run(ctx, stitch.StitchConfig(blend="triangular", temporal_filter=1))
    np.testing.assert_allclose(ctx.frame_mask_probs[4:8, 0, 0], [0.8, 0.6, 0.4, 0.2], rtol=1e-6)
    monkeypatch.setenv("ULTRAMN_STITCH_BLEND", "gaussian")
    with pytest.raises(ValidationError, match="stitch_blend"):
        Settings()


def test_stitch_temporal_filter_comes_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """ULTRAMN_STITCH_TEMPORAL_FILTER averages stitched masks over K frames, gated by
    ULTRAMN_STITCH_TEMPORAL_MIN_SIMILARITY; an even K or a gate outside [0, 1] is refused at start-up."""
    from pydantic import ValidationError

    from gateway.core.config import Settings
    from gateway.pipeline.runner import PipelineConfig

    default = PipelineConfig.from_settings(Settings())
    assert default.stitch.temporal_filter == DEFAULT_TEMPORAL_FILTER == 5
    assert default.stitch.min_similarity == DEFAULT_MIN_SIMILARITY
    assert default.provenance()["temporal_min_similarity"] == DEFAULT_MIN_SIMILARITY
    monkeypatch.setenv("ULTRAMN_STITCH_TEMPORAL_FILTER", "3")
    monkeypatch.setenv("ULTRAMN_STITCH_TEMPORAL_MIN_SIMILARITY", "0")
    config = PipelineConfig.from_settings(Settings())
    assert (config.stitch.temporal_filter, config.stitch.min_similarity) == (3, 0.0)
    # one window of 8 frames with the nerve (8 x 8 px at 0.9) in frame 3 only
    frames = np.zeros((8, 8, 8), np.uint8)
    ctx = ClipContext(job_id="x", clip=DecodedClip(frames, None, None, None, "npy"), roi=(0, 0, 8, 8))
    ctx.indices = np.array([list(range(8))])
    ctx.window_masks = np.zeros((1, 8, 8, 8), np.float32)
    ctx.window_masks[0, 3] = 0.9
    ctx.window_planes = np.full((1, 4), 0.25, np.float32)
    stitch.run(ctx, config.stitch)  # ungated: the filter spreads it over frames 2-4
    assert ctx.frame_mask_probs is not None
    np.testing.assert_allclose(ctx.frame_mask_probs[:, 0, 0], [0, 0, 0.3, 0.3, 0.3, 0, 0, 0], atol=1e-6)
    stitch.run(ctx, stitch.StitchConfig(temporal_filter=1))
    np.testing.assert_allclose(ctx.frame_mask_probs[:, 0, 0], [0, 0, 0, 0.9, 0, 0, 0, 0], atol=1e-6)
    stitch.run(ctx, stitch.StitchConfig(min_similarity=0.0))  # 5 frames, ungated
    np.testing.assert_allclose(ctx.frame_mask_probs[:, 0, 0], [0, 0.18, 0.18, 0.18, 0.18, 0.18, 0, 0], atol=1e-6)
    stitch.run(ctx, stitch.StitchConfig())  # the default: 5 frames, gated: no nerve mixed into empty frames
    np.testing.assert_allclose(ctx.frame_mask_probs[:, 0, 0], [0, 0, 0, 0.9, 0, 0, 0, 0], atol=1e-6)
    for bad in ("2", "0"):
        monkeypatch.setenv("ULTRAMN_STITCH_TEMPORAL_FILTER", bad)
        with pytest.raises(ValidationError, match="stitch_temporal_filter"):
            Settings()
    monkeypatch.setenv("ULTRAMN_STITCH_TEMPORAL_FILTER", "5")
    for bad in ("-0.1", "1.5", "nan"):
        monkeypatch.setenv("ULTRAMN_STITCH_TEMPORAL_MIN_SIMILARITY", bad)
        with pytest.raises(ValidationError, match="stitch_temporal_min_similarity"):
            Settings()
    with pytest.raises(ValueError, match="odd whole number"):
        stitch.StitchConfig(temporal_filter=4)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        stitch.StitchConfig(min_similarity=2.0)


@pytest.mark.parametrize(("plane_index", "warned"), [(0, False), (1, False), (2, True), (3, True)])
def test_a_longitudinal_clip_says_its_area_is_not_a_csa(plane_index: int, warned: bool) -> None:
    n = 4
    frames = np.zeros((n, 64, 64), np.uint8)
    ctx = ClipContext(job_id="x", clip=DecodedClip(frames, 25.0, 0.1, (0.1, 0.1), "npy"), roi=(0, 0, 64, 64))
    probs = np.zeros((n, CONTRACT.height, CONTRACT.width), np.float32)
    probs[:, 60:100, 40:120] = 1.0  # a band
    ctx.frame_mask_probs = probs
    planes = np.full((n, 4), 0.02, np.float32)
    planes[:, plane_index] = 0.94
    ctx.frame_planes = planes
    postprocess.run(ctx, postprocess.PostprocessConfig())
    assert ctx.result is not None and ctx.result["plane"] == CONTRACT.planes[plane_index]
    notes = [w for w in ctx.result["warnings"] if "not its cross-sectional area" in w]
    assert len(notes) == int(warned)
    assert ctx.result["csa"] is not None  # the area is still reported, with the note beside it
    # no nerve found: nothing to warn about
    ctx.frame_mask_probs = np.zeros_like(probs)
    postprocess.run(ctx, postprocess.PostprocessConfig())
    assert not [w for w in ctx.result["warnings"] if "cross-sectional" in w]


def test_a_transverse_clip_with_longitudinal_frames_reports_csa_of_its_transverse_frames_and_says_so() -> None:
    n = 6
    frames = np.zeros((n, 64, 64), np.uint8)
    ctx = ClipContext(job_id="x", clip=DecodedClip(frames, 25.0, 0.1, (0.1, 0.1), "npy"), roi=(0, 0, 64, 64))
    probs = np.zeros((n, CONTRACT.height, CONTRACT.width), np.float32)
    probs[:4, 70:90, 70:90] = 1.0  # a small oval stand-in
    probs[4:, 60:100, 10:150] = 1.0  # the probe turned: a long band
    ctx.frame_mask_probs = probs
    planes = np.full((n, 4), 0.02, np.float32)
    planes[:4, CONTRACT.planes.index("TW")] = 0.94
    planes[4:, CONTRACT.planes.index("LW")] = 0.94
    ctx.frame_planes = planes
    postprocess.run(ctx, postprocess.PostprocessConfig())
    assert ctx.result is not None and ctx.result["plane"] == "TW"
    csa = ctx.result["csa"]
    band_px = max(f["csa_px"] for f in ctx.result["frames"][4:])
    assert csa["n_frames"] == 4 and csa["n_other_view"] == 2 and csa["max"] < band_px * 0.01 / 2
    notes = [w for w in ctx.result["warnings"] if "2 frame(s) with a nerve are longitudinal views" in w]
    assert len(notes) == 1 and "csa covers only the transverse frames of this TW clip" in notes[0]


def test_a_stride_of_zero_is_refused_not_taken_for_the_default() -> None:
    """``ultramn batch --triton --stride 0`` analysed with the default stride (and said so) where the API answers 422."""
    frames = np.zeros((12, 20, 20), np.uint8)
    ctx = ClipContext(job_id="x", clip=DecodedClip(frames, None, None, None, "npy"), stride=0)
    with pytest.raises(ValueError, match="stride"):
        windows.run(ctx, windows.WindowConfig(stride=4))
    ctx.stride = None
    windows.run(ctx, windows.WindowConfig(stride=4))
    assert ctx.indices is not None and ctx.indices[:, 0].tolist() == [0, 4]


def postprocessed(frames: np.ndarray, probs: np.ndarray, plane: str, track_tissue: bool = True) -> dict:
    """The result the postprocess stage makes of ``frames`` ``[N,H,W]`` (ROI: the whole frame, 0.1 mm
    pixels) with stitched nerve probabilities ``probs`` (model geometry) and every frame of ``plane``."""
    n, h, w = frames.shape
    ctx = ClipContext(job_id="x", clip=DecodedClip(frames, 25.0, 0.1, (0.1, 0.1), "npy"), roi=(0, 0, w, h))
    ctx.frame_mask_probs = probs
    planes = np.full((n, 4), 0.02, np.float32)
    planes[:, CONTRACT.planes.index(plane)] = 0.94
    ctx.frame_planes = planes
    postprocess.run(ctx, postprocess.PostprocessConfig(track_tissue=track_tissue))
    assert ctx.result is not None
    return ctx.result


def test_a_sliding_probe_is_named_and_the_excursion_is_also_given_against_the_tissue() -> None:
    """The image content slides 24 px (2.4 mm) and the nerve with it: the plain excursion is the
    probe's slide, the tissue-relative one about zero, and a warning says so. A still probe: no warning."""
    from tests.measure.test_tissue_motion import shifted_frames, speckle

    n = 5
    offsets = [(6.0 * t, 0.0) for t in range(n)]
    field = speckle((256, 256))

    def analysed(moves: list[tuple[float, float]], plane: str, track_tissue: bool = True) -> dict:
        probs = np.zeros((n, CONTRACT.height, CONTRACT.width), np.float32)
        for t, (dx, _) in enumerate(moves):  # the nerve moves with the tissue (model pixels = frame pixels here)
            x = round(60 + dx * CONTRACT.width / 160)
            probs[t, 60:80, x : x + 20] = 1.0
        return postprocessed(shifted_frames(field, moves, 160), probs, plane, track_tissue)

    result = analysed(offsets, "TW")
    exc = result["excursion"]
    assert exc["max_from_first"] == pytest.approx(2.4, abs=0.15) and exc["tissue_shift_max"] == pytest.approx(2.4, abs=0.1)
    assert exc["relative_to_tissue"]["max_from_first"] < 0.15
    notes = [w for w in result["warnings"] if "the probe slid or tilted" in w]
    assert len(notes) == 1 and "moved up to 2.4 mm" in notes[0], result["warnings"]
    still = analysed([(0.0, 0.0)] * n, "TW")
    assert still["excursion"]["tissue_shift_max"] == pytest.approx(0.0, abs=0.05)
    assert not [w for w in still["warnings"] if "the probe slid" in w]
    longitudinal = analysed(offsets, "LW")["excursion"]  # content there is mostly tendon glide: no tissue figures
    assert longitudinal["relative_to_tissue"] is None and longitudinal["tissue_shift_max"] is None
    # the live stream's postprocess (no tissue track): the same frames, no tissue figures and no warning
    untracked = analysed(offsets, "TW", track_tissue=False)
    assert untracked["excursion"]["relative_to_tissue"] is None and untracked["excursion"]["tissue_shift_max"] is None
    assert untracked["excursion"]["max_from_first"] == exc["max_from_first"]
    assert untracked["frames"][2]["csa_px"] == result["frames"][2]["csa_px"]  # the frames' own measurements are the same
    assert not [w for w in untracked["warnings"] if "the probe slid" in w]


def test_a_region_off_the_nerves_track_is_flagged_and_left_out_of_csa() -> None:
    """The probe slides 12 px a frame; in frame 4 the model marks a blob where the nerve was at the start."""
    from tests.measure.test_tissue_motion import shifted_frames, speckle

    n = 6
    frames = shifted_frames(speckle((256, 256), seed=2), [(12.0 * t, 0.0) for t in range(n)], 160)
    probs = np.zeros((n, CONTRACT.height, CONTRACT.width), np.float32)
    for t in range(n):
        x = 20 if t == 4 else round(20 + 12.0 * t * CONTRACT.width / 160)
        probs[t, 60:80, x : x + 20] = 1.0
    result = postprocessed(frames, probs, "TF")
    assert [f["off_track"] for f in result["frames"]] == [t == 4 for t in range(n)]
    assert result["frames"][4]["nerve_present"]  # the model's answer per frame is kept; the clip figures leave it out
    assert result["csa"]["n_off_track"] == 1 and result["csa"]["n_frames"] == n - 1
    notes = [w for w in result["warnings"] if "(off_track)" in w]
    assert len(notes) == 1 and notes[0].startswith("1 frame(s)")


def test_a_transverse_clip_leaves_frames_with_the_nerve_cut_by_the_side_out_of_csa_and_says_so() -> None:
    """A probe sliding off the nerve: its last frames show the nerve cut by the ROI's right side."""
    n = 5
    probs = np.zeros((n, CONTRACT.height, CONTRACT.width), np.float32)
    for i, x in enumerate((40, 60, 80)):
        probs[i, 70:90, x : x + 20] = 1.0  # whole sections
    probs[3:, 70:90, 150:] = 1.0  # cut by the right side
    result = postprocessed(np.zeros((n, 64, 64), np.uint8), probs, "TW")
    assert [f["at_side"] for f in result["frames"]] == [False, False, False, True, True]
    csa = result["csa"]
    assert csa["n_frames"] == 3 and csa["n_at_side"] == 2 and csa["partial"] is False
    assert csa["min"] > max(f["csa_mm2"] for f in result["frames"][3:])  # the cut ones were smaller
    notes = [w for w in result["warnings"] if "cut by the image's side" in w]
    assert len(notes) == 1 and notes[0].startswith("2 frame(s)")
