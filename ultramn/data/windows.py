"""The torch dataset of training/evaluation windows cut from a dataset folder.

A dataset folder holds ``manifest.csv`` (:mod:`ultramn.data.manifest`) and the clip files
it names (:mod:`ultramn.data.clipio`). :class:`WindowDataset` turns its clips into model
windows of the contract's shape ``T, H, W`` (:data:`ultramn.contract.CONTRACT`):

- ``mode="train"``: every clip gives ``windows_per_clip`` items per epoch, each a window
  at a random offset, with frame-rate jitter (:class:`FrameRateJitter`, on by default)
  and optional augmentation (:mod:`ultramn.data.augment`).
- ``mode="eval"``: deterministic; every window of every clip from
  :func:`ultramn.windowing.window_indices` with ``stride`` (default ``T // 2``), so the
  windows cover every frame and can be stitched back like the gateway does.

Short clips (fewer than ``T`` frames, down to one still image) are padded exactly as
:mod:`ultramn.windowing` pads: the tail repeats the last frame; ``valid`` marks the real
frames. Each item is a dict:

- ``frames``: ``float32 [1,T,H,W]``, :func:`ultramn.preprocess.normalize_intensity` of the
  frames resized to ``H, W`` by :func:`ultramn.preprocess.resize_frames`;
- ``masks``: ``float32 [1,T,H,W]`` in {0, 1} (:func:`ultramn.preprocess.resize_masks`);
- ``plane``: ``int64`` index into :data:`ultramn.contract.PLANES`, ``-1`` when the clip
  has no plane label (losses ignore it);
- ``clip_id`` (str), ``side`` (str, ``L``/``R``/empty, swapped when the window was
  mirrored), ``mirrored`` (bool), ``start`` (``int64``: clip frame index of the window's
  first frame), ``n_frames`` (``int64``: the clip's frame count);
- ``frame_indices``: ``int64 [T]`` clip frame index of every window frame;
- ``valid``: ``bool [T]``, False for padding (frames repeated past the clip's end).

Randomness: item ``i`` of epoch ``e`` draws from a generator seeded with
``(seed, e, i)``, so results do not depend on the number of workers or on which worker
serves an item. Call :meth:`WindowDataset.set_epoch` before each epoch (the epoch lives in
shared memory, so persistent workers see it too) and pass :func:`worker_init_fn` to the
``DataLoader`` (it seeds the global ``random``/``numpy``/``torch`` generators of each worker
for any other code that uses them).

Decoded and resized clips are kept in a per-process LRU cache bounded by
``cache_mb`` megabytes, so epochs do not decode the same ``.npz`` files again.
"""

from __future__ import annotations

import random
import zipfile
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import Dataset

from ultramn.contract import CONTRACT, PLANES, SPLITS, ModelContract
from ultramn.data.augment import AugmentConfig, augment_window
from ultramn.data.clipio import ClipFileError, check_clip_files, read_clip
from ultramn.data.manifest import ClipRecord, read_manifest
from ultramn.preprocess import normalize_intensity, resize_frames, resize_masks
from ultramn.windowing import default_stride, window_indices

Mode = Literal["train", "eval"]
IntArray = npt.NDArray[np.int64]
U8Array = npt.NDArray[np.uint8]

_SWAP_SIDE = {"L": "R", "R": "L", "": ""}


@dataclass(frozen=True)
class FrameRateJitter:
    """Temporal resampling of training windows (simulates other frame rates / motion speeds).

    A rate ``r`` (clip frames per window frame) is drawn per window: uniformly from
    ``rate_range`` when it is set, otherwise from ``steps`` (e.g. ``(1, 1, 1, 2)``: three
    times in four every frame, once every second frame). The clip is resampled with
    nearest-frame sampling at positions ``round(j * r)``, ``j = 0, 1, ...`` inside the clip,
    and the window is cut from that resampled clip with
    :func:`ultramn.windowing.window_indices` (so short clips pad the same way). ``r = 1``
    is plain windowing.
    """

    steps: tuple[float, ...] = (1.0, 1.0, 1.0, 2.0)
    rate_range: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if not self.steps or any(s <= 0 for s in self.steps):
            raise ValueError("steps must be a non-empty tuple of positive rates")
        if self.rate_range is not None and not 0 < self.rate_range[0] <= self.rate_range[1]:
            raise ValueError(f"rate_range must be 0 < low <= high, got {self.rate_range}")

    def sample(self, rng: np.random.Generator) -> float:
        """Draw one rate."""
        if self.rate_range is not None:
            return float(rng.uniform(self.rate_range[0], self.rate_range[1]))
        return float(self.steps[int(rng.integers(len(self.steps)))])


