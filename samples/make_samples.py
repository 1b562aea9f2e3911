"""Regenerate the quickstart sample clips in ``samples/`` (deterministic).

``python samples/make_samples.py`` writes, for one synthetic participant (seed 7, never part
of the default training set, which uses seed 0):

- ``sample_TW.npz``: transverse-wrist clip, ``frames`` ``uint8 [T,H,W]``, ground-truth
  ``masks`` ``uint8 [T,H,W]``, scalars ``fps`` and ``pixel_spacing_mm`` (the gateway reads
  frames, fps and spacing from it, so CSA comes out in mm²);
- ``sample_LF.mp4``: longitudinal-forearm clip as H.264 video (no spacing inside: pass
  ``--pixel-spacing`` to ``ultramn analyze`` for mm² values; see samples/README.md).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import av
import numpy as np

from ultramn.data.synth.config import SynthConfig
from ultramn.data.synth.generator import ClipSpec, generate_clip

HERE = Path(__file__).resolve().parent
SEED = 7


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """A deterministic compressed npz (fixed zip timestamps)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue())


def write_mp4(path: Path, frames: np.ndarray, fps: float) -> None:
    """Grey frames ``uint8 [T,H,W]`` as an H.264 MP4 (yuv420p, high quality)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=round(fps))
        stream.height, stream.width = frames.shape[1:]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18"}
        for frame in frames:
            vf = av.VideoFrame.from_ndarray(np.stack([frame] * 3, axis=-1), format="rgb24")
            for packet in stream.encode(vf):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def main() -> None:
    cfg = SynthConfig(participants=1, seed=SEED, frames=24)
    tw = generate_clip(ClipSpec(cfg, 0, "TW", "R", grade="good"))
    write_npz(
        HERE / "sample_TW.npz",
        {
            "frames": tw.arrays.frames,
            "masks": tw.arrays.masks,
            "fps": np.float32(tw.acquisition.fps),
            "pixel_spacing_mm": np.float32(tw.acquisition.pixel_spacing_mm),
        },
    )
    lf = generate_clip(ClipSpec(cfg, 0, "LF", "L", grade="fair"))
    write_mp4(HERE / "sample_LF.mp4", lf.arrays.frames, lf.acquisition.fps)
    print(f"TW: {tw.arrays.frames.shape}, {tw.acquisition.pixel_spacing_mm:.4f} mm/px, {tw.acquisition.fps:.1f} fps")
    print(f"LF: {lf.arrays.frames.shape}, {lf.acquisition.pixel_spacing_mm:.4f} mm/px, {lf.acquisition.fps:.1f} fps")


if __name__ == "__main__":
    main()
