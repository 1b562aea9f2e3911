"""Evaluation metrics: segmentation (per frame), CSA, temporal stability, planes, tables.

Masks are ``bool/uint8 [H, W]`` (foreground != 0; float masks thresholded at 0.5); pixel
spacing is mm/px, one number or ``(dy, dx)``; without it distances are in px and areas
in px².

Segmentation conventions:

- **Dice** ``2|P∩G|/(|P|+|G|)``, **IoU** ``|P∩G|/|P∪G|``.
- **Surface distances**: boundary pixels are the foreground pixels with a background
  4-neighbour (``mask & ~erode(mask)``, the image border counting as background, as in
  medpy). For every boundary pixel of one mask, the Euclidean distance (``distance_transform_edt``
  with ``sampling = spacing``) to the nearest boundary pixel of the other mask.
  **HD95** = max of the two directed 95th percentiles (MONAI's convention); **HD** = the max
  distance; **ASSD** = mean over the union of both directed distance sets (medpy's ``assd``
  instead averages the two directed means; the two agree when both boundaries have as many pixels).
- **Empty masks** (``case``): both empty -> Dice = IoU = 1, HD95 = HD = ASSD = 0
  (``"both_empty"``, a true negative frame). One empty -> Dice = IoU = 0 and the distances
  are undefined: ``nan`` by default, or ``empty_distance_mm`` when set in
  :class:`SegmentationConfig` (``"pred_empty"`` = missed nerve, ``"gt_empty"`` = false
  detection). :func:`summarize_segmentation` averages the finite values and counts the cases,
  so a mean of HD95/ASSD covers the frames with a nerve in both masks *and* the frames empty in
  both (scored 0), never the frames empty in one; :func:`detection_counts` gives how many
  frames were missed or falsely detected, with their denominators.
- **CSA**: mask pixel count × ``dy·dx`` (mm²); absolute error ``|A_pred - A_gt|``,
  signed error ``A_pred - A_gt``, relative error ``|A_pred - A_gt| / A_gt`` (nan when the
  ground truth is empty).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi

from ultramn.contract import PLANES
from ultramn.measure.contour import as_bool_mask
from ultramn.measure.spacing import Spacing, normalize_spacing

FloatArray = npt.NDArray[np.float64]
Case = Literal["both_present", "both_empty", "pred_empty", "gt_empty"]
#: Every :data:`Case`, in that order.
CASES: tuple[str, ...] = get_args(Case)


@dataclass(frozen=True)
class SegmentationConfig:
    """``empty_distance_mm``: HD95/HD/ASSD reported when exactly one mask is empty
    (``None`` -> ``nan``, left out of averages and counted instead). In px without spacing."""

    empty_distance_mm: float | None = None


DEFAULT_SEGMENTATION_CONFIG = SegmentationConfig()


def _pair(pred: npt.ArrayLike, gt: npt.ArrayLike) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    p, g = as_bool_mask(pred), as_bool_mask(gt)
    if p.shape != g.shape:
        raise ValueError(f"prediction {p.shape} and ground truth {g.shape} differ in shape")
    return p, g


def dice(pred: npt.ArrayLike, gt: npt.ArrayLike) -> float:
    """Dice coefficient of two masks ``[H, W]``; 1.0 when both are empty."""
    p, g = _pair(pred, gt)
    denom = int(p.sum()) + int(g.sum())
    return 1.0 if denom == 0 else 2.0 * int((p & g).sum()) / denom


def iou(pred: npt.ArrayLike, gt: npt.ArrayLike) -> float:
    """Intersection over union of two masks ``[H, W]``; 1.0 when both are empty."""
    p, g = _pair(pred, gt)
    union = int((p | g).sum())
    return 1.0 if union == 0 else int((p & g).sum()) / union


def boundary(mask: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """Boundary pixels ``bool [H, W]``: foreground with a background 4-neighbour (border = background)."""
    m = as_bool_mask(mask)
    return np.asarray(m & ~ndi.binary_erosion(m, structure=ndi.generate_binary_structure(2, 1), border_value=0))


def directed_surface_distances(pred: npt.ArrayLike, gt: npt.ArrayLike, spacing: Spacing = None) -> tuple[FloatArray, FloatArray]:
    """``(d_pred_to_gt, d_gt_to_pred)``: per-boundary-pixel distances (mm, or px without spacing).

    Both masks must be non-empty.
    """
    p, g = _pair(pred, gt)
    if not p.any() or not g.any():
        raise ValueError("surface distances need two non-empty masks")
    sp = normalize_spacing(spacing) or (1.0, 1.0)
    bp, bg = boundary(p), boundary(g)
    dist_to_g = ndi.distance_transform_edt(~bg, sampling=sp)
    dist_to_p = ndi.distance_transform_edt(~bp, sampling=sp)
    return np.asarray(dist_to_g[bp], dtype=np.float64), np.asarray(dist_to_p[bg], dtype=np.float64)


@dataclass(frozen=True)
class SurfaceDistances:
    """HD95, HD (max) and ASSD, in mm (px without spacing)."""

    hd95: float
    hd: float
    assd: float


def surface_distances(
    pred: npt.ArrayLike,
    gt: npt.ArrayLike,
    spacing: Spacing = None,
    config: SegmentationConfig = DEFAULT_SEGMENTATION_CONFIG,
) -> SurfaceDistances:
    """HD95/HD/ASSD with the empty-mask conventions of the module docstring."""
    p, g = _pair(pred, gt)
    if not p.any() and not g.any():
        return SurfaceDistances(0.0, 0.0, 0.0)
    if not p.any() or not g.any():
        v = math.nan if config.empty_distance_mm is None else float(config.empty_distance_mm)
        return SurfaceDistances(v, v, v)
    d_pg, d_gp = directed_surface_distances(p, g, spacing)
    both = np.concatenate([d_pg, d_gp])
    return SurfaceDistances(
        hd95=float(max(np.percentile(d_pg, 95), np.percentile(d_gp, 95))),
        hd=float(both.max()),
        assd=float(both.mean()),
    )


def hd95(pred: npt.ArrayLike, gt: npt.ArrayLike, spacing: Spacing = None) -> float:
    """95th-percentile Hausdorff distance (mm; px without spacing; nan if one mask is empty)."""
    return surface_distances(pred, gt, spacing).hd95


def assd(pred: npt.ArrayLike, gt: npt.ArrayLike, spacing: Spacing = None) -> float:
    """Average symmetric surface distance (mm; px without spacing; nan if one mask is empty)."""
    return surface_distances(pred, gt, spacing).assd


def mask_area(mask: npt.ArrayLike, spacing: Spacing = None) -> float:
    """Mask area: pixel count × ``dy·dx`` (mm²), or the pixel count without spacing."""
    sp = normalize_spacing(spacing)
    n = float(as_bool_mask(mask).sum())
    return n * sp[0] * sp[1] if sp is not None else n


@dataclass(frozen=True)
class FrameSegmentationMetrics:
    """Per-frame segmentation metrics; distances in mm and areas in mm² (px / px² without spacing)."""

    case: Case
    dice: float
    iou: float
    hd95: float
    hd: float
    assd: float
    csa_pred: float
    csa_gt: float
    csa_error: float
    csa_abs_error: float
    csa_rel_error: float

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (nan kept as float nan; see :func:`summarize_segmentation`)."""
        return asdict(self)