def resampled_positions(n_frames: int, rate: float) -> IntArray:
    """Clip frame indices ``int64 [M]`` of a clip resampled at ``rate`` (nearest frame).

    Position ``j`` is ``floor(j * rate + 0.5)``; ``M`` is the number of positions that fall
    inside the clip (``j * rate <= n_frames - 1``), at least 1.
    """
    if n_frames < 1 or rate <= 0:
        raise ValueError("need n_frames >= 1 and rate > 0")
    m = int(np.floor((n_frames - 1) / rate + 1e-9)) + 1
    pos = np.floor(np.arange(m, dtype=np.float64) * rate + 0.5).astype(np.int64)
    return np.minimum(pos, n_frames - 1)


def sample_train_window(n_frames: int, window: int, rng: np.random.Generator, rate: float = 1.0) -> tuple[IntArray, npt.NDArray[np.bool_]]:
    """One random training window: ``(frame_indices int64 [T], valid bool [T])``.

    The clip is resampled at ``rate`` (:func:`resampled_positions`); a start is drawn
    uniformly among the windows :func:`ultramn.windowing.window_indices` gives with stride 1,
    so padding of short clips follows :mod:`ultramn.windowing` exactly.
    """
    pos = resampled_positions(n_frames, rate)
    rows = window_indices(len(pos), window, 1)
    row = int(rng.integers(rows.shape[0]))
    idx = rows[row]
    valid = idx == idx[0] + np.arange(window, dtype=np.int64)
    return pos[idx], valid


