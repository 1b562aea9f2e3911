"""Builders of real archives for the batch tests: good clip sets and malicious archives."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from tests.data.test_decoders import write_dicom_cine, write_video

N_FRAMES, HEIGHT, WIDTH = 12, 96, 128
#: The corrupt clip's name in every clip set.
CORRUPT = "exam2/broken.mp4"


def synth_frames(seed: int, n_frames: int = N_FRAMES, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """Frames of the project's synthetic generator (``uint8 [N,H,W]``)."""
    from ultramn.data.synth import ClipSpec, SynthConfig, generate_clip

    cfg = SynthConfig(height=height, width=width, frames=n_frames, seed=seed)
    return generate_clip(ClipSpec(cfg, 0, "TW", "R")).arrays.frames


@dataclass(frozen=True)
class ClipSet:
    """``archive`` (ZIP) holding ``clips`` (name -> frames or None for the corrupt one) and ``notes.txt``."""

    archive: Path
    tar: Path
    clips: dict[str, np.ndarray | None]

    @property
    def good(self) -> list[str]:
        return [name for name, frames in self.clips.items() if frames is not None]


def make_clip_set(root: Path) -> ClipSet:
    """Write the clips into ``root/src`` and pack them as ZIP and TAR.GZ."""
    src = root / "src"
    (src / "exam1").mkdir(parents=True)
    (src / "exam2").mkdir(parents=True)
    clips: dict[str, np.ndarray | None] = {}
    frames = synth_frames(1)
    write_video(src / "exam1" / "clip_a.mp4", frames, "libx264", fps=25, colour=False)
    clips["exam1/clip_a.mp4"] = frames
    frames = synth_frames(2)
    np.save(src / "exam1" / "clip_b.npy", frames)
    clips["exam1/clip_b.npy"] = frames
    frames = synth_frames(3)
    write_dicom_cine(src / "exam2" / "clip_c.dcm", frames, region_cm=(0.02, 0.02), cine_rate=25.0)
    clips["exam2/clip_c.dcm"] = frames
    (src / CORRUPT).write_bytes(b"this is not a video at all" * 10)
    clips[CORRUPT] = None
    (src / "notes.txt").write_text("exam notes, not a clip\n")
    archive = root / "exams.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(src.rglob("*")):
            zf.write(path, path.relative_to(src).as_posix())
    tar = root / "exams.tar.gz"
    with tarfile.open(tar, "w:gz") as tf:
        tf.add(src, arcname=".")
    return ClipSet(archive, tar, clips)


def png_bytes(frame: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG")
    return buf.getvalue()


# --------------------------------------------------------------------------- malicious archives


def zip_with(path: Path, members: dict[str, bytes]) -> Path:
    """A ZIP with exactly these member names (no normalisation: ``../x`` stays ``../x``)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name), data)
    return path


def zip_symlink(path: Path, name: str, target: str) -> Path:
    """A ZIP holding one Unix symlink ``name -> target`` (plus a harmless PNG)."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ok.png", png_bytes(np.zeros((16, 16), np.uint8)))
        info = zipfile.ZipInfo(name)
        info.create_system = 3
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, target)
    return path


def tar_link(path: Path, name: str, target: str, hard: bool = False) -> Path:
    """A TAR.GZ holding one symlink (or hardlink) ``name -> target``."""
    with tarfile.open(path, "w:gz") as tf:
        data = png_bytes(np.zeros((16, 16), np.uint8))
        info = tarfile.TarInfo("ok.png")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo(name)
        link.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
        link.linkname = target
        tf.addfile(link)
    return path


def zip_bomb(path: Path, megabytes: int = 24) -> Path:
    """One member of zeros: ~1000x compression (a small zip bomb posing as an archive of clips)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("exam/clip.mp4", b"\x00" * (megabytes << 20))
    return path


def tar_bomb(path: Path, megabytes: int = 24) -> Path:
    """A TAR.GZ whose one member of zeros expands ~1000x."""
    with tarfile.open(path, "w:gz") as tf:
        info = tarfile.TarInfo("frames.npy")
        info.size = megabytes << 20
        tf.addfile(info, io.BytesIO(b"\x00" * info.size))
    return path


def zip_many(path: Path, count: int) -> Path:
    """A ZIP of ``count`` tiny members."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for i in range(count):
            zf.writestr(f"f{i}.txt", b"x")
    return path


def malicious(folder: Path) -> dict[str, Path]:
    """Every hostile archive the batch path must refuse, by what it tries."""
    folder.mkdir(parents=True, exist_ok=True)
    good = png_bytes(np.zeros((16, 16), np.uint8))
    return {
        "traversal": zip_with(folder / "traversal.zip", {"ok.png": good, "../evil.png": good}),
        "traversal_nested": zip_with(folder / "nested.zip", {"a/b/../../../evil.png": good}),
        "absolute": zip_with(folder / "absolute.zip", {"/tmp/evil.png": good}),
        "windows_absolute": zip_with(folder / "drive.zip", {"C:\\evil.png": good}),
        "zip_symlink_out": zip_symlink(folder / "zlink.zip", "link.png", "../../etc/passwd"),
        "tar_symlink_out": tar_link(folder / "tlink.tar.gz", "link.png", "/etc/passwd"),
        "tar_hardlink_out": tar_link(folder / "hlink.tar.gz", "link.png", "../outside.png", hard=True),
        "zip_bomb": zip_bomb(folder / "bomb.zip"),
        "tar_bomb": tar_bomb(folder / "bomb.tar.gz"),
        "too_many": zip_many(folder / "many.zip", 10_001),
    }
