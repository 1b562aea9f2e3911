"""``ultramn.measure.tissue_motion``: following the image content (the probe's motion) over a clip."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from ultramn.data.synth.config import SynthConfig
from ultramn.data.synth.generator import ClipSpec, clip_draws, generate_clip
from ultramn.data.synth.motion import frame_state
from ultramn.measure import ClipConfig, measure_frames, summarize_clip
from ultramn.measure.clip import track_distances
from ultramn.measure.tissue_motion import TissueTrack, track_tissue


def speckle(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A smooth random texture (float), like speckle at a few pixels' grain."""
    return ndi.gaussian_filter(np.random.default_rng(seed).standard_normal(shape), 1.5)


def shifted_frames(field: np.ndarray, offsets: list[tuple[float, float]], size: int) -> np.ndarray:
    """``[N, size, size] uint8`` views of ``field`` whose content moves by ``(dx, dy)`` pixels in frame t."""
    out = []
    for dx, dy in offsets:
        moved = ndi.shift(field, (dy, dx), order=3, mode="wrap")
        crop = moved[32 : 32 + size, 32 : 32 + size]
        out.append(np.clip(128 + 60 * crop / field.std(), 0, 255).astype(np.uint8))
    return np.stack(out)


def test_known_shifts_are_recovered_to_a_fraction_of_a_pixel() -> None:
    offsets = [(0.0, 0.0), (3.4, 0.0), (7.9, -1.2), (12.0, -2.5), (10.5, -2.5), (4.25, 0.5)]
    track = track_tissue(shifted_frames(speckle((256, 256)), offsets, 160))
    assert track.shifts_px.shape == (6, 2) and track.reliable
    np.testing.assert_allclose(track.shifts_px, np.array(offsets), atol=0.25)


def test_large_frames_are_averaged_down_and_shifts_come_back_in_their_pixels() -> None:
    offsets = [(0.0, 0.0), (9.0, 0.0), (21.0, 6.0)]
    track = track_tissue(shifted_frames(speckle((700, 700), seed=1), offsets, 600), max_side=200)  # 3 x 3 blocks
    np.testing.assert_allclose(track.shifts_px, np.array(offsets), atol=1.0)


def test_unrelated_content_makes_the_track_unreliable() -> None:
    frames = shifted_frames(speckle((256, 256)), [(0, 0), (2, 0)], 160)
    jump = shifted_frames(speckle((256, 256), seed=7), [(0, 0)], 160)  # another place altogether
    track = track_tissue(np.concatenate([frames, jump]))
    assert track.peaks[0] > 15 > track.peaks[1] and not track.reliable
    assert not track_tissue(np.zeros((3, 64, 64), np.uint8)).reliable  # nothing to follow


def test_a_still_is_its_own_origin_and_bad_input_is_refused() -> None:
    one = track_tissue(np.full((1, 32, 32), 9, np.uint8))
    assert one.shifts_px.tolist() == [[0.0, 0.0]] and one.peaks.size == 0 and one.reliable
    for bad in (np.zeros((2, 32, 32), np.float32), np.zeros((32, 32), np.uint8), np.zeros((0, 32, 32), np.uint8)):
        with pytest.raises(ValueError):
            track_tissue(bad)
    tiny = track_tissue(np.zeros((3, 4, 64), np.uint8))  # too small to follow: a track that is not trusted
    assert tiny.shifts_px.shape == (3, 2) and not tiny.reliable


def _planes(n: int, plane: str) -> np.ndarray:
    probs = np.full((n, 4), 0.02, np.float32)
    probs[:, ("TW", "TF", "LW", "LF").index(plane)] = 0.94
    return probs


def test_a_transverse_clip_gets_its_nerve_motion_against_the_tissue() -> None:
    """The probe slides 30 px while the nerve glides 4 px against the tissue: plain excursion sees
    both, ``relative_to_tissue`` the glide only."""
    n = 7
    slide = np.linspace(0, 30, n)
    glide = np.array([0, 1, 2, 3, 4, 3, 2], float)
    masks = np.zeros((n, 96, 96), np.uint8)
    for t in range(n):
        x = round(20 + slide[t] + glide[t])
        masks[t, 40:50, x : x + 10] = 1
    tissue = TissueTrack(np.stack([slide, np.zeros(n)], axis=1), np.full(n - 1, 40.0), True)
    frames = measure_frames(masks, 0.1)
    summary = summarize_clip(frames, _planes(n, "TW"), 10.0, tissue=tissue, spacing=0.1)
    exc = summary.excursion
    assert exc is not None and exc.unit == "mm" and exc.range_x == pytest.approx(3.2, abs=0.11)
    assert exc.tissue_shift_max == pytest.approx(3.0)
    assert exc.relative_to_tissue is not None and exc.relative_to_tissue.range_x == pytest.approx(0.4, abs=0.11)
    assert exc.relative_to_tissue.max_from_first == pytest.approx(0.4, abs=0.11)
    as_dict = summary.to_dict()["excursion"]
    assert as_dict["relative_to_tissue"]["unit"] == "mm" and as_dict["tissue_shift_max"] == pytest.approx(3.0)
    # without a spacing the figures are in px; a longitudinal clip, an unreliable track or none: no relative figures
    px = summarize_clip(measure_frames(masks), _planes(n, "TF"), 10.0, tissue=tissue).excursion
    assert px is not None and px.unit == "px" and px.relative_to_tissue is not None and px.tissue_shift_max == pytest.approx(30.0)
    for plane, track in (("LW", tissue), ("TW", TissueTrack(tissue.shifts_px, tissue.peaks, False)), ("TW", None)):
        other = summarize_clip(frames, _planes(n, plane), 10.0, tissue=track, spacing=0.1).excursion
        assert other is not None and other.relative_to_tissue is None and other.tissue_shift_max is None


