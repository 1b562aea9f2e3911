"""Cluster (participant-level) percentile bootstrap.

Frames and clips of one participant are correlated, so confidence intervals resample
*participants* with replacement: every replicate draws ``n_clusters`` participants and
takes all of their rows. The interval is the percentile interval of the replicates,
``[q(α/2), q(1 - α/2)]``; the point estimate is the statistic on the original rows.
Deterministic for a given ``seed`` (``numpy.random.default_rng``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class BootstrapResult:
    """Point estimate and percentile interval; ``replicates`` ``[n_boot]`` (nan = undefined)."""

    estimate: float
    low: float
    high: float
    confidence: float
    n_boot: int
    n_clusters: int
    n_rows: int
    replicates: FloatArray = field(repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict without the replicates (non-finite -> ``None``)."""
        out: dict[str, Any] = {}
        for k in ("estimate", "low", "high", "confidence", "n_boot", "n_clusters", "n_rows"):
            v = getattr(self, k)
            out[k] = None if isinstance(v, float) and not math.isfinite(v) else v
        return out


def cluster_codes(clusters: Sequence[Any] | npt.ArrayLike) -> tuple[IntArray, int]:
    """Integer codes ``[n_rows]`` in ``0..n_clusters-1`` for arbitrary cluster ids."""
    arr = np.asarray(clusters)
    if arr.ndim != 1:
        raise ValueError(f"clusters must be 1D [n_rows], got {arr.shape}")
    _, codes = np.unique(arr, return_inverse=True)
    codes = np.asarray(codes, dtype=np.int64)
    return codes, int(codes.max()) + 1 if codes.size else 0


def cluster_draws(n_clusters: int, n_boot: int, seed: int | None) -> IntArray:
    """``[n_boot, n_clusters]`` cluster indices drawn with replacement (one row per replicate)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_clusters, size=(n_boot, n_clusters), dtype=np.int64)


def percentile_interval(replicates: FloatArray, confidence: float) -> tuple[float, float]:
    """``[q(α/2), q(1 - α/2)]`` of the finite replicates (``nan, nan`` if none is finite)."""
    finite = replicates[np.isfinite(replicates)]
    if finite.size == 0:
        return math.nan, math.nan
    alpha = 1.0 - confidence
    lo, hi = np.percentile(finite, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)


def _check(n_boot: int, confidence: float) -> None:
    if n_boot < 1:
        raise ValueError("n_boot must be >= 1")
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must be in (0, 1)")


def bootstrap_indices(
    clusters: Sequence[Any] | npt.ArrayLike,
    statistic: Callable[[IntArray], float],
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int | None = 0,
) -> BootstrapResult:
    """Cluster bootstrap of any statistic of the rows.

    ``clusters``: participant id per row ``[n_rows]``. ``statistic(rows)`` receives row
    indices ``int64 [n]`` (a participant drawn twice contributes its rows twice) and returns
    a float; use it for figures needing several columns (plane macro-F1 from ``y_true`` and
    ``y_pred``, pooled Dice...). One Python call per replicate.
    """
    _check(n_boot, confidence)
    codes, n_clusters = cluster_codes(clusters)
    if n_clusters == 0:
        raise ValueError("no rows to bootstrap")
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes, minlength=n_clusters)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    members = [order[s : s + c] for s, c in zip(starts, counts, strict=True)]
    reps = np.empty(n_boot, dtype=np.float64)
    for b, draw in enumerate(cluster_draws(n_clusters, n_boot, seed)):
        reps[b] = statistic(np.concatenate([members[k] for k in draw]))
    lo, hi = percentile_interval(reps, confidence)
    return BootstrapResult(
        estimate=float(statistic(np.arange(codes.size, dtype=np.int64))),
        low=lo,
        high=hi,
        confidence=confidence,
        n_boot=n_boot,
        n_clusters=n_clusters,
        n_rows=int(codes.size),
        replicates=reps,
    )


def bootstrap_ci(
    values: npt.ArrayLike,
    clusters: Sequence[Any] | npt.ArrayLike,
    statistic: Literal["mean", "median"] | Callable[[FloatArray], float] = "mean",
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int | None = 0,
) -> BootstrapResult:
    """95 % (by default) cluster-bootstrap interval of a statistic of per-row ``values [n_rows]``.

    Rows whose value is not finite (nan: e.g. HD95 of a frame with one empty mask) are
    dropped first. ``"mean"`` is fully vectorised (per-cluster sums and counts: the
    replicate is the mean over all rows of the drawn participants); ``"median"`` and
    callables go through :func:`bootstrap_indices`.
    """
    _check(n_boot, confidence)
    if isinstance(statistic, str) and statistic not in ("mean", "median"):
        raise ValueError(f"statistic must be 'mean', 'median' or a callable, got {statistic!r}")
    vals = np.asarray(values, dtype=np.float64).ravel()
    cl = np.asarray(clusters)
    if cl.shape != vals.shape:
        raise ValueError(f"{cl.shape[0] if cl.ndim else 0} cluster ids for {vals.size} values")
    keep = np.isfinite(vals)
    vals, cl = vals[keep], cl[keep]
    if vals.size == 0:
        raise ValueError("no finite values to bootstrap")
    if statistic == "mean":
        codes, n_clusters = cluster_codes(cl)
        sums = np.bincount(codes, weights=vals, minlength=n_clusters)
        counts = np.bincount(codes, minlength=n_clusters).astype(np.float64)
        draws = cluster_draws(n_clusters, n_boot, seed)
        reps = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
        lo, hi = percentile_interval(reps, confidence)
        return BootstrapResult(
            estimate=float(vals.mean()),
            low=lo,
            high=hi,
            confidence=confidence,
            n_boot=n_boot,
            n_clusters=n_clusters,
            n_rows=int(vals.size),
            replicates=reps,
        )
    fn: Callable[[FloatArray], float] = (lambda v: float(np.median(v))) if statistic == "median" else statistic
    return bootstrap_indices(cl, lambda idx: fn(vals[idx]), n_boot, confidence, seed)
