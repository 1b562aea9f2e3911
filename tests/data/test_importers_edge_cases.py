"""Importers on awkward real inputs: failed and interrupted imports, duplicate stems, 16-bit
frame sequences, salts of failed imports, option spellings."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.data.test_decoders import H, T, W, moving_square, square_masks, write_dicom_cine, write_video
from ultramn.data.clipio import read_clip
from ultramn.data.decoders import decode
from ultramn.data.importers.common import ImportedClip, ImportOptions, write_import
from ultramn.data.importers.dicom import dataset_salt, import_dicoms
from ultramn.data.importers.images import import_images
from ultramn.data.importers.video import import_videos
from ultramn.data.manifest import read_manifest
from ultramn.errors import UserInputError


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ultramn", *map(str, args)], capture_output=True, text=True, timeout=120)


def _clip_files(out: Path) -> list[str]:
    """Every file and folder under ``OUT/clips`` (hidden staging folders included)."""
    return sorted(str(p.relative_to(out)) for p in (out / "clips").rglob("*")) if (out / "clips").is_dir() else []


def _consistent(out: Path) -> None:
    """Every manifest row matches its clip file, and nothing else lies in clips/."""
    records = read_manifest(out)
    for rec in records:
        clip = read_clip(out / rec.file)
        assert clip.frames.shape == (rec.n_frames, rec.height, rec.width), rec.clip_id
    assert _clip_files(out) == sorted(rec.file for rec in records)


def test_a_failed_reimport_leaves_the_dataset_as_it_was(tmp_path: Path) -> None:
    videos, out = tmp_path / "videos", tmp_path / "out"
    videos.mkdir()
    for name in ("a", "b"):
        write_video(videos / f"{name}.mp4", moving_square(n=6), "libx264")
        np.save(videos / f"{name}_mask.npy", square_masks(n=6))
    assert _cli("import", "video", "--videos", videos, "--out", out).returncode == 0
    before = (out / "manifest.csv").read_text()
    old_a = read_clip(out / "clips" / "videos-a.npz")
    # a longer a.mp4 is exported again, and b's mask no longer fits: the import stops at b
    write_video(videos / "a.mp4", moving_square(n=8), "libx264")
    np.save(videos / "a_mask.npy", square_masks(n=8))
    np.save(videos / "b_mask.npy", square_masks(n=5))
    write_video(videos / "c.mp4", moving_square(n=6), "libx264")
    np.save(videos / "c_mask.npy", square_masks(n=6))
    result = _cli("import", "video", "--videos", videos, "--out", out)
    assert result.returncode == 2 and "6 frames but 5 mask frames" in result.stderr
    assert (out / "manifest.csv").read_text() == before
    np.testing.assert_array_equal(read_clip(out / "clips" / "videos-a.npz").frames, old_a.frames)
    _consistent(out)  # no 8-frame file under a 6-frame row, no orphan c, no staging left
    # the fixed input imports, and then the new a is in place
    np.save(videos / "b_mask.npy", square_masks(n=6))
    assert _cli("import", "video", "--videos", videos, "--out", out).returncode == 0
    assert {r.clip_id: r.n_frames for r in read_manifest(out)} == {"videos-a": 8, "videos-b": 6, "videos-c": 6}
    _consistent(out)


def test_a_first_import_that_fails_writes_no_clip_files(tmp_path: Path) -> None:
    videos, out = tmp_path / "v", tmp_path / "out"
    videos.mkdir()
    write_video(videos / "a.mp4", moving_square(), "libx264")
    np.save(videos / "a_mask.npy", square_masks())
    write_video(videos / "b.mp4", moving_square(), "libx264")  # no mask
    result = _cli("import", "video", "--videos", videos, "--out", out)
    assert result.returncode == 2 and "no mask found" in result.stderr
    assert not (out / "manifest.csv").exists()
    assert not out.exists()  # not even an empty clips/ folder


def test_an_interrupted_import_leaves_the_dataset_as_it_was(tmp_path: Path) -> None:
    videos, out = tmp_path / "v", tmp_path / "out"
    videos.mkdir()
    write_video(videos / "a.mp4", moving_square(), "libx264")
    np.save(videos / "a_mask.npy", square_masks())
    import_videos(videos, ImportOptions(out=out))
    before = (out / "manifest.csv").read_text()

    def clips_then_ctrl_c() -> Iterator[ImportedClip]:
        yield ImportedClip("v-a", "v-a", moving_square(n=3), square_masks(n=3))  # replaces a's file ...
        yield ImportedClip("v-new", "v-new", moving_square(), square_masks())
        raise KeyboardInterrupt  # ... but the user stops the import before it ends

    with pytest.raises(KeyboardInterrupt):
        write_import(clips_then_ctrl_c(), ImportOptions(out=out), source="video:v")
    assert (out / "manifest.csv").read_text() == before
    _consistent(out)


def test_a_failed_dicom_import_does_not_tie_the_dataset_to_a_salt(tmp_path: Path) -> None:
    dicoms, out = tmp_path / "exam", tmp_path / "out"
    dicoms.mkdir()
    write_dicom_cine(dicoms / "loop.dcm", moving_square(), patient_id="MRN-1")
    result = _cli("import", "dicom", "--dicoms", dicoms, "--out", out)  # the mask is missing
    assert result.returncode == 2 and "no mask found" in result.stderr
    assert not (out / ".participant_salt").exists()
    # the user adds the mask and now pools with another dataset's salt: nothing was imported, so it is accepted
    np.save(dicoms / "loop_mask.npy", square_masks())
    result = _cli("import", "dicom", "--dicoms", dicoms, "--out", out, "--salt", "pooled")
    assert result.returncode == 0, result.stderr
    (record,) = read_manifest(out)
    pooled = import_dicoms(dicoms, ImportOptions(out=tmp_path / "other"), salt="pooled")
    assert [r.participant_id for r in pooled.written] == [record.participant_id]  # the same pseudonym in both datasets
    assert "pooled" not in (out / ".participant_salt").read_text()
    # the stored fingerprint binds later imports
    assert _cli("import", "dicom", "--dicoms", dicoms, "--out", out).returncode == 2


def test_16_bit_frames_of_one_clip_are_scaled_together_as_in_a_zip_upload(tmp_path: Path) -> None:
    images, masks, out = tmp_path / "frames", tmp_path / "masks", tmp_path / "out"
    images.mkdir()
    masks.mkdir()
    ramp = np.tile(np.linspace(0.0, 1.0, W), (H, 1))
    for i, top in enumerate((4000, 2000, 200), start=1):  # a 16-bit cine fading to dark
        Image.fromarray((ramp * top).astype(np.uint16)).save(images / f"c1_f{i}.png")
        Image.fromarray(square_masks(n=1)[0]).save(masks / f"c1_f{i}.png")
    assert Image.open(images / "c1_f1.png").mode == "I;16"
    with zipfile.ZipFile(tmp_path / "c1.zip", "w") as zf:  # the same frames uploaded to the gateway
        for path in sorted(images.iterdir()):
            zf.write(path, path.name)
    gateway = decode(tmp_path / "c1.zip").frames
    import_images(images, masks, ImportOptions(out=out), dataset="cine", clip_pattern=r"^(c\d+)_")
    frames = read_clip(out / "clips" / "cine-c1.npz").frames
    np.testing.assert_array_equal(frames, gateway)
    assert [int(f.max()) for f in frames] == [255, 128, 13]  # the fade survives


def test_images_that_differ_only_in_extension_are_refused_not_merged(tmp_path: Path) -> None:
    images, masks, out = tmp_path / "scans", tmp_path / "masks", tmp_path / "out"
    images.mkdir()
    masks.mkdir()
    frames = moving_square(n=2)
    Image.fromarray(frames[0]).save(images / "a.png")
    Image.fromarray(frames[1]).save(images / "a.jpg")  # another image, not a second frame of a
    Image.fromarray(frames[0]).save(images / "b.png")
    for name in ("a", "b"):
        Image.fromarray(square_masks(n=1)[0] * 255).save(masks / f"{name}.png")
    result = _cli("import", "images", "--images", images, "--masks", masks, "--out", out)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "a.jpg and a.png share a name" in result.stderr, result.stderr
    assert not out.exists()
    # two masks for one image: which one is meant is not for the importer to guess
    (images / "a.jpg").unlink()
    Image.fromarray(np.zeros((H, W), np.uint8)).save(masks / "a.bmp")
    result = _cli("import", "images", "--images", images, "--masks", masks, "--out", out)
    assert result.returncode == 2 and "a.bmp and a.png share a name (the mask of a.png)" in result.stderr, result.stderr
    (masks / "a.bmp").unlink()
    assert _cli("import", "images", "--images", images, "--masks", masks, "--out", out).returncode == 0
    assert {r.clip_id: r.n_frames for r in read_manifest(out)} == {"scans-a": 1, "scans-b": 1}


def test_the_mask_suffix_option_has_one_spelling_that_works_everywhere(tmp_path: Path) -> None:
    videos, images = tmp_path / "videos", tmp_path / "stills"
    videos.mkdir()
    images.mkdir()
    write_video(videos / "a.mp4", moving_square(), "libx264")
    np.save(videos / "a_seg.npy", square_masks())
    Image.fromarray(moving_square(n=1)[0]).save(images / "b.png")
    Image.fromarray(square_masks(n=1)[0]).save(images / "b_seg.png")
    for spelling in ("--mask-suffix", "--masks-suffix"):
        video = _cli("import", "video", "--videos", videos, "--out", tmp_path / f"v{spelling}", spelling, "_seg")
        assert video.returncode == 0, video.stderr
        image = _cli("import", "images", "--images", images, "--masks", images, "--out", tmp_path / f"i{spelling}", spelling, "_seg")
        assert image.returncode == 0, image.stderr
        assert [r.clip_id for r in read_manifest(tmp_path / f"v{spelling}")] == ["videos-a"]
        assert [r.clip_id for r in read_manifest(tmp_path / f"i{spelling}")] == ["stills-b"]


def test_bad_ratios_or_an_out_file_stop_the_import_before_any_input_is_read(tmp_path: Path) -> None:
    videos = tmp_path / "v"
    videos.mkdir()
    write_video(videos / "a.mp4", moving_square(), "libx264")  # no mask: the first input error, if inputs were read
    result = _cli("import", "video", "--videos", videos, "--out", tmp_path / "out", "--ratios", "0.5", "0.5", "0.5")
    assert result.returncode == 2 and "--ratios: ratios must sum to 1" in result.stderr, result.stderr
    (tmp_path / "file").write_text("not a folder")
    result = _cli("import", "video", "--videos", videos, "--out", tmp_path / "file")
    assert result.returncode == 2 and "is a file, not a dataset folder" in result.stderr, result.stderr


def test_a_file_given_for_a_folder_is_named_as_a_file(tmp_path: Path) -> None:
    """An input folder that is a file was "no such folder"; --out under a file was "[Errno 20] Not a directory"."""
    videos = tmp_path / "v"
    videos.mkdir()
    write_video(videos / "a.mp4", moving_square(), "libx264")
    np.save(videos / "a_mask.npy", square_masks())
    result = _cli("import", "video", "--videos", videos / "a.mp4", "--out", tmp_path / "out")
    assert result.returncode == 2 and f"--videos: {videos / 'a.mp4'} is a file, not a folder" in result.stderr, result.stderr
    result = _cli("import", "video", "--videos", videos, "--masks", videos / "a_mask.npy", "--out", tmp_path / "out")
    assert result.returncode == 2 and f"--masks: {videos / 'a_mask.npy'} is a file, not a folder" in result.stderr, result.stderr
    under = videos / "a.mp4" / "dataset"
    result = _cli("import", "video", "--videos", videos, "--out", under)
    assert result.returncode == 2 and f"--out {under}: {videos / 'a.mp4'} is a file, not a folder" in result.stderr, result.stderr
    assert "Errno" not in result.stderr and not (tmp_path / "out").exists()


def test_a_dicom_exported_twice_is_named_as_a_duplicate_and_skippable(tmp_path: Path) -> None:
    dicoms, out = tmp_path / "exam", tmp_path / "out"
    (dicoms / "again").mkdir(parents=True)
    for folder in (dicoms, dicoms / "again"):
        write_dicom_cine(folder / "other.dcm", moving_square(), patient_id=f"P-{folder.name}")
        np.save(folder / "other_mask.npy", square_masks())
    write_dicom_cine(dicoms / "loop.dcm", moving_square(), patient_id="P-1")
    np.save(dicoms / "loop_mask.npy", square_masks())
    (dicoms / "again" / "loop.dcm").write_bytes((dicoms / "loop.dcm").read_bytes())
    np.save(dicoms / "again" / "loop_mask.npy", square_masks())
    result = _cli("import", "dicom", "--dicoms", dicoms, "--out", out)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "error: loop.dcm: the same file as again/loop.dcm (identical bytes)" in result.stderr, result.stderr
    assert "--clip-pattern" not in result.stderr  # the DICOM importer has no such option
    result = _cli("import", "dicom", "--dicoms", dicoms, "--out", out, "--skip-bad")
    assert result.returncode == 0, result.stderr
    assert re.search(r"skipped: .*loop\.dcm: the same file as again/loop\.dcm", result.stderr), result.stderr
    assert len(read_manifest(out)) == 3


def test_inputs_whose_ids_coincide_are_named(tmp_path: Path) -> None:
    videos, out = tmp_path / "v", tmp_path / "out"
    videos.mkdir()
    for name in ("my clip", "my_clip"):  # the space becomes '_' in the id
        write_video(videos / f"{name}.mp4", moving_square(), "libx264")
        np.save(videos / f"{name}_mask.npy", square_masks())
    result = _cli("import", "video", "--videos", videos, "--out", out)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "my clip.mp4 and my_clip.mp4 give the same clip id 'v-my_clip'" in result.stderr, result.stderr
    assert "--clip-pattern" not in result.stderr and not out.exists()


def test_a_colour_mask_tiff_with_alpha_reads_like_a_colour_mask_png(tmp_path: Path) -> None:
    videos, out = tmp_path / "v", tmp_path / "out"
    videos.mkdir()
    masks = square_masks()
    opaque = np.full((H, W), 255, np.uint8)
    for name, mode in (("rgba", "RGBA"), ("la", "LA")):
        write_video(videos / f"{name}.mp4", moving_square(), "libx264")
        pages = [Image.fromarray(np.dstack([m * 255, np.zeros_like(m), np.zeros_like(m), opaque])).convert(mode) for m in masks]
        pages[0].save(videos / f"{name}_mask.tif", save_all=True, append_images=pages[1:])  # red (or white) on black, opaque
        assert Image.open(videos / f"{name}_mask.tif").mode == mode
    import_videos(videos, ImportOptions(out=out))
    for name in ("rgba", "la"):
        np.testing.assert_array_equal(read_clip(out / "clips" / f"v-{name}.npz").masks, masks)  # not every pixel: alpha is no label


def test_transparent_mask_pixels_are_background_whatever_colour_they_keep(tmp_path: Path) -> None:
    images, masks, out = tmp_path / "scans", tmp_path / "masks", tmp_path / "out"
    images.mkdir()
    masks.mkdir()
    nerve = square_masks(n=1)[0].astype(bool)
    Image.fromarray(moving_square(n=1)[0]).save(images / "a.png")
    # red nerve on a transparent background that stores white, as image editors often write it
    white = np.full((H, W), 255, np.uint8)
    rgba = np.dstack([white, np.where(nerve, 0, 255), np.where(nerve, 0, 255), np.where(nerve, 255, 0)]).astype(np.uint8)
    Image.fromarray(rgba).save(masks / "a.png")
    assert Image.open(masks / "a.png").mode == "RGBA"
    import_images(images, masks, ImportOptions(out=out))
    np.testing.assert_array_equal(read_clip(out / "clips" / "scans-a.npz").masks[0], nerve)


def test_a_mask_tiff_is_read_upright_per_its_orientation_tag_as_tiff_frames_are(tmp_path: Path) -> None:
    dicoms, out = tmp_path / "d", tmp_path / "out"
    dicoms.mkdir()
    masks = square_masks()
    write_dicom_cine(dicoms / "loop.dcm", moving_square())
    # the pages are stored turned a quarter, with Orientation 6 (rotate 90 degrees clockwise to show)
    pages = [Image.fromarray(np.rot90(m, 1) * 255) for m in masks]
    pages[0].save(dicoms / "loop_mask.tif", save_all=True, append_images=pages[1:], tiffinfo={274: 6})
    assert decode(dicoms / "loop_mask.tif").frames.shape == masks.shape  # how the decoder shows it
    (record,) = import_dicoms(dicoms, ImportOptions(out=out)).written
    np.testing.assert_array_equal(read_clip(out / record.file).masks, masks)


def test_a_tiff_still_and_its_tiff_mask_with_an_orientation_tag_stay_aligned(tmp_path: Path) -> None:
    images, masks, out = tmp_path / "scans", tmp_path / "masks", tmp_path / "out"
    images.mkdir()
    masks.mkdir()
    frame, nerve = moving_square(n=1)[0], square_masks(n=1)[0]
    Image.fromarray(np.rot90(frame, 1).copy()).save(images / "a.tif", tiffinfo={274: 6})
    Image.fromarray(np.rot90(nerve, 1) * 255).save(masks / "a.tif", tiffinfo={274: 6})
    import_images(images, masks, ImportOptions(out=out))
    clip = read_clip(out / "clips" / "scans-a.npz")
    np.testing.assert_array_equal(clip.frames[0], frame)
    np.testing.assert_array_equal(clip.masks[0], nerve)


def test_imports_into_one_dataset_at_once_keep_each_others_rows(tmp_path: Path) -> None:
    stills, out = tmp_path / "stills", tmp_path / "out"
    stills.mkdir()
    for name in ("s1", "s2"):
        Image.fromarray(moving_square(n=1)[0]).save(stills / f"{name}.png")
        Image.fromarray(square_masks(n=1)[0]).save(stills / f"{name}_mask.png")

    def video_clips_while_stills_are_imported() -> Iterator[ImportedClip]:
        yield ImportedClip("v-a", "v-a", moving_square(), square_masks())
        # a second import (another terminal, a script's `&`) starts and ends meanwhile
        import_images(stills, stills, ImportOptions(out=out), mask_suffix="_mask")
        assert len(read_manifest(out)) == 2
        yield ImportedClip("v-b", "v-b", moving_square(), square_masks())

    write_import(video_clips_while_stills_are_imported(), ImportOptions(out=out), source="video:v")
    assert sorted(r.clip_id for r in read_manifest(out)) == ["stills-s1", "stills-s2", "v-a", "v-b"]
    _consistent(out)


def test_two_first_dicom_imports_at_once_do_not_replace_each_others_salt(tmp_path: Path) -> None:
    out = tmp_path / "out"
    first, second = dataset_salt(out, None), dataset_salt(out, None)  # both began before either stored
    assert first.value != second.value
    first.store(out)
    with pytest.raises(UserInputError, match="another DICOM import"):
        second.store(out)
    assert (out / ".participant_salt").read_text().strip() == first.value
    # one given salt, twice at once: the same fingerprint, no conflict
    given = tmp_path / "given"
    dataset_salt(given, "s3cret").store(given)
    dataset_salt(tmp_path / "none", "s3cret").store(given)


def test_a_dcm_file_that_is_no_dicom_is_named_for_what_it_is(tmp_path: Path) -> None:
    dicoms, out = tmp_path / "d", tmp_path / "out"
    dicoms.mkdir()
    write_dicom_cine(dicoms / "good.dcm", moving_square())
    Image.fromarray(moving_square(n=1)[0]).save(dicoms / "screenshot.dcm", format="PNG")
    (dicoms / "notes.dcm").write_text("exam notes, not an image " * 20)
    (dicoms / "cut.dcm").write_bytes(b"")
    for name in ("good", "screenshot", "notes", "cut"):
        np.save(dicoms / f"{name}_mask.npy", square_masks())
    result = _cli("import", "dicom", "--dicoms", dicoms, "--out", out, "--skip-bad")
    assert result.returncode == 0, result.stderr
    assert "screenshot.dcm: not a DICOM file, the content is PNG" in result.stderr
    assert "notes.dcm: not a DICOM file (unrecognised content)" in result.stderr
    assert "cut.dcm: empty file" in result.stderr
    assert "without pixel data" not in result.stderr  # what they were called: DICOM reports
    assert len(read_manifest(out)) == 1


def test_a_mask_array_whose_header_declares_terabytes_is_a_clear_error(tmp_path: Path) -> None:
    videos, out = tmp_path / "v", tmp_path / "out"
    videos.mkdir()
    write_video(videos / "a.mp4", moving_square(), "libx264")
    header = io.BytesIO()  # a damaged header: 100000 frames of 4096 x 4096, then a few bytes
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": (100000, 4096, 4096)})
    (videos / "a_mask.npy").write_bytes(header.getvalue() + bytes(1000))
    result = _cli("import", "video", "--videos", videos, "--out", out)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "a_mask.npy: mask array of shape (100000, 4096, 4096): 100000 frames exceed the limit" in result.stderr
    (videos / "a_mask.npy").unlink()  # the same in an NPZ
    with zipfile.ZipFile(videos / "a_mask.npz", "w") as zf:
        zf.writestr("masks.npy", header.getvalue() + bytes(1000))
    result = _cli("import", "video", "--videos", videos, "--out", out)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "a_mask.npz: mask array of shape (100000, 4096, 4096)" in result.stderr


def test_a_mask_image_past_pillows_bomb_limit_is_a_clear_error(tmp_path: Path) -> None:
    images, masks, videos = tmp_path / "scans", tmp_path / "masks", tmp_path / "v"
    for folder in (images, masks, videos):
        folder.mkdir()
    huge = Image.new("L", (15000, 12000))  # 180 Mpx of zeros: a few hundred kB compressed
    Image.fromarray(moving_square(n=1)[0]).save(images / "a.png")
    huge.save(masks / "a.png")
    write_video(videos / "b.mp4", moving_square(), "libx264")
    huge.save(videos / "b_mask.tif", compression="tiff_adobe_deflate")
    for args in (("images", "--images", images, "--masks", masks), ("video", "--videos", videos)):
        result = _cli("import", *args, "--out", tmp_path / "out")
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert "could be decompression bomb" in result.stderr


def test_a_single_frame_dicom_or_video_is_a_still_without_fps(tmp_path: Path) -> None:
    dicoms, videos = tmp_path / "d", tmp_path / "v"
    dicoms.mkdir()
    videos.mkdir()
    write_dicom_cine(dicoms / "still.dcm", moving_square(n=1), cine_rate=30.0)  # a header rate on one frame
    write_dicom_cine(dicoms / "loop.dcm", moving_square(), cine_rate=30.0)
    for name, n in (("still", 1), ("loop", T)):
        np.save(dicoms / f"{name}_mask.npy", square_masks(n=n))
    write_video(videos / "one.mp4", moving_square(n=1), "libx264", fps=25)
    np.save(videos / "one_mask.npy", square_masks(n=1))
    import_dicoms(dicoms, ImportOptions(out=tmp_path / "out"))
    import_videos(videos, ImportOptions(out=tmp_path / "out"))
    fps = {r.n_frames: r.fps for r in read_manifest(tmp_path / "out")}
    assert fps == {1: None, T: pytest.approx(30.0)}


def test_pixel_spacing_given_on_the_command_line_silences_the_files_spacing_warnings(tmp_path: Path) -> None:
    dicoms = tmp_path / "exam"
    dicoms.mkdir()
    write_dicom_cine(dicoms / "loop.dcm", moving_square(), region_cm=None)  # no spacing in the header
    np.save(dicoms / "loop_mask.npy", square_masks())
    decoded = decode(dicoms / "loop.dcm")
    assert decoded.spacing_warnings == ("no pixel spacing in the header",) and decoded.spacing_warnings[0] in decoded.warnings
    assert "no pixel spacing" not in " ".join(decoded.warnings_given_spacing(True))
    bare = _cli("import", "dicom", "--dicoms", dicoms, "--out", tmp_path / "a")
    assert bare.returncode == 0 and "no pixel spacing in the header" in bare.stdout + bare.stderr
    given = _cli("import", "dicom", "--dicoms", dicoms, "--out", tmp_path / "b", "--pixel-spacing", "0.1")
    assert given.returncode == 0, given.stderr
    assert "pixel spacing" not in given.stdout + given.stderr  # it was: "no pixel spacing in the header", though 0.1 was given
    (record,) = read_manifest(tmp_path / "b")
    assert record.pixel_spacing_mm == pytest.approx(0.1)


def test_a_mask_value_no_mask_holds_gets_a_hint(tmp_path: Path) -> None:
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    Image.fromarray(moving_square()[0]).save(images / "a.png")
    Image.fromarray(square_masks()[0] * 255).save(masks / "a.png")  # 0/255 masks
    wrong = _cli("import", "images", "--images", images, "--masks", masks, "--out", tmp_path / "a", "--mask-value", "1")
    assert wrong.returncode == 0, wrong.stderr
    assert "hint: no mask holds the label 1 (--mask-value)" in wrong.stderr
    right = _cli("import", "images", "--images", images, "--masks", masks, "--out", tmp_path / "b", "--mask-value", "255")
    assert right.returncode == 0 and "hint:" not in right.stderr and "no nerve pixels" not in right.stderr


def test_fps_given_on_the_command_line_reaches_the_manifest(tmp_path: Path) -> None:
    images, masks, videos = tmp_path / "frames", tmp_path / "masks", tmp_path / "videos"
    for folder in (images, masks, videos):
        folder.mkdir()
    for i, (frame, mask) in enumerate(zip(moving_square(), square_masks(), strict=True)):  # an image sequence: no rate of its own
        Image.fromarray(frame).save(images / f"seq_f{i}.png")
        Image.fromarray(mask).save(masks / f"seq_f{i}.png")
    Image.fromarray(moving_square()[0]).save(images / "still.png")
    Image.fromarray(square_masks()[0]).save(masks / "still.png")
    assert _cli("import", "images", "--images", images, "--masks", masks, "--out", tmp_path / "a", "--fps", "0").returncode == 2
    pattern = r"^(\w+?)(_f\d+)?\."
    sequence = ("import", "images", "--images", images, "--masks", masks, "--out", tmp_path / "a", "--clip-pattern", pattern)
    done = _cli(*sequence, "--fps", "12.5")
    assert done.returncode == 0, done.stderr
    rates = {r.clip_id.split("-", 1)[1]: r.fps for r in read_manifest(tmp_path / "a")}
    assert rates == {"seq": 12.5, "still": None}  # a still keeps no rate
    write_video(videos / "loop.mp4", moving_square(), "libx264", fps=25)
    np.save(videos / "loop_mask.npy", square_masks())
    assert _cli("import", "video", "--videos", videos, "--out", tmp_path / "v", "--fps", "30").returncode == 0
    (record,) = read_manifest(tmp_path / "v")
    assert record.fps == pytest.approx(30.0)  # over the file's 25


def test_names_in_other_scripts_give_distinct_readable_ids(tmp_path: Path) -> None:
    videos, out = tmp_path / "v", tmp_path / "out"
    videos.mkdir()
    for name in ("Müller", "患者", "病人"):  # all became '_' once: two clips with one id, the import refused
        write_video(videos / f"{name}.mp4", moving_square(), "libx264")
        np.save(videos / f"{name}_mask.npy", square_masks())
    result = _cli("import", "video", "--videos", videos, "--out", out)
    assert result.returncode == 0, result.stderr
    records = read_manifest(out)
    ids = sorted(r.clip_id for r in records)
    assert len(set(ids)) == 3 and "v-Muller" in ids, ids
    assert all(re.fullmatch(r"v-[0-9a-f]{8}", i) for i in ids if i != "v-Muller"), ids
    assert len({r.participant_id for r in records}) == 3  # three people, not one merged
    _consistent(out)
    # the same names give the same ids again: a re-import replaces its rows instead of adding
    assert _cli("import", "video", "--videos", videos, "--out", out).returncode == 0
    assert sorted(r.clip_id for r in read_manifest(out)) == ids
