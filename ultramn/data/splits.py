"""Participant-level train/val/test splits, stratified by plane.

The rule (documented in docs/dataset.md):

1. All clips of one participant go to the same split (no participant crosses splits).
2. Each participant is put in a stratum: its dominant plane (the plane of most of its
   clips; ties go to the first in ``TW TF LW LF`` order; participants whose clips have no
   plane form the stratum ``""``).
3. Within each stratum (participants sorted by id, then shuffled with a generator seeded
   by ``seed`` and the stratum), the split sizes are ``floor(n * ratio)``; when the
   stratum has at least as many participants as there are splits with a non-zero ratio,
   each such split gets at least one of them (so every split sees every plane wherever
   that is possible).
4. The participants left over by rounding, over all strata, go one by one to the split
   furthest below its overall target ``ratio * n_participants`` (ties: train, val, test).
   So a tiny dataset still fills train first (1 participant: train; 2: train, train;
   3: one per split).

The result depends only on the records' participant ids and planes and on ``seed``.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Sequence

from ultramn.contract import PLANES, SPLITS
from ultramn.data.manifest import ClipRecord

DEFAULT_RATIOS: tuple[float, float, float] = (0.7, 0.15, 0.15)
_RATIO_TOLERANCE = 1e-6


class SplitError(ValueError):
    """Invalid split parameters (ratios that are negative or do not sum to 1)."""


def validate_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    """``ratios`` as a ``(train, val, test)`` triple; raises :class:`SplitError` if invalid."""
    values = tuple(float(r) for r in ratios)
    if len(values) != len(SPLITS):
        raise SplitError(f"give {len(SPLITS)} ratios (train val test), got {len(values)}")
    if any(not math.isfinite(r) or r < 0 for r in values):
        raise SplitError(f"ratios must be non-negative numbers, got {values}")
    if abs(sum(values) - 1.0) > _RATIO_TOLERANCE:
        raise SplitError(f"ratios must sum to 1, got {values} (sum {sum(values):.6g})")
    if values[0] <= 0:
        raise SplitError("the train ratio must be positive")
    return values[0], values[1], values[2]


def dominant_plane(planes: Sequence[str]) -> str:
    """The most frequent non-empty plane in ``planes`` (ties: ``PLANES`` order), or ``""``."""
    counts = Counter(p for p in planes if p)
    if not counts:
        return ""
    top = max(counts.values())
    return next(p for p in (*PLANES, *sorted(counts)) if counts.get(p) == top)


def _stratum_counts(n: int, ratios: tuple[float, ...]) -> list[int]:
    """Floors of ``n * ratio``, with at least one per non-zero split when ``n`` allows it."""
    counts = [math.floor(n * r + 1e-9) for r in ratios]
    nonzero = [i for i, r in enumerate(ratios) if r > 0]
    if n >= len(nonzero):
        for i in nonzero:
            if counts[i] == 0:
                counts[i] = 1
        while sum(counts) > n:  # forcing the minimum over-filled: take from the largest
            largest = max(range(len(counts)), key=lambda i: (counts[i], -i))
            counts[largest] -= 1
    return counts


def assign_participants(
    participant_planes: dict[str, list[str]],
    ratios: Sequence[float] = DEFAULT_RATIOS,
    seed: int = 0,
) -> dict[str, str]:
    """Map each participant id to a split name; ``participant_planes`` lists each one's clip planes."""
    r = validate_ratios(ratios)
    strata: dict[str, list[str]] = defaultdict(list)
    for pid in sorted(participant_planes):
        strata[dominant_plane(participant_planes[pid])].append(pid)
    n_total = len(participant_planes)
    assigned: dict[str, str] = {}
    totals = [0] * len(SPLITS)
    leftovers: list[str] = []
    for stratum in sorted(strata, key=lambda s: (PLANES.index(s) if s in PLANES else len(PLANES), s)):
        members = strata[stratum]
        random.Random(f"{seed}|{stratum}").shuffle(members)
        counts = _stratum_counts(len(members), r)
        pos = 0
        for split_index, count in enumerate(counts):
            for pid in members[pos : pos + count]:
                assigned[pid] = SPLITS[split_index]
            totals[split_index] += count
            pos += count
        leftovers.extend(members[pos:])
    for pid in leftovers:
        deficits = [r[i] * n_total - totals[i] for i in range(len(SPLITS))]
        best = max(range(len(SPLITS)), key=lambda i: (deficits[i] if r[i] > 0 else -math.inf, -i))
        assigned[pid] = SPLITS[best]
        totals[best] += 1
    return assigned


def assign_splits(
    records: list[ClipRecord],
    ratios: tuple[float, float, float] = DEFAULT_RATIOS,
    seed: int = 0,
) -> list[ClipRecord]:
    """``records`` (same order) with the ``split`` column assigned by participant; see the module doc."""
    planes: dict[str, list[str]] = defaultdict(list)
    for rec in records:
        planes[rec.participant_id].append(rec.plane)
    mapping = assign_participants(planes, ratios, seed)
    return [rec.with_split(mapping[rec.participant_id]) for rec in records]


def split_table(records: Sequence[ClipRecord]) -> dict[str, dict[str, int]]:
    """Clip counts ``{split: {plane or "-": n}}`` for printing."""
    table: dict[str, dict[str, int]] = {s: {} for s in (*SPLITS, "")}
    for rec in records:
        row = table[rec.split]
        key = rec.plane or "-"
        row[key] = row.get(key, 0) + 1
    return {s: row for s, row in table.items() if row or s}


def format_split_table(records: Sequence[ClipRecord]) -> str:
    """A plain-text table: clips per split x plane, plus participants per split."""
    table = split_table(records)
    columns = [p for p in (*PLANES, "-") if any(p in row for row in table.values())]
    participants: dict[str, set[str]] = defaultdict(set)
    for rec in records:
        participants[rec.split].add(rec.participant_id)
    header = ["split", *columns, "clips", "participants"]
    lines = ["  ".join(f"{h:>12}" for h in header)]
    for split, row in table.items():
        cells = [split or "(none)", *(str(row.get(c, 0)) for c in columns), str(sum(row.values())), str(len(participants[split]))]
        lines.append("  ".join(f"{c:>12}" for c in cells))
    return "\n".join(lines)