def frame_segmentation_metrics(
    pred: npt.ArrayLike,
    gt: npt.ArrayLike,
    spacing: Spacing = None,
    config: SegmentationConfig = DEFAULT_SEGMENTATION_CONFIG,
) -> FrameSegmentationMetrics:
    """Dice, IoU, HD95, HD, ASSD and CSA errors of one frame ``[H, W]``."""
    p, g = _pair(pred, gt)
    case = case_of(bool(p.any()), bool(g.any()))
    sd = surface_distances(p, g, spacing, config)
    a_p, a_g = mask_area(p, spacing), mask_area(g, spacing)
    err = a_p - a_g
    return FrameSegmentationMetrics(
        case=case,
        dice=dice(p, g),
        iou=iou(p, g),
        hd95=sd.hd95,
        hd=sd.hd,
        assd=sd.assd,
        csa_pred=a_p,
        csa_gt=a_g,
        csa_error=err,
        csa_abs_error=abs(err),
        csa_rel_error=abs(err) / a_g if a_g > 0 else math.nan,
    )


def clip_segmentation_metrics(
    preds: npt.ArrayLike,
    gts: npt.ArrayLike,
    spacing: Spacing = None,
    config: SegmentationConfig = DEFAULT_SEGMENTATION_CONFIG,
) -> list[FrameSegmentationMetrics]:
    """:func:`frame_segmentation_metrics` for every frame of ``[N, H, W]`` mask stacks."""
    p, g = np.asarray(preds), np.asarray(gts)
    if p.ndim != 3 or p.shape != g.shape:
        raise ValueError(f"expected two [N, H, W] stacks of equal shape, got {p.shape} and {g.shape}")
    return [frame_segmentation_metrics(a, b, spacing, config) for a, b in zip(p, g, strict=True)]


