"""WindowDataset: shapes, padding, eval coverage, splits, determinism, caching, loaders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from ultramn.contract import CONTRACT, PLANES, ModelContract
from ultramn.data.augment import AugmentConfig
from ultramn.data.clipio import ClipArrays, write_clip
from ultramn.data.manifest import ClipRecord, write_manifest
from ultramn.data.windows import (
    FrameRateJitter,
    WindowDataset,
    resampled_positions,
    sample_train_window,
    select_split,
    worker_init_fn,
)
from ultramn.windowing import window_indices

T = CONTRACT.window_frames
H, W = CONTRACT.height, CONTRACT.width
SRC_H, SRC_W = 48, 64  # source clips are not the contract size: the dataset resizes


def moving_square(n: int, h: int = SRC_H, w: int = SRC_W, size: int = 12) -> ClipArrays:
    """Frames whose grey level encodes the frame number, and a square 'nerve' moving right."""
    frames = np.zeros((n, h, w), dtype=np.uint8)
    masks = np.zeros((n, h, w), dtype=np.uint8)
    for i in range(n):
        frames[i] = 10 + (i * 11) % 240  # frame i is recognisable by its background level
        x0 = 2 + i % (w - size - 4)
        frames[i, 16 : 16 + size, x0 : x0 + size] = 250
        masks[i, 16 : 16 + size, x0 : x0 + size] = 1
    return ClipArrays(frames=frames, masks=masks)


def record(clip_id: str, n: int, plane: str, split: str, side: str = "L") -> ClipRecord:
    return ClipRecord(
        clip_id=clip_id,
        participant_id="p" + clip_id,
        side=side,
        plane=plane,
        quality="good",
        pixel_spacing_mm=0.1,
        fps=30.0,
        n_frames=n,
        height=SRC_H,
        width=SRC_W,
        split=split,
        source="test",
        file=f"clips/{clip_id}.npz",
    )


@pytest.fixture()
def dataset_root(tmp_path: Path) -> Path:
    """Four clips: 20 frames (train, TW), a still (train, LF), 5 frames with no plane (val), 9 frames (test)."""
    specs = [("long", 20, "TW", "train"), ("still", 1, "LF", "train"), ("noplane", 5, "", "val"), ("nine", 9, "TF", "test")]
    recs = []
    for cid, n, plane, split in specs:
        rec = record(cid, n, plane, split)
        write_clip(tmp_path / rec.file, moving_square(n))
        recs.append(rec)
    write_manifest(tmp_path, recs)
    return tmp_path


def frame_number(frames: torch.Tensor) -> np.ndarray:
    """Recover each window frame's clip frame number from its background grey level."""
    levels = np.rint(frames[0, :, 0, 0].numpy() * 255).astype(int)
    lut = {10 + (i * 11) % 240: i for i in range(20)}
    return np.array([lut[v] for v in levels])


def test_item_shapes_and_dtypes(dataset_root: Path) -> None:
    ds = WindowDataset(dataset_root, "all", mode="train", augment=AugmentConfig())
    assert len(ds) == 4
    for i in range(len(ds)):
        item = ds[i]
        assert item["frames"].shape == (1, T, H, W) and item["frames"].dtype == torch.float32
        assert item["masks"].shape == (1, T, H, W) and item["masks"].dtype == torch.float32
        assert set(torch.unique(item["masks"]).tolist()) <= {0.0, 1.0}
        assert float(item["frames"].min()) >= 0.0 and float(item["frames"].max()) <= 1.0
        assert item["plane"].dtype == torch.int64 and item["plane"].shape == ()
        assert item["frame_indices"].shape == (T,) and item["frame_indices"].dtype == torch.int64
        assert item["valid"].shape == (T,) and item["valid"].dtype == torch.bool
        assert int(item["start"]) == int(item["frame_indices"][0])
    planes = {ds[i]["clip_id"]: int(ds[i]["plane"]) for i in range(len(ds))}
    assert planes == {"long": PLANES.index("TW"), "still": PLANES.index("LF"), "noplane": -1, "nine": PLANES.index("TF")}