def test_a_generated_sweep_is_tracked_to_the_probe_motion_that_made_it() -> None:
    """A real generated clip whose probe slides off the nerve: the track follows the generator's
    own probe motion (slide plus tilt at mid-depth) to within half a millimetre."""
    cfg = SynthConfig(participants=1, seed=5, height=128, width=128, frames=24, sweep_off=1.0)
    spec = ClipSpec(cfg, 0, "TW", "L")
    clip = generate_clip(spec)
    _, acq, motion = clip_draws(spec)
    assert motion.sweep is not None
    s = acq.pixel_spacing_mm
    mid = cfg.height * s / 2
    truth = np.array([-(st.slide_mm + mid * np.sin(st.tilt_rad)) for st in (frame_state(motion, acq.fps, t) for t in range(24))])
    truth -= truth[0]
    track = track_tissue(clip.arrays.frames)
    assert track.reliable and np.ptp(truth) > 10  # mm: the sweep is large
    assert np.abs(track.shifts_px[:, 0] * s - truth).max() < 0.5


def test_a_region_far_off_the_nerves_track_against_the_tissue_is_left_out_of_csa_and_excursion() -> None:
    """The probe slides; the nerve moves with the tissue. In frame 5 the model marked a blob where
    the nerve had been in the image, which against the tissue is 3 diameters away: another structure."""
    n = 8
    slide = np.arange(n) * 4.0  # px
    masks = np.zeros((n, 96, 96), np.uint8)
    for t in range(n):
        x = 10 + round(slide[t])
        if t == 5:
            masks[t, 40:44, 10:14] = 1  # a small blob where the nerve was at the start, not where it is
        else:
            masks[t, 40:50, x : x + 10] = 1
    tissue = TissueTrack(np.stack([slide, np.zeros(n)], axis=1), np.full(n - 1, 40.0), True)
    frames = measure_frames(masks, 0.1)
    distances = track_distances(frames, tissue)
    assert max(d for i, d in distances.items() if i != 5) < 0.05 and distances[5] > 1.5
    summary = summarize_clip(frames, _planes(n, "TW"), 10.0, tissue=tissue, spacing=0.1)
    assert summary.off_track_frames == (5,) and 5 not in summary.csa_frames and len(summary.csa_frames) == n - 1
    assert summary.csa is not None and summary.csa.n_off_track == 1 and summary.csa.min == pytest.approx(1.0)  # 100 px, not the 16 px blob
    assert summary.excursion is not None and summary.excursion.relative_to_tissue is not None
    assert summary.excursion.relative_to_tissue.max_from_first == pytest.approx(0.0, abs=0.01)
    # the rule off, a longitudinal clip, or no track: the blob counts
    for kwargs in ({"config": ClipConfig(off_track_diameters=0)}, {"plane_probs": _planes(n, "LW")}, {"tissue": None}):
        args = {"plane_probs": _planes(n, "TW"), "tissue": tissue, **kwargs}
        other = summarize_clip(frames, args.pop("plane_probs"), 10.0, spacing=0.1, **args)
        assert other.off_track_frames == () and 5 in other.csa_frames
    # when most frames are off the median there is no track to be off: nothing is left out
    scattered = np.zeros((4, 96, 96), np.uint8)
    for t, x in enumerate((5, 60, 30, 80)):
        scattered[t, 40:50, x : x + 10] = 1
    still = TissueTrack(np.zeros((4, 2)), np.full(3, 40.0), True)
    assert summarize_clip(measure_frames(scattered, 0.1), _planes(4, "TW"), 10.0, tissue=still, spacing=0.1).off_track_frames == ()
    with pytest.raises(ValueError):
        ClipConfig(off_track_diameters=-1)
    with pytest.raises(ValueError, match="a tissue track of 7 frames for 8"):  # a track of another clip
        summarize_clip(frames, _planes(n, "TW"), 10.0, tissue=TissueTrack(tissue.shifts_px[:7], tissue.peaks[:6], True))