def summarize_segmentation(frames: Sequence[FrameSegmentationMetrics]) -> dict[str, float | int]:
    """Mean of every metric over its finite values, plus the count of each empty-mask case.

    Keys: ``n``, ``n_both_present``, ``n_both_empty``, ``n_pred_empty``, ``n_gt_empty``,
    ``dice``, ``iou``, ``hd95``, ``hd``, ``assd``, ``csa_abs_error``, ``csa_rel_error``
    (``nan`` when no value is finite).
    """
    out: dict[str, float | int] = {"n": len(frames)}
    for case in CASES:
        out[f"n_{case}"] = sum(1 for f in frames if f.case == case)
    for key in ("dice", "iou", "hd95", "hd", "assd", "csa_abs_error", "csa_rel_error"):
        out[key] = _finite_mean([getattr(f, key) for f in frames])
    return out


def case_of(pred_present: bool, gt_present: bool) -> Case:
    """The :data:`Case` of a frame from whether the prediction and the truth have a nerve."""
    if pred_present:
        return "both_present" if gt_present else "gt_empty"
    return "pred_empty" if gt_present else "both_empty"


def detection_counts(cases: Iterable[str]) -> dict[str, int | float | None]:
    """Frame-level detection figures from per-frame cases (:data:`Case`; counts are frames).

    - ``truth_nerve_frames``: frames whose truth has a nerve (``both_present`` + ``pred_empty``);
      ``missed``: those of them with no predicted nerve (``pred_empty``);
      ``missed_rate = missed / truth_nerve_frames``.
    - ``truth_empty_frames``: frames whose truth has none (``both_empty`` + ``gt_empty``);
      ``false_detections``: those of them with a predicted nerve (``gt_empty``);
      ``false_detection_rate = false_detections / truth_empty_frames``.

    A rate is ``None`` when its denominator is 0.
    """
    counts = dict.fromkeys(CASES, 0)
    for c in cases:
        if c not in counts:
            raise ValueError(f"unknown case {c!r}; expected one of {list(counts)}")
        counts[c] += 1
    nerve = counts["both_present"] + counts["pred_empty"]
    empty = counts["both_empty"] + counts["gt_empty"]
    return {
        "truth_nerve_frames": nerve,
        "missed": counts["pred_empty"],
        "missed_rate": counts["pred_empty"] / nerve if nerve else None,
        "truth_empty_frames": empty,
        "false_detections": counts["gt_empty"],
        "false_detection_rate": counts["gt_empty"] / empty if empty else None,
    }


def _finite_values(values: Iterable[Any]) -> FloatArray:
    arr = np.array([math.nan if v is None else float(v) for v in values], dtype=np.float64)
    return arr[np.isfinite(arr)]


def _finite_mean(values: Iterable[Any]) -> float:
    arr = _finite_values(values)
    return float(arr.mean()) if arr.size else math.nan


def csa_series(masks: npt.ArrayLike, spacing: Spacing = None) -> FloatArray:
    """Per-frame mask areas ``float64 [N]`` (mm², px without spacing) of a stack ``[N, H, W]``."""
    arr = np.asarray(masks)
    if arr.ndim != 3:
        raise ValueError(f"masks must be [N, H, W], got {arr.shape}")
    return np.array([mask_area(m, spacing) for m in arr], dtype=np.float64)


def mean_abs_delta(series: npt.ArrayLike) -> float:
    """Mean ``|x[t+1] - x[t]|`` over adjacent pairs where both are finite (nan if there is none)."""
    x = np.asarray(series, dtype=np.float64).ravel()
    if x.size < 2:
        return math.nan
    d = np.diff(x)
    d = d[np.isfinite(d)]
    return float(np.abs(d).mean()) if d.size else math.nan


def temporal_stability(csa_pred: npt.ArrayLike, csa_gt: npt.ArrayLike) -> dict[str, float]:
    """Frame-to-frame CSA jitter of a clip (units of the inputs: mm² or px).

    ``pred`` / ``gt``: mean ``|ΔCSA|`` between adjacent frames; ``difference = pred - gt``
    (> 0: the prediction flickers more than the annotation). An empty frame has area 0
    (:func:`csa_series`), so a frame where the nerve is missed counts as two jumps: a dropout
    is flicker too.
    """
    p = mean_abs_delta(csa_pred)
    g = mean_abs_delta(csa_gt)
    return {"pred": p, "gt": g, "difference": p - g}


