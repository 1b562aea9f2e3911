"""The decoded-array cache behind the viewer's frame, mask and overlay routes."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from gateway.store.cache import ArrayCache
from tests.gateway.conftest import SynthClip, synth_clip
from tests.gateway.helpers import upload, write_clip


def test_many_threads_asking_for_one_key_load_it_once() -> None:
    cache = ArrayCache(1 << 20)
    calls = []

    def slow_load() -> np.ndarray:
        calls.append(1)
        time.sleep(0.2)  # the other threads arrive while it loads
        return np.zeros(1000, np.uint8)

    got: list[np.ndarray] = []
    threads = [threading.Thread(target=lambda: got.append(cache.get("a", slow_load, lambda v: v.nbytes))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and cache.loads == 1 and len(got) == 8 and all(g is got[0] for g in got)


def test_least_recently_used_values_go_first_once_the_bytes_pass_the_budget() -> None:
    cache = ArrayCache(2500)
    for key in "abc":
        cache.get(key, lambda: np.zeros(1000, np.uint8), lambda v: v.nbytes)
    assert cache.nbytes == 2000 and cache.loads == 3 and "a" not in cache and "c" in cache  # c pushed a out
    cache.get("b", lambda: pytest.fail("b is cached"), lambda v: v.nbytes)
    cache.get("a", lambda: np.zeros(1000, np.uint8), lambda v: v.nbytes)  # reloaded, pushes c (b was used last)
    assert cache.loads == 4 and "c" not in cache
    cache.get("b", lambda: pytest.fail("b is cached"), lambda v: v.nbytes)
    big = cache.get("big", lambda: np.zeros(9000, np.uint8), lambda v: v.nbytes)  # larger than the budget: kept alone
    assert big.nbytes == 9000 and cache.nbytes == 9000
    cache.drop("big")
    assert cache.nbytes == 0
    off = ArrayCache(0)
    for _ in range(2):
        off.get("a", lambda: np.zeros(10, np.uint8), lambda v: v.nbytes)
    assert off.loads == 2 and off.nbytes == 0


@pytest.mark.anyio
async def test_three_viewers_of_three_clips_decode_each_clip_once(gateway: httpx.AsyncClient, clip: SynthClip, tmp_path: Path) -> None:
    ids = []
    for seed in (3, 4, 5):
        path = write_clip("npz", synth_clip(seed=seed).frames, tmp_path / str(seed))
        r = await upload(gateway, path, wait=True)
        assert r.status_code == 200, r.text
        ids.append(r.json()["id"])
    files = gateway.app.state.ultramn.files  # type: ignore[attr-defined]
    before = files.cache.loads
    for frame in range(10):  # three viewers stepping through their clips side by side
        for job_id in ids:
            for kind in ("image.png", "mask.png", "overlay.png"):
                r = await gateway.get(f"/v1/analyses/{job_id}/frames/{frame}/{kind}")
                assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert files.cache.loads - before == 6  # each clip decoded once and its masks read once
    assert (await gateway.delete(f"/v1/analyses/{ids[0]}")).status_code == 204
    assert f"clip:{ids[1]}" in files.cache and f"masks:{ids[1]}" in files.cache
    assert f"clip:{ids[0]}" not in files.cache and f"masks:{ids[0]}" not in files.cache


def test_a_failed_load_leaves_nothing_behind_and_a_key_dropped_while_loading_is_not_kept() -> None:
    cache = ArrayCache(1 << 20)

    def broken() -> np.ndarray:
        raise OSError("upload gone")

    with pytest.raises(OSError):
        cache.get("a", broken, lambda v: v.nbytes)
    assert cache._loading == {} and "a" not in cache
    started, release = threading.Event(), threading.Event()

    def slow() -> np.ndarray:
        started.set()
        release.wait(5)
        return np.zeros(10, np.uint8)

    t = threading.Thread(target=lambda: cache.get("b", slow, lambda v: v.nbytes))
    t.start()
    started.wait(5)
    cache.drop("b")  # the analysis is deleted while its clip decodes
    release.set()
    t.join()
    assert "b" not in cache and cache._loading == {} and cache._dropped == set()
