"""Importers on real files: usgra_seg still images, videos with masks, DICOM cine without identifiers."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.data.test_decoders import H, T, W, moving_square, square_masks, write_dicom_cine, write_gif, write_video
from ultramn.contract import SPLITS
from ultramn.data.clipio import read_clip
from ultramn.data.decoders import DEFAULT_LIMITS
from ultramn.data.importers.common import ImportOptions, load_mask_stack
from ultramn.data.importers.dicom import import_dicoms
from ultramn.data.importers.images import import_images
from ultramn.data.importers.video import import_videos
from ultramn.data.manifest import read_manifest
from ultramn.errors import UserInputError

USGRA = Path("/work/shared/data/usgra_seg")


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ultramn", *map(str, args)], capture_output=True, text=True, timeout=120)


def _no_participant_crosses_splits(root: Path) -> None:
    seen: dict[str, set[str]] = defaultdict(set)
    for rec in read_manifest(root):
        assert rec.split in SPLITS
        seen[rec.participant_id].add(rec.split)
    assert all(len(s) == 1 for s in seen.values())


def test_usgra_seg_imports_244_single_frame_clips_with_nerve_masks(tmp_path: Path) -> None:
    out = tmp_path / "usgra"
    result = _cli("import", "images", "--images", USGRA / "images", "--masks", USGRA / "masks", "--out", out, "--mask-value", "1")
    assert result.returncode == 0, result.stderr
    assert "imported 204 clips" in result.stdout
    report = import_images(USGRA / "test" / "images", USGRA / "test" / "masks", ImportOptions(out=out, mask_value=1), dataset="usgra-test")
    assert len(report.written) == 40
    records = read_manifest(out)
    assert len(records) == 244
    assert sum(r.source == "images:usgra_seg" for r in records) == 204
    assert sum(r.source == "images:usgra-test" for r in records) == 40
    assert len({r.participant_id for r in records}) == 244
    empty = []
    for rec in records:
        clip = read_clip(out / rec.file)
        assert clip.frames.shape == (1, rec.height, rec.width) and rec.n_frames == 1
        assert set(np.unique(clip.masks)) <= {0, 1}
        if not clip.masks.any():
            empty.append(rec.clip_id)
    assert empty == []  # every usgra_seg image has nerve pixels (label 1)
    # the nerve label only: the stored mask equals (raw mask == 1), vessels (2) excluded
    raw = np.asarray(Image.open(USGRA / "masks" / "0000.png"))
    stored = read_clip(out / "clips" / "usgra_seg-0000.npz")
    np.testing.assert_array_equal(stored.masks[0], (raw == 1).astype(np.uint8))
    assert (raw == 2).any()
    _no_participant_crosses_splits(out)
    assert {r.split for r in records} == set(SPLITS)


def _write_pngs(folder: Path, names_arrays: dict[str, np.ndarray]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, arr in names_arrays.items():
        Image.fromarray(arr).save(folder / name)


def test_images_clip_and_participant_patterns_and_reimport(tmp_path: Path) -> None:
    frames = moving_square(n=3)
    masks = square_masks(n=3) * 2  # multi-class: 2 = nerve
    images, mask_dir, out = tmp_path / "frames", tmp_path / "labels", tmp_path / "out"
    rgb = lambda a: np.stack([a, a, a], axis=-1)  # noqa: E731
    imgs, msks = {}, {}
    for subject in ("s01", "s02"):
        for clip in ("a", "b"):
            for i in (0, 1, 2):  # frame 10 must sort after frame 2
                idx = {0: "2", 1: "10", 2: "1"}[i]
                order = {"1": 0, "2": 1, "10": 2}[idx]
                imgs[f"{subject}_{clip}_f{idx}.png"] = rgb(frames[order])
                msks[f"{subject}_{clip}_f{idx}_mask.png"] = masks[order]
    _write_pngs(images, imgs)
    _write_pngs(mask_dir, msks)
    opts = ImportOptions(out=out, mask_value=2, plane="TW", side="L", pixel_spacing_mm=0.08)
    report = import_images(
        images, mask_dir, opts, dataset="demo", mask_suffix="_mask", clip_pattern=r"^(s\d+_[ab])_", participant_pattern=r"^(s\d+)_"
    )
    assert sorted(r.clip_id for r in report.written) == ["demo-s01_a", "demo-s01_b", "demo-s02_a", "demo-s02_b"]
    records = read_manifest(out)
    assert {r.participant_id for r in records} == {"demo-s01", "demo-s02"}
    rec = records[0]
    assert (rec.n_frames, rec.height, rec.width, rec.plane, rec.side, rec.pixel_spacing_mm) == (3, H, W, "TW", "L", 0.08)
    stored = read_clip(out / rec.file)
    np.testing.assert_array_equal(stored.frames, frames)  # natural order f1, f2, f10
    np.testing.assert_array_equal(stored.masks, square_masks(n=3))
    _no_participant_crosses_splits(out)
    again = import_images(
        images, mask_dir, opts, dataset="demo", mask_suffix="_mask", clip_pattern=r"^(s\d+_[ab])_", participant_pattern=r"^(s\d+)_"
    )
    assert len(again.all_records) == 4 and len(read_manifest(out)) == 4
    # images and their _mask files in one folder
    both = tmp_path / "both"
    _write_pngs(both, {**imgs, **msks})
    shared = import_images(both, both, ImportOptions(out=tmp_path / "out2", mask_value=2), mask_suffix="_mask")
    assert len(shared.written) == 12 and all(r.clip_id.startswith("both-s0") for r in shared.written)


def test_images_bad_input_exits_2(tmp_path: Path) -> None:
    images, masks, out = tmp_path / "images", tmp_path / "masks", tmp_path / "out"
    _write_pngs(images, {"a.png": moving_square(n=1)[0], "b.png": moving_square(n=1)[0]})
    _write_pngs(masks, {"a.png": np.zeros((H + 2, W), np.uint8), "b.png": np.zeros((H, W), np.uint8)})
    result = _cli("import", "images", "--images", images, "--masks", masks, "--out", out)
    assert result.returncode == 2
    assert re.search(r"frames are 64x48 but masks 64x50", result.stderr), result.stderr
    skipped = _cli("import", "images", "--images", images, "--masks", masks, "--out", out, "--skip-bad", "--dataset", "images")
    assert skipped.returncode == 0, skipped.stderr
    assert "skipped" in skipped.stderr and [r.clip_id for r in read_manifest(out)] == ["images-b"]
    missing = _cli("import", "images", "--images", tmp_path / "nope", "--masks", masks, "--out", out)
    assert missing.returncode == 2 and "no such folder" in missing.stderr
    _write_pngs(masks, {"a.png": np.zeros((H, W), np.uint8)})
    (images / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (masks / "c.png").write_bytes((masks / "b.png").read_bytes())
    with pytest.raises(UserInputError, match=r"c\.png"):
        import_images(images, masks, ImportOptions(out=out), dataset="x")
    with pytest.raises(UserInputError, match="--plane"):
        ImportOptions(out=out, plane="XX")
    with pytest.raises(UserInputError, match="--mask-suffix"):  # masks beside the images need a suffix
        import_images(images, images, ImportOptions(out=out), dataset="x")
    with pytest.raises(UserInputError, match=r"between 0\.001 and 10"):
        ImportOptions(out=out, pixel_spacing_mm=80.0)


def test_video_import_mask_conventions(tmp_path: Path) -> None:
    videos, out = tmp_path / "videos", tmp_path / "out"
    videos.mkdir()
    frames, masks = moving_square(), square_masks()
    write_video(videos / "p1_clip.mp4", frames, "libx264", fps=30)
    _write_pngs(videos / "p1_clip_mask", {f"{i}.png": m * 255 for i, m in enumerate(masks)})
    write_video(videos / "p2_clip.avi", frames, "mpeg4", fps=20)
    np.save(videos / "p2_clip_mask.npy", masks * 3)  # label 3 = nerve
    write_video(videos / "p1_other.mp4", frames, "libx264")
    write_video(videos / "p1_other_mask.mp4", masks * 255, "libx264", colour=False)
    result = _cli("import", "video", "--videos", videos, "--out", out, "--participant-pattern", r"^(p\d+)_", "--plane", "tf")
    assert result.returncode == 0, result.stderr
    records = {r.clip_id: r for r in read_manifest(out)}
    assert set(records) == {"videos-p1_clip", "videos-p2_clip", "videos-p1_other"}
    assert records["videos-p1_clip"].fps == pytest.approx(30.0) and records["videos-p2_clip"].fps == pytest.approx(20.0)
    assert {r.participant_id for r in records.values()} == {"videos-p1", "videos-p2"}
    assert all(r.plane == "TF" and r.n_frames == T and r.source == "video:videos" for r in records.values())
    for rec in records.values():
        clip = read_clip(out / rec.file)
        inter = np.logical_and(clip.masks, masks).sum()
        assert inter / np.logical_or(clip.masks, masks).sum() > 0.9
    _no_participant_crosses_splits(out)


def test_an_animated_gif_imports_as_a_video_with_a_gif_mask(tmp_path: Path) -> None:
    videos, out = tmp_path / "videos", tmp_path / "out"
    videos.mkdir()
    frames, masks = moving_square(), square_masks()
    write_gif(videos / "loop.gif", frames, durations_ms=50)
    write_gif(videos / "loop_mask.gif", masks * 255)
    result = _cli("import", "video", "--videos", videos, "--out", out)
    assert result.returncode == 0, result.stderr
    (record,) = read_manifest(out)
    assert record.clip_id == "videos-loop" and record.n_frames == T and record.fps == pytest.approx(20.0)
    clip = read_clip(out / record.file)
    np.testing.assert_array_equal(clip.frames, frames)  # GIF is lossless for grey frames
    np.testing.assert_array_equal(clip.masks, masks)


def test_video_frame_count_mismatch(tmp_path: Path) -> None:
    videos, out = tmp_path / "videos", tmp_path / "out"
    videos.mkdir()
    write_video(videos / "a.mp4", moving_square(), "libx264")
    np.save(videos / "a_mask.npy", square_masks(n=T - 1))
    write_video(videos / "b.mp4", moving_square(), "libx264")
    write_video(videos / "c.mp4", moving_square(), "libx264")
    np.save(videos / "c_mask.npy", square_masks())
    result = _cli("import", "video", "--videos", videos, "--out", out)
    assert result.returncode == 2 and "6 frames but 5 mask frames" in result.stderr
    report = import_videos(videos, ImportOptions(out=out, skip_bad=True))
    assert [r.clip_id for r in report.written] == ["videos-c"]
    assert len(report.skipped) == 2  # a: mismatch, b: no mask


def test_video_all_bad_reports_nothing_imported(tmp_path: Path) -> None:
    videos = tmp_path / "v"
    videos.mkdir()
    write_video(videos / "b.mp4", moving_square(), "libx264")
    with pytest.raises(UserInputError, match="nothing was imported"):
        import_videos(videos, ImportOptions(out=tmp_path / "out", skip_bad=True))


def test_dicom_import_never_writes_identifiers(tmp_path: Path) -> None:
    dicoms, out = tmp_path / "exam", tmp_path / "out"
    (dicoms / "visit2").mkdir(parents=True)
    frames, masks = moving_square(), square_masks()
    write_dicom_cine(dicoms / "loop1.dcm", frames, patient_id="MRN-778899", name="Smith^Alice", laterality="R")
    write_dicom_cine(dicoms / "visit2" / "loop2.dcm", frames[::-1].copy(), patient_id="MRN-778899", name="Smith^Alice")
    write_dicom_cine(dicoms / "loop3.dcm", frames, patient_id="MRN-112233", name="Jones^Bob", region_cm=None)
    np.save(dicoms / "loop1_mask.npy", masks)
    _write_pngs(dicoms / "visit2" / "loop2_mask", {f"f{i}.png": m for i, m in enumerate(masks[::-1])})
    np.save(dicoms / "loop3_mask.npy", masks)
    result = _cli("import", "dicom", "--dicoms", dicoms, "--out", out, "--plane", "TW")
    assert result.returncode == 0, result.stderr
    text = (out / "manifest.csv").read_text()
    for secret in ("MRN", "778899", "112233", "Smith", "Alice", "Jones", "Bob", "loop", "visit"):
        assert secret not in text
        assert secret not in result.stdout
    records = read_manifest(out)
    assert len(records) == 3
    assert all(re.fullmatch(r"[0-9a-f]{12}", r.participant_id) for r in records)
    assert all(re.fullmatch(r"dicom-[0-9a-f]{12}", r.clip_id) for r in records)
    assert len({r.participant_id for r in records}) == 2
    by_spacing = sorted(records, key=lambda r: r.pixel_spacing_mm or 0.0)
    assert by_spacing[0].pixel_spacing_mm is None
    assert by_spacing[1].pixel_spacing_mm == pytest.approx(0.08)  # 0.008 cm
    assert {r.side for r in records} == {"R", ""}
    assert all(r.fps == pytest.approx(30.0) and r.source == "dicom" for r in records)
    for rec in records:
        clip = read_clip(out / rec.file)
        assert clip.masks.sum() == masks.sum()
    # a re-import reuses the stored salt: same ids, no duplicate rows
    assert _cli("import", "dicom", "--dicoms", dicoms, "--out", out).returncode == 0
    assert sorted(r.clip_id for r in read_manifest(out)) == sorted(r.clip_id for r in records)
    _no_participant_crosses_splits(out)
    # another salt would give the same patients new ids: refused, nothing added
    result = _cli("import", "dicom", "--dicoms", dicoms, "--out", out, "--salt", "other")
    assert result.returncode == 2 and "drop --salt" in result.stderr
    assert len(read_manifest(out)) == 3

    # a given --salt is not written down (only its fingerprint) and must be given again
    given = tmp_path / "given"
    assert _cli("import", "dicom", "--dicoms", dicoms, "--out", given, "--salt", "s3cret").returncode == 0
    assert "s3cret" not in (given / ".participant_salt").read_text()
    first_ids = sorted(r.clip_id for r in read_manifest(given))
    for args, message in (([], "give the same --salt again"), (["--salt", "other"], "--salt differs")):
        result = _cli("import", "dicom", "--dicoms", dicoms, "--out", given, *args)
        assert result.returncode == 2 and message in result.stderr, result.stderr
    assert _cli("import", "dicom", "--dicoms", dicoms, "--out", given, "--salt", "s3cret").returncode == 0
    assert sorted(r.clip_id for r in read_manifest(given)) == first_ids


def test_dicom_without_pixels_fails_fast_or_is_skipped(tmp_path: Path) -> None:
    import pydicom

    dicoms, out = tmp_path / "d", tmp_path / "out"
    dicoms.mkdir()
    write_dicom_cine(dicoms / "good.dcm", moving_square())
    np.save(dicoms / "good_mask.npy", square_masks())
    bad = write_dicom_cine(dicoms / "sr.dcm", moving_square())
    ds = pydicom.dcmread(bad)
    del ds.PixelData
    ds.save_as(bad)
    np.save(dicoms / "sr_mask.npy", square_masks())
    result = _cli("import", "dicom", "--dicoms", dicoms, "--out", out)
    assert result.returncode == 2 and "without pixel data" in result.stderr
    report = import_dicoms(dicoms, ImportOptions(out=out, skip_bad=True))
    assert len(report.written) == 1 and len(report.skipped) == 1


def test_dicom_import_reports_the_decoders_notes_and_the_mean_of_anisotropic_pixels(tmp_path: Path) -> None:
    dicoms, out = tmp_path / "d", tmp_path / "out"
    dicoms.mkdir()
    write_dicom_cine(dicoms / "wide.dcm", moving_square(), region_cm=(0.02, 0.01))  # 0.2 mm wide, 0.1 mm tall
    np.save(dicoms / "wide_mask.npy", square_masks())
    result = _cli("import", "dicom", "--dicoms", dicoms, "--out", out)
    assert result.returncode == 0, result.stderr
    (record,) = read_manifest(out)
    assert record.pixel_spacing_mm == pytest.approx(0.15)
    assert f"warning: {record.clip_id}: anisotropic pixels: 0.2 mm wide (x) by 0.1 mm tall (y)" in result.stderr
    assert f"warning: {record.clip_id}: the manifest keeps one spacing per clip, their mean 0.15 mm" in result.stderr
    # an explicit --pixel-spacing replaces the pair: no claim about a mean
    report = import_dicoms(dicoms, ImportOptions(out=tmp_path / "given", pixel_spacing_mm=0.1))
    assert [w for w in report.warnings if "their mean" in w] == []


def test_broken_mask_files_are_a_clear_error_and_skippable(tmp_path: Path) -> None:
    videos, out = tmp_path / "v", tmp_path / "out"
    videos.mkdir()
    for name in ("good", "cutnpz", "mixedtif"):
        write_video(videos / f"{name}.mp4", moving_square(), "libx264")
    np.save(videos / "good_mask.npy", square_masks())
    whole = io.BytesIO()
    np.savez(whole, masks=square_masks())
    (videos / "cutnpz_mask.npz").write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    pages = [Image.fromarray(np.zeros((H, W), np.uint8)), Image.fromarray(np.zeros((H // 2, W // 2), np.uint8))]
    pages[0].save(videos / "mixedtif_mask.tif", save_all=True, append_images=pages[1:])
    result = _cli("import", "video", "--videos", videos, "--out", out)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "unreadable mask array" in result.stderr or "pages differ in size" in result.stderr
    result = _cli("import", "video", "--videos", videos, "--out", out, "--skip-bad")
    assert result.returncode == 0, result.stderr
    assert [r.clip_id for r in read_manifest(out)] == ["v-good"]
    assert "cutnpz_mask.npz: unreadable mask array" in result.stderr
    assert "mixedtif_mask.tif: mask TIFF pages differ in size" in result.stderr


def test_jpeg_masks_are_thresholded_not_inflated_by_ringing(tmp_path: Path) -> None:
    yy, xx = np.mgrid[0:H, 0:W]
    disc = ((yy - 24) ** 2 + (xx - 32) ** 2 < 15**2).astype(np.uint8)
    masks = tmp_path / "m"
    masks.mkdir()
    Image.fromarray(disc * 255).save(masks / "white.jpg", quality=90)
    Image.fromarray(disc * 200).save(masks / "grey.jpg", quality=90)
    assert np.count_nonzero(np.asarray(Image.open(masks / "white.jpg")) != 0) > 1.1 * disc.sum()  # the ringing
    for name, value in (("white.jpg", None), ("grey.jpg", 200)):
        got = load_mask_stack(masks / name, value, DEFAULT_LIMITS)[0]
        assert abs(int(got.sum()) - int(disc.sum())) <= 0.03 * disc.sum(), name
        assert np.logical_and(got, disc).sum() / np.logical_or(got, disc).sum() > 0.95, name


def test_dicom_files_named_by_uid_or_without_dcm_are_found(tmp_path: Path) -> None:
    dicoms, out = tmp_path / "d", tmp_path / "out"
    dicoms.mkdir()
    for name, mask in (
        ("1.2.840.113619.2.55.3.4.1", "1.2.840.113619.2.55.3.4.1"),
        ("IM0001", "IM0001"),
        ("IMG0002.IMA", "IMG0002"),
        ("loop.dcm", "loop"),
    ):
        write_dicom_cine(dicoms / name, moving_square(), patient_id=f"P-{name}")
        np.save(dicoms / f"{mask}_mask.npy", square_masks())
    (dicoms / "notes.txt").write_text("exam notes")
    report = import_dicoms(dicoms, ImportOptions(out=out))
    assert len(report.written) == 4 and report.skipped == []