@dataclass(frozen=True)
class PlaneMetrics:
    """Plane classification figures; ``None`` where undefined (no labelled frame / no such plane).

    ``confusion[i][j]`` counts frames (or clips) of true plane ``labels[i]`` predicted as
    ``labels[j]``. ``macro_f1`` averages per-plane F1 over the planes that occur in the truth
    or in the predictions (a plane predicted but never true scores F1 = 0).
    """

    labels: tuple[str, ...]
    n: int
    n_unlabelled: int
    accuracy: float | None
    macro_f1: float | None
    confusion: tuple[tuple[int, ...], ...]
    recall: dict[str, float | None]
    precision: dict[str, float | None]
    f1: dict[str, float | None]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict."""
        d = asdict(self)
        d["labels"] = list(self.labels)
        d["confusion"] = [list(r) for r in self.confusion]
        return d


def confusion_matrix(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str] = PLANES) -> npt.NDArray[np.int64]:
    """``int64 [L, L]``: rows true plane, columns predicted plane (order ``labels``)."""
    index = {lab: i for i, lab in enumerate(labels)}
    cm = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for t, p in zip(y_true, y_pred, strict=True):
        if t not in index or p not in index:
            raise ValueError(f"unknown plane label in ({t!r}, {p!r}); expected one of {list(labels)}")
        cm[index[t], index[p]] += 1
    return cm


def plane_metrics(y_true: Sequence[str | None], y_pred: Sequence[str], labels: Sequence[str] = PLANES) -> PlaneMetrics:
    """Accuracy, macro-F1, confusion matrix, per-plane recall/precision/F1.

    ``y_true`` entries may be ``None`` (unlabelled): those pairs are left out and counted in
    ``n_unlabelled``. With no labelled pair every figure is ``None``.
    """
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} labels for {len(y_pred)} predictions")
    pairs = [(t, p) for t, p in zip(y_true, y_pred, strict=True) if t is not None]
    labels = tuple(labels)
    cm = confusion_matrix([t for t, _ in pairs], [p for _, p in pairs], labels)
    n = int(cm.sum())
    support, predicted, tp = cm.sum(axis=1), cm.sum(axis=0), np.diag(cm)
    recall: dict[str, float | None] = {}
    precision: dict[str, float | None] = {}
    f1: dict[str, float | None] = {}
    for i, lab in enumerate(labels):
        recall[lab] = float(tp[i] / support[i]) if support[i] else None
        precision[lab] = float(tp[i] / predicted[i]) if predicted[i] else None
        denom = support[i] + predicted[i]
        f1[lab] = float(2 * tp[i] / denom) if denom else None
    scored = [v for v in f1.values() if v is not None]
    return PlaneMetrics(
        labels=labels,
        n=n,
        n_unlabelled=len(y_true) - len(pairs),
        accuracy=float(tp.sum() / n) if n else None,
        macro_f1=float(np.mean(scored)) if n and scored else None,
        confusion=tuple(tuple(int(v) for v in row) for row in cm),
        recall=recall,
        precision=precision,
        f1=f1,
    )


def stratify(
    records: Sequence[Mapping[str, Any]],
    by: str | Sequence[str],
    metrics: Sequence[str],
    include_all: bool = True,
) -> list[dict[str, Any]]:
    """Aggregate a table of per-frame or per-clip records by group.

    ``records``: rows such as ``{"plane": "TW", "quality": "good", "dice": 0.91, ...}``;
    ``by``: one key or several (e.g. ``"plane"``, ``"quality"``, ``("plane", "quality")``);
    ``metrics``: the numeric keys to aggregate. Returns one row per group (sorted; a
    missing key groups as ``None``), plus an overall row with every ``by`` key set to
    ``"all"`` first when ``include_all``. Each row: the group keys, ``n`` (records), and per
    metric ``{m}_mean``, ``{m}_median`` over finite values and ``{m}_n`` (their count);
    ``None`` when a metric has no finite value in the group.
    """
    keys = (by,) if isinstance(by, str) else tuple(by)
    groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for rec in records:
        groups.setdefault(tuple(rec.get(k) for k in keys), []).append(rec)
    ordered = sorted(groups.items(), key=lambda kv: tuple((v is None, str(v)) for v in kv[0]))
    rows: list[dict[str, Any]] = []
    if include_all:
        rows.append(_aggregate_row(dict.fromkeys(keys, "all"), records, metrics))
    for key, recs in ordered:
        rows.append(_aggregate_row(dict(zip(keys, key, strict=True)), recs, metrics))
    return rows


def _aggregate_row(head: dict[str, Any], recs: Sequence[Mapping[str, Any]], metrics: Sequence[str]) -> dict[str, Any]:
    row: dict[str, Any] = {**head, "n": len(recs)}
    for m in metrics:
        vals = _finite_values(r.get(m) for r in recs)
        row[f"{m}_mean"] = float(vals.mean()) if vals.size else None
        row[f"{m}_median"] = float(np.median(vals)) if vals.size else None
        row[f"{m}_n"] = int(vals.size)
    return row


def by_plane(records: Sequence[Mapping[str, Any]], metrics: Sequence[str], key: str = "plane") -> list[dict[str, Any]]:
    """:func:`stratify` by the plane column."""
    return stratify(records, key, metrics)


def by_quality(records: Sequence[Mapping[str, Any]], metrics: Sequence[str], key: str = "quality") -> list[dict[str, Any]]:
    """:func:`stratify` by the quality-grade column (``good``/``fair``/``poor``)."""
    return stratify(records, key, metrics)