def worker_init_fn(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed ``random``, ``numpy`` and ``torch`` per worker.

    The DataLoader gives each worker ``torch.initial_seed() = base_seed + worker_id``; this
    derives the other generators from it. (The dataset's own draws are seeded per item and
    do not depend on it.)
    """
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass(frozen=True)
class _Clip:
    frames: U8Array  # [N,H,W] resized to the contract
    masks: U8Array  # [N,H,W] in {0, 1}

    @property
    def nbytes(self) -> int:
        return int(self.frames.nbytes + self.masks.nbytes)


class ClipCache:
    """LRU cache of decoded, resized clips, bounded by total bytes (one per process)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max(0, int(max_bytes))
        self._items: OrderedDict[str, _Clip] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        """Bytes held now."""
        return self._bytes

    def get(self, key: str) -> _Clip | None:
        """The cached clip for ``key`` (marked most recently used), or None."""
        clip = self._items.get(key)
        if clip is None:
            self.misses += 1
            return None
        self.hits += 1
        self._items.move_to_end(key)
        return clip

    def put(self, key: str, clip: _Clip) -> None:
        """Store ``clip``, evicting least recently used clips; clips over the bound are not kept."""
        if clip.nbytes > self.max_bytes:
            return
        old = self._items.pop(key, None)
        if old is not None:
            self._bytes -= old.nbytes
        self._items[key] = clip
        self._bytes += clip.nbytes
        while self._bytes > self.max_bytes:
            _, evicted = self._items.popitem(last=False)
            self._bytes -= evicted.nbytes

    def clear(self) -> None:
        """Drop everything."""
        self._items.clear()
        self._bytes = 0


class FrameCountError(ClipFileError, ValueError):
    """A clip file's arrays disagree with its manifest row (frame count, or masks unlike the frames)."""


def _npy_header(zf: zipfile.ZipFile, member: str) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """Shape and dtype the NPY header of ``member`` of an open NPZ declares (nothing is inflated)."""
    with zf.open(member) as fh:
        version = np.lib.format.read_magic(fh)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(fh)
    return tuple(int(s) for s in shape), np.dtype(dtype)


def check_frame_counts(root: Path, records: Sequence[ClipRecord], show: int = 5) -> None:
    """Raise :class:`FrameCountError` (a :class:`~ultramn.data.clipio.ClipFileError`) naming clips whose file disagrees with the manifest.

    Reads only the array headers of each clip file (milliseconds a clip), so a frame count that
    differs from ``n_frames``, masks shaped unlike the frames, arrays that are not ``uint8``
    (:class:`~ultramn.data.clipio.ClipArrays`) or an empty side stop a run before it starts,
    not after an epoch. Call after :func:`~ultramn.data.clipio.check_clip_files`.
    """
    bad: list[str] = []
    for rec in records:
        path = root / rec.file
        try:
            with zipfile.ZipFile(path) as zf:
                (frames, frames_dtype), (masks, masks_dtype) = _npy_header(zf, "frames.npy"), _npy_header(zf, "masks.npy")
        except (zipfile.BadZipFile, OSError, ValueError, KeyError, EOFError) as exc:
            bad.append(f"clip {rec.clip_id}: {path} (unreadable array header: {exc})")
            continue
        if len(frames) != 3 or masks != frames:
            bad.append(f"clip {rec.clip_id}: {path} (frames {frames} and masks {masks}: need two [T,H,W] arrays of one shape)")
        elif frames_dtype != np.uint8 or masks_dtype != np.uint8:
            bad.append(f"clip {rec.clip_id}: {path} (frames {frames_dtype} and masks {masks_dtype}: both must be uint8)")
        elif min(frames[1:]) < 1:
            bad.append(f"clip {rec.clip_id}: {path} (frames {frames}: a side of 0 pixels)")
        elif frames[0] != rec.n_frames:
            bad.append(f"clip {rec.clip_id}: {path} has {frames[0]} frames, the manifest says {rec.n_frames}")
    if bad:
        more = f" and {len(bad) - show} more" if len(bad) > show else ""
        raise FrameCountError(f"{len(bad)} clip(s) disagree with the manifest: {'; '.join(bad[:show])}{more}")


def plane_index(plane: str) -> int:
    """Index of ``plane`` in :data:`ultramn.contract.PLANES`; ``-1`` for an empty label."""
    return PLANES.index(plane) if plane else -1


def select_split(records: Sequence[ClipRecord], split: str | Sequence[str]) -> list[ClipRecord]:
    """Records whose split is ``split`` (one of ``train val test``, several, or ``all``).

    ``all`` keeps every record, including those with no split assigned.
    """
    wanted = (split,) if isinstance(split, str) else tuple(split)
    if "all" in wanted:
        return list(records)
    bad = [s for s in wanted if s not in SPLITS]
    if bad:
        raise ValueError(f"unknown split(s) {bad}: use {SPLITS} or 'all'")
    return [r for r in records if r.split in wanted]


def subsample_evenly(records: Sequence[ClipRecord], max_clips: int | None) -> list[ClipRecord]:
    """At most ``max_clips`` of ``records``, evenly spaced, in order (all when None or enough)."""
    if max_clips is not None and max_clips < 1:
        raise ValueError("max_clips must be >= 1")
    if max_clips is None or max_clips >= len(records):
        return list(records)
    picks = np.unique(np.round(np.linspace(0, len(records) - 1, max_clips)).astype(np.int64))
    return [records[int(i)] for i in picks]


class WindowDataset(Dataset[dict[str, Any]]):
    """Windows of the contract's shape from a dataset folder; see the module docstring.

    Args:
        root: dataset folder (holds ``manifest.csv``; clip paths are relative to it).
        split: ``train``, ``val``, ``test``, a sequence of them, or ``all``.
        mode: ``train`` (random windows, jitter, augmentation) or ``eval`` (every window).
        contract: window shape source (``window_frames``, ``height``, ``width``).
        windows_per_clip: training items per clip per epoch (``train`` mode).
        stride: frames between window starts in ``eval`` mode; default ``T // 2`` (>= 1).
        rate_jitter: frame-rate jitter for ``train`` mode; None = none (plain windows). The
            default :class:`FrameRateJitter` draws steps from ``(1, 1, 1, 2)``.
        augment: augmentation applied to every item (``train`` mode only); None = none.
        seed: base seed; item ``i`` of epoch ``e`` uses ``(seed, e, i)``.
        cache_mb: bound of the per-process clip cache in megabytes (0 disables it).
        records: use these manifest records instead of reading ``root/manifest.csv``
            (still filtered by ``split``).
        max_clips: keep at most this many clips of the split (for quick runs): evenly
            spaced over the manifest order, so every part of the manifest is represented;
            the same clips whatever the seed. None keeps all.
    """

    def __init__(
        self,
        root: Path | str,
        split: str | Sequence[str] = "train",
        *,
        mode: Mode = "train",
        contract: ModelContract = CONTRACT,
        windows_per_clip: int = 1,
        stride: int | None = None,
        rate_jitter: FrameRateJitter | None = FrameRateJitter(),
        augment: AugmentConfig | None = None,
        seed: int = 0,
        cache_mb: float = 512.0,
        records: Sequence[ClipRecord] | None = None,
        max_clips: int | None = None,
    ) -> None:
        if mode not in ("train", "eval"):
            raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
        if windows_per_clip < 1:
            raise ValueError("windows_per_clip must be >= 1")
        self.root = Path(root)
        self.mode: Mode = mode
        self.contract = contract
        self.window = contract.window_frames
        self.height = contract.height
        self.width = contract.width
        self.windows_per_clip = windows_per_clip
        self.stride = stride if stride is not None else default_stride(self.window)
        if self.stride < 1:
            raise ValueError("stride must be >= 1")
        self.rate_jitter = rate_jitter
        self.augment = augment
        self.seed = int(seed)
        self.cache_mb = float(cache_mb)
        all_records = list(records) if records is not None else read_manifest(self.root)
        self.records: list[ClipRecord] = subsample_evenly(select_split(all_records, split), max_clips)
        check_clip_files(self.root / r.file for r in self.records)
        check_frame_counts(self.root, self.records)
        # eval index: (record number, window row) for every window of every clip
        self._eval_windows: list[IntArray] = [window_indices(r.n_frames, self.window, self.stride) for r in self.records]
        self._eval_index: list[tuple[int, int]] = [(ci, wi) for ci, rows in enumerate(self._eval_windows) for wi in range(rows.shape[0])]
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._cache = ClipCache(int(self.cache_mb * 2**20))

    # ------------------------------------------------------------------ epochs, seeds
    @property
    def epoch(self) -> int:
        """The current epoch (shared with worker processes)."""
        return int(self._epoch.item())

    def set_epoch(self, epoch: int) -> None:
        """Reseed for ``epoch``: training windows, jitter and augmentation change per epoch."""
        self._epoch.fill_(int(epoch))

    def _rngs(self, index: int) -> tuple[np.random.Generator, torch.Generator]:
        ss = np.random.SeedSequence([self.seed, self.epoch, index])
        np_seed, torch_seed = ss.generate_state(2, dtype=np.uint64)
        return np.random.default_rng(int(np_seed)), torch.Generator().manual_seed(int(torch_seed) & (2**63 - 1))

    # ------------------------------------------------------------------ clips
    @property
    def cache(self) -> ClipCache:
        """This process's clip cache."""
        return self._cache

    def load_clip(self, record: ClipRecord) -> tuple[U8Array, U8Array]:
        """Frames and masks of ``record`` resized to the contract: ``uint8 [N,H,W]`` each (cached)."""
        cached = self._cache.get(record.clip_id)
        if cached is None:
            arrays = read_clip(self.root / record.file)
            n = arrays.frames.shape[0]
            if n != record.n_frames:
                raise FrameCountError(f"clip {record.clip_id}: {record.file} has {n} frames, the manifest says {record.n_frames}")
            frames = resize_frames(arrays.frames, self.height, self.width)
            masks = resize_masks((arrays.masks > 0).astype(np.uint8), self.height, self.width)
            cached = _Clip(np.ascontiguousarray(frames), np.ascontiguousarray(masks))
            self._cache.put(record.clip_id, cached)
        return cached.frames, cached.masks

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"] = ClipCache(self._cache.max_bytes)  # workers start with an empty cache
        return state

    # ------------------------------------------------------------------ Dataset API
    def __len__(self) -> int:
        if self.mode == "train":
            return len(self.records) * self.windows_per_clip
        return len(self._eval_index)

    def window_plan(self, index: int) -> tuple[int, IntArray, npt.NDArray[np.bool_]]:
        """``(record number, frame_indices int64 [T], valid bool [T])`` of item ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        if self.mode == "eval":
            ci, wi = self._eval_index[index]
            idx = self._eval_windows[ci][wi]
            return ci, idx, idx == idx[0] + np.arange(self.window, dtype=np.int64)
        ci = index // self.windows_per_clip
        rng, _ = self._rngs(index)
        rate = self.rate_jitter.sample(rng) if self.rate_jitter is not None else 1.0
        idx, valid = sample_train_window(self.records[ci].n_frames, self.window, rng, rate)
        return ci, idx, valid

    def __getitem__(self, index: int) -> dict[str, Any]:
        ci, idx, valid = self.window_plan(index)
        rec = self.records[ci]
        frames_u8, masks_u8 = self.load_clip(rec)
        frames = torch.from_numpy(normalize_intensity(frames_u8[idx])).unsqueeze(0)
        masks = torch.from_numpy(masks_u8[idx].astype(np.float32)).unsqueeze(0)
        mirrored = False
        if self.mode == "train" and self.augment is not None and self.augment.enabled:
            _, gen = self._rngs(index)
            frames, masks, mirrored = augment_window(frames, masks, self.augment, gen)
        return {
            "frames": frames.contiguous(),
            "masks": masks.contiguous(),
            "plane": torch.tensor(plane_index(rec.plane), dtype=torch.int64),
            "clip_id": rec.clip_id,
            "side": _SWAP_SIDE[rec.side] if mirrored else rec.side,
            "mirrored": mirrored,
            "start": torch.tensor(int(idx[0]), dtype=torch.int64),
            "n_frames": torch.tensor(rec.n_frames, dtype=torch.int64),
            "frame_indices": torch.from_numpy(idx.astype(np.int64)),
            "valid": torch.from_numpy(valid.astype(np.bool_)),
        }