def test_frames_are_normalized_resized_clip_frames(dataset_root: Path) -> None:
    ds = WindowDataset(dataset_root, "train", mode="eval")
    item = ds[0]
    assert item["clip_id"] == "long"
    # the background level of each frame identifies the clip frame that was taken
    np.testing.assert_array_equal(frame_number(item["frames"]), item["frame_indices"].numpy())
    np.testing.assert_array_equal(item["frame_indices"].numpy(), np.arange(T))
    assert float(item["masks"].sum()) > 0


@pytest.mark.parametrize("clip_id,n", [("still", 1), ("noplane", 5)])
def test_short_clips_pad_like_windowing(dataset_root: Path, clip_id: str, n: int) -> None:
    expected = window_indices(n, T, max(1, T // 2))
    assert expected.shape[0] == 1
    for mode in ("train", "eval"):
        ds = WindowDataset(dataset_root, "all", mode=mode, windows_per_clip=3, rate_jitter=None)
        items = [ds[i] for i in range(len(ds)) if ds.records[ds.window_plan(i)[0]].clip_id == clip_id]
        assert items, mode
        for item in items:
            np.testing.assert_array_equal(item["frame_indices"].numpy(), expected[0])
            np.testing.assert_array_equal(item["valid"].numpy(), np.arange(T) < n)
            # padded frames repeat the last real frame exactly
            last = item["frames"][0, n - 1]
            for k in range(n, T):
                assert torch.equal(item["frames"][0, k], last)
                assert torch.equal(item["masks"][0, k], item["masks"][0, n - 1])


def test_eval_enumerates_all_windows_and_covers_all_frames(dataset_root: Path) -> None:
    stride = max(1, T // 2)
    ds = WindowDataset(dataset_root, "all", mode="eval")
    expected_total = sum(window_indices(r.n_frames, T, stride).shape[0] for r in ds.records)
    assert len(ds) == expected_total
    seen: dict[str, list[np.ndarray]] = {}
    for i in range(len(ds)):
        item = ds[i]
        seen.setdefault(item["clip_id"], []).append(item["frame_indices"].numpy())
    for rec in ds.records:
        got = np.stack(seen[rec.clip_id])
        np.testing.assert_array_equal(got, window_indices(rec.n_frames, T, stride))
        assert set(got.reshape(-1).tolist()) == set(range(rec.n_frames))
    # explicit stride
    ds1 = WindowDataset(dataset_root, "train", mode="eval", stride=1)
    assert len(ds1) == window_indices(20, T, 1).shape[0] + 1


def test_eval_is_deterministic_and_ignores_epoch(dataset_root: Path) -> None:
    a = WindowDataset(dataset_root, "all", mode="eval", seed=1)
    b = WindowDataset(dataset_root, "all", mode="eval", seed=2)
    b.set_epoch(5)
    for i in range(len(a)):
        assert torch.equal(a[i]["frames"], b[i]["frames"])
        assert torch.equal(a[i]["frame_indices"], b[i]["frame_indices"])


def test_split_filtering(dataset_root: Path) -> None:
    ids = {s: [r.clip_id for r in WindowDataset(dataset_root, s, mode="eval").records] for s in ("train", "val", "test", "all")}
    assert ids == {"train": ["long", "still"], "val": ["noplane"], "test": ["nine"], "all": ["long", "still", "noplane", "nine"]}
    assert [r.clip_id for r in WindowDataset(dataset_root, ["val", "test"], mode="eval").records] == ["noplane", "nine"]
    assert WindowDataset(dataset_root, "val", mode="eval")[0]["clip_id"] == "noplane"
    with pytest.raises(ValueError, match="unknown split"):
        select_split([], "training")


def test_train_windows_random_offsets_deterministic_per_seed_and_epoch(dataset_root: Path) -> None:
    def starts(seed: int, epoch: int) -> list[int]:
        ds = WindowDataset(dataset_root, "train", mode="train", windows_per_clip=16, seed=seed, rate_jitter=None)
        ds.set_epoch(epoch)
        return [int(ds[i]["start"]) for i in range(16)]  # the 20-frame clip's items

    a = starts(0, 0)
    assert a == starts(0, 0)
    assert a != starts(1, 0)
    assert a != starts(0, 1)
    assert len(set(a)) > 3 and all(0 <= s <= 20 - T for s in a)
    ds = WindowDataset(dataset_root, "train", mode="train", windows_per_clip=16, rate_jitter=None)
    assert len(ds) == 32
    for i in range(16):
        item = ds[i]
        np.testing.assert_array_equal(item["frame_indices"].numpy(), int(item["start"]) + np.arange(T))
        assert bool(item["valid"].all())
        np.testing.assert_array_equal(frame_number(item["frames"]), item["frame_indices"].numpy())


def test_train_augmented_items_deterministic(dataset_root: Path) -> None:
    def items(seed: int) -> list[dict]:
        ds = WindowDataset(
            dataset_root,
            "train",
            mode="train",
            windows_per_clip=4,
            seed=seed,
            rate_jitter=FrameRateJitter(),
            augment=AugmentConfig(),
        )
        return [ds[i] for i in range(len(ds))]

    a, b, c = items(3), items(3), items(4)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x["frames"], y["frames"]) and torch.equal(x["masks"], y["masks"])
        assert x["side"] == y["side"] and x["mirrored"] == y["mirrored"]
    assert any(not torch.equal(x["frames"], z["frames"]) for x, z in zip(a, c, strict=True))
    for x in a:
        assert x["side"] == ("R" if x["mirrored"] else "L")


def test_frame_rate_jitter_steps(dataset_root: Path) -> None:
    ds = WindowDataset(dataset_root, "train", mode="train", windows_per_clip=40, rate_jitter=FrameRateJitter(steps=(2.0,)))
    for i in range(40):
        item = ds[i]
        idx = item["frame_indices"].numpy()
        # step 2 over 20 frames: 10 resampled positions, windows of T inside them
        np.testing.assert_array_equal(np.diff(idx), np.full(T - 1, 2))
        assert bool(item["valid"].all()) and idx[-1] <= 19
        np.testing.assert_array_equal(frame_number(item["frames"]), idx)


def test_default_jitter_mixes_steps_and_pads_short_clips_at_the_tail(dataset_root: Path) -> None:
    ds = WindowDataset(dataset_root, "all", mode="train", windows_per_clip=40)
    steps: set[int] = set()
    for i in range(len(ds)):
        item = ds[i]
        idx, valid = item["frame_indices"].numpy(), item["valid"].numpy()
        n = int(item["n_frames"])
        n_valid = int(valid.sum())
        assert valid[:n_valid].all() and not valid[n_valid:].any()
        assert np.all(idx[n_valid:] == idx[n_valid - 1])  # padding repeats the last sampled frame
        assert idx.max() <= n - 1
        if n_valid > 1:
            steps |= set(np.diff(idx[:n_valid]).tolist())
        np.testing.assert_array_equal(item["frames"][0, n_valid:], item["frames"][0, n_valid - 1 : n_valid].expand(T - n_valid, -1, -1))
    assert steps == {1, 2}


def test_max_clips_keeps_an_even_spread(dataset_root: Path) -> None:
    ds = WindowDataset(dataset_root, "all", mode="eval", max_clips=2)
    assert [r.clip_id for r in ds.records] == ["long", "nine"]
    assert len(WindowDataset(dataset_root, "all", mode="eval", max_clips=10).records) == 4
    with pytest.raises(ValueError):
        WindowDataset(dataset_root, "all", mode="eval", max_clips=0)


def test_resampled_positions_and_padding_semantics() -> None:
    np.testing.assert_array_equal(resampled_positions(10, 1.0), np.arange(10))
    np.testing.assert_array_equal(resampled_positions(10, 2.0), [0, 2, 4, 6, 8])
    np.testing.assert_array_equal(resampled_positions(5, 0.75), [0, 1, 2, 2, 3, 4])  # round half up
    np.testing.assert_array_equal(resampled_positions(1, 1.5), [0])
    rng = np.random.default_rng(0)
    for n in range(1, 3 * T):
        for rate in (0.75, 1.0, 1.3, 2.0):
            idx, valid = sample_train_window(n, T, rng, rate)
            assert idx.shape == (T,) and idx.min() >= 0 and idx.max() <= n - 1
            assert np.all(np.diff(idx) >= 0)
            m = len(resampled_positions(n, rate))
            assert int(valid.sum()) == min(m, T)
            assert valid[: int(valid.sum())].all()  # padding only at the tail
            if rate == 1.0 and n <= T:
                np.testing.assert_array_equal(idx, window_indices(n, T, 1)[0])
    jit = FrameRateJitter(rate_range=(0.75, 1.5))
    rates = [jit.sample(rng) for _ in range(200)]
    assert min(rates) >= 0.75 and max(rates) <= 1.5 and np.std(rates) > 0.1
    with pytest.raises(ValueError):
        FrameRateJitter(rate_range=(1.5, 0.75))


def test_cache_bounds_and_reuse(dataset_root: Path) -> None:
    ds = WindowDataset(dataset_root, "all", mode="eval")
    for i in range(len(ds)):
        ds[i]
    assert len(ds.cache) == 4 and ds.cache.misses == 4 and ds.cache.hits == len(ds) - 4
    per_frame = 2 * H * W  # frames + masks, uint8
    small = WindowDataset(dataset_root, "all", mode="eval", cache_mb=(20 + 1) * per_frame / 2**20)
    for i in range(len(small)):
        small[i]
        assert small.cache.nbytes <= small.cache.max_bytes
    off = WindowDataset(dataset_root, "all", mode="eval", cache_mb=0)
    off[0]
    assert len(off.cache) == 0


def test_manifest_frame_count_mismatch_is_reported(tmp_path: Path) -> None:
    rec = record("bad", 7, "TW", "train")
    write_clip(tmp_path / rec.file, moving_square(5))
    write_manifest(tmp_path, [rec])
    with pytest.raises(ValueError, match="manifest says 7"):
        WindowDataset(tmp_path, "train")[0]


def test_contract_shape_is_read_not_hard_coded(dataset_root: Path) -> None:
    small = ModelContract(window_frames=4, height=32, width=40)
    ds = WindowDataset(dataset_root, "all", mode="eval", contract=small)
    item = ds[0]
    assert item["frames"].shape == (1, 4, 32, 40) and item["masks"].shape == (1, 4, 32, 40)
    assert len(ds) == sum(window_indices(r.n_frames, 4, 2).shape[0] for r in ds.records)


def test_dataloader_workers_match_single_process(dataset_root: Path) -> None:
    ds = WindowDataset(
        dataset_root, "train", mode="train", windows_per_clip=3, seed=7, rate_jitter=FrameRateJitter(), augment=AugmentConfig()
    )
    ds.set_epoch(2)
    ref = [ds[i] for i in range(len(ds))]
    loader = DataLoader(
        ds, batch_size=2, num_workers=2, worker_init_fn=worker_init_fn, persistent_workers=True, multiprocessing_context="fork"
    )
    batches = list(loader)
    frames = torch.cat([b["frames"] for b in batches])
    assert frames.shape == (len(ds), 1, T, H, W)
    # workers run torch with one thread: allow float rounding of thread-count-dependent kernels
    torch.testing.assert_close(frames, torch.stack([r["frames"] for r in ref]), atol=1e-6, rtol=0)
    assert torch.equal(torch.cat([b["masks"] for b in batches]), torch.stack([r["masks"] for r in ref]))
    assert torch.equal(torch.cat([b["frame_indices"] for b in batches]), torch.stack([r["frame_indices"] for r in ref]))
    assert [c for b in batches for c in b["clip_id"]] == [r["clip_id"] for r in ref]
    # persistent workers see a new epoch
    ds.set_epoch(3)
    again = torch.cat([b["frames"] for b in loader])
    torch.testing.assert_close(again, torch.stack([ds[i]["frames"] for i in range(len(ds))]), atol=1e-6, rtol=0)
    assert not torch.allclose(again, frames)
