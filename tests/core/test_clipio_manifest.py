"""Clip files and the manifest: round trips, determinism, validation."""

import hashlib
from pathlib import Path

import numpy as np
import pytest

from ultramn.data.clipio import ClipArrays, ClipFileError, check_clip_files, read_clip, write_clip
from ultramn.data.manifest import ClipRecord, ManifestError, merge_records, read_manifest, write_manifest
from ultramn.errors import UserInputError


def _clip(seed: int) -> ClipArrays:
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, size=(5, 16, 20), dtype=np.uint8)
    masks = (rng.random((5, 16, 20)) > 0.8).astype(np.uint8)
    return ClipArrays(frames, masks)


def _record(clip_id: str, **kw: object) -> ClipRecord:
    base: dict[str, object] = dict(
        clip_id=clip_id,
        participant_id="p1",
        side="L",
        plane="TW",
        quality="good",
        pixel_spacing_mm=0.1,
        fps=25.0,
        n_frames=5,
        height=16,
        width=20,
        split="train",
        source="synthetic",
        file=f"clips/{clip_id}.npz",
    )
    base.update(kw)
    return ClipRecord(**base)  # type: ignore[arg-type]


def test_clip_roundtrip_and_bytes_are_deterministic(tmp_path: Path) -> None:
    clip = _clip(1)
    write_clip(tmp_path / "a.npz", clip)
    write_clip(tmp_path / "b.npz", clip)
    back = read_clip(tmp_path / "a.npz")
    np.testing.assert_array_equal(back.frames, clip.frames)
    np.testing.assert_array_equal(back.masks, clip.masks)
    digest = [hashlib.sha256((tmp_path / n).read_bytes()).hexdigest() for n in ("a.npz", "b.npz")]
    assert digest[0] == digest[1]
    write_clip(tmp_path / "c.npz", _clip(2))
    assert hashlib.sha256((tmp_path / "c.npz").read_bytes()).hexdigest() != digest[0]


def test_clip_arrays_validate_shapes() -> None:
    with pytest.raises(ValueError, match="masks"):
        ClipArrays(np.zeros((2, 4, 4), np.uint8), np.zeros((2, 4, 5), np.uint8))
    with pytest.raises(ValueError, match="frames"):
        ClipArrays(np.zeros((2, 4, 4), np.float32), np.zeros((2, 4, 4), np.uint8))  # type: ignore[arg-type]


def test_manifest_roundtrip(tmp_path: Path) -> None:
    recs = [_record("a"), _record("b", side="", plane="", quality="", pixel_spacing_mm=None, fps=None, split="")]
    write_manifest(tmp_path, recs)
    assert read_manifest(tmp_path) == recs
    header = (tmp_path / "manifest.csv").read_text().splitlines()[0].split(",")
    for col in ("clip_id", "participant_id", "side", "plane", "quality", "pixel_spacing_mm", "fps", "n_frames", "split", "source", "file"):
        assert col in header


@pytest.mark.parametrize(("field", "value"), [("plane", "XX"), ("side", "left"), ("quality", "great"), ("split", "dev"), ("n_frames", 0)])
def test_manifest_rejects_invalid_values(field: str, value: object) -> None:
    with pytest.raises(ManifestError):
        _record("a", **{field: value})


def test_manifest_rejects_duplicate_ids_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="unique"):
        write_manifest(tmp_path, [_record("a"), _record("a")])
    with pytest.raises(ManifestError, match="no manifest"):
        read_manifest(tmp_path / "nowhere")


def test_manifest_reader_refuses_repeated_and_unsafe_ids(tmp_path: Path) -> None:
    write_manifest(tmp_path, [_record("a"), _record("b")])
    path = tmp_path / "manifest.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines, lines[1]]) + "\n")  # clip "a" again on line 4
    with pytest.raises(ManifestError, match=r"manifest\.csv:4: clip_id 'a' repeats line 2"):
        read_manifest(tmp_path)
    with pytest.raises(ManifestError, match="may only hold"):
        _record("../escape")


def test_manifest_reader_refuses_binary_text_and_short_rows(tmp_path: Path) -> None:
    """Each gave a traceback (UnicodeDecodeError, AttributeError on None) instead of a ManifestError."""
    path = tmp_path / "manifest.csv"
    path.write_bytes(b"clip_id,\x91\xfe\x00garbage")
    with pytest.raises(ManifestError, match=r"manifest\.csv: not a UTF-8 CSV"):
        read_manifest(tmp_path)
    write_manifest(tmp_path, [_record("a")])
    header = path.read_text().splitlines()[0]
    path.write_text(f"{header}\nb,p2,L\n")  # a row cut short (a hand edit, a truncated copy)
    with pytest.raises(ManifestError, match=r"manifest\.csv:2: the row has no cells for plane, quality, .*file"):
        read_manifest(tmp_path)


def test_unusable_clip_files_are_named(tmp_path: Path) -> None:
    good = tmp_path / "good.npz"
    write_clip(good, _clip(0))
    (tmp_path / "text.npz").write_text("not a zip")
    np.savez(tmp_path / "other.npz", images=np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(ClipFileError, match=r"missing\.npz: clip file listed in the manifest is missing"):
        read_clip(tmp_path / "missing.npz")
    with pytest.raises(ClipFileError, match=r"text\.npz: unreadable clip file"):
        read_clip(tmp_path / "text.npz")
    with pytest.raises(ClipFileError, match=r"other\.npz: not a clip file"):
        read_clip(tmp_path / "other.npz")
    check_clip_files([good])  # a good file passes
    with pytest.raises(ClipFileError, match="3 clip file") as bad:
        check_clip_files([good, tmp_path / "missing.npz", tmp_path / "text.npz", tmp_path / "other.npz"])
    message = str(bad.value)
    assert "missing.npz (missing)" in message and "text.npz (not a clip NPZ" in message and "other.npz (no 'frames'" in message
    assert isinstance(bad.value, UserInputError)  # the CLI prints it and exits 2


def test_merge_replaces_same_clip_id() -> None:
    merged = merge_records([_record("a"), _record("b")], [_record("b", plane="LF"), _record("c")])
    assert [r.clip_id for r in merged] == ["a", "b", "c"]
    assert merged[1].plane == "LF"
