"""Participant-level, plane-stratified splits and the ``ultramn split`` command."""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from ultramn.contract import PLANES, SPLITS
from ultramn.data.manifest import ClipRecord, read_manifest, write_manifest
from ultramn.data.splits import SplitError, assign_splits, dominant_plane, validate_ratios


def _rec(clip_id: str, participant: str, plane: str = "") -> ClipRecord:
    return ClipRecord(
        clip_id=clip_id,
        participant_id=participant,
        side="",
        plane=plane,
        quality="",
        pixel_spacing_mm=None,
        fps=None,
        n_frames=1,
        height=8,
        width=8,
        split="",
        source="test",
        file=f"clips/{clip_id}.npz",
    )


def synthetic_records(n_participants: int = 40, clips_per_plane: int = 2) -> list[ClipRecord]:
    """Participants with clips of several planes each; the dominant plane rotates over participants."""
    records = []
    for p in range(n_participants):
        dominant = PLANES[p % len(PLANES)]
        planes = [dominant] * 3 + [PLANES[(p + 1) % len(PLANES)]] * (p % 2)
        for k, plane in enumerate(planes * clips_per_plane):
            records.append(_rec(f"p{p:03d}-c{k}", f"p{p:03d}", plane))
    return records


def _participant_splits(records: list[ClipRecord]) -> dict[str, set[str]]:
    seen: dict[str, set[str]] = defaultdict(set)
    for rec in records:
        seen[rec.participant_id].add(rec.split)
    return seen


def test_no_participant_crosses_splits_and_every_split_sees_every_plane() -> None:
    records = synthetic_records()
    out = assign_splits(records, (0.7, 0.15, 0.15), seed=3)
    assert [r.clip_id for r in out] == [r.clip_id for r in records]
    assert all(len(s) == 1 for s in _participant_splits(out).values())
    planes_per_split: dict[str, set[str]] = defaultdict(set)
    for rec in out:
        planes_per_split[rec.split].add(rec.plane)
    for split in SPLITS:
        assert planes_per_split[split] == set(PLANES), split
    counts = {s: len({r.participant_id for r in out if r.split == s}) for s in SPLITS}
    assert counts["train"] == 28 and counts["val"] == 6 and counts["test"] == 6
    # every participant's dominant plane is represented in each split
    dominant_by_split: dict[str, set[str]] = defaultdict(set)
    by_participant: dict[str, list[str]] = defaultdict(list)
    for rec in out:
        by_participant[rec.participant_id].append(rec.plane)
    for rec in out:
        dominant_by_split[rec.split].add(dominant_plane(by_participant[rec.participant_id]))
    assert all(dominant_by_split[s] == set(PLANES) for s in SPLITS)


def test_deterministic_and_seed_dependent() -> None:
    records = synthetic_records()
    a = assign_splits(records, seed=1)
    assert a == assign_splits(list(records), seed=1)
    assert a == sorted(assign_splits(list(reversed(records)), seed=1), key=lambda r: r.clip_id)
    assert a != assign_splits(records, seed=2)


@pytest.mark.parametrize(
    ("n", "expected"),
    [(1, {"train": 1}), (2, {"train": 2}), (3, {"train": 1, "val": 1, "test": 1})],
)
def test_tiny_datasets_keep_train_non_empty(n: int, expected: dict[str, int]) -> None:
    records = [_rec(f"c{i}", f"p{i}") for i in range(n)]
    out = assign_splits(records)
    counts = {s: sum(r.split == s for r in out) for s in SPLITS if any(r.split == s for r in out)}
    assert counts == expected


def test_many_small_strata_still_fill_val_and_test() -> None:
    records = [_rec(f"c{i}", f"p{i}", PLANES[i % 4]) for i in range(8)]  # 2 participants per plane
    out = assign_splits(records)
    assert {r.split for r in out} == set(SPLITS)
    assert sum(r.split == "train" for r in out) >= 5


def test_invalid_ratios() -> None:
    for bad in ((0.5, 0.5, 0.5), (1.2, -0.1, -0.1), (0.0, 0.5, 0.5), (0.5, 0.5)):
        with pytest.raises(SplitError):
            validate_ratios(bad)
    assert validate_ratios([0.8, 0.1, 0.1]) == (0.8, 0.1, 0.1)
    out = assign_splits(synthetic_records(10), (1.0, 0.0, 0.0))
    assert {r.split for r in out} == {"train"}


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ultramn", *args], capture_output=True, text=True, timeout=60)


def test_split_command_rewrites_manifest_and_validates(tmp_path: Path) -> None:
    write_manifest(tmp_path, synthetic_records(20))
    result = _cli("split", str(tmp_path), "--ratios", "0.6", "0.2", "0.2", "--seed", "5")
    assert result.returncode == 0, result.stderr
    assert "train" in result.stdout and "TW" in result.stdout
    records = read_manifest(tmp_path)
    assert {r.split for r in records} == set(SPLITS)
    assert all(len(s) == 1 for s in _participant_splits(records).values())
    assert records == assign_splits(records, (0.6, 0.2, 0.2), seed=5)

    bad = _cli("split", str(tmp_path), "--ratios", "0.6", "0.6", "0.2")
    assert bad.returncode == 2 and "sum to 1" in bad.stderr
    negative = _cli("split", str(tmp_path), "--ratios", "1.2", "-0.1", "-0.1")
    assert negative.returncode == 2
    negative_seed = _cli("split", str(tmp_path), "--seed", "-1")  # was accepted; synth and train refuse it
    assert negative_seed.returncode == 2 and "--seed" in negative_seed.stderr
    missing = _cli("split", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "no such dataset folder" in missing.stderr


def test_split_command_refuses_an_unreadable_manifest_with_exit_2(tmp_path: Path) -> None:
    """A binary file named manifest.csv, or a row cut short, gave a traceback and exit code 1."""
    (tmp_path / "manifest.csv").write_bytes(bytes(range(128, 256)) * 4)
    binary = _cli("split", str(tmp_path))
    assert binary.returncode == 2 and "not a UTF-8 CSV" in binary.stderr and "Traceback" not in binary.stderr, binary.stderr
    write_manifest(tmp_path, synthetic_records(2))
    lines = (tmp_path / "manifest.csv").read_text().splitlines()
    (tmp_path / "manifest.csv").write_text("\n".join([*lines, "p9-c0,p9,L"]) + "\n")
    short = _cli("split", str(tmp_path))
    assert short.returncode == 2 and f"manifest.csv:{len(lines) + 1}: the row has no cells" in short.stderr, short.stderr
    assert "Traceback" not in short.stderr


def test_a_cell_that_is_not_a_number_is_named_by_its_column(tmp_path: Path) -> None:
    """Was: ``manifest.csv:2: could not convert string to float: 'abc'`` (which of the numeric columns?)."""
    write_manifest(tmp_path, synthetic_records(2))
    text = (tmp_path / "manifest.csv").read_text()
    for column, bad, words in (("fps", "abc", "fps 'abc' is not a number"), ("n_frames", "7.5", "n_frames '7.5' is not a whole number")):
        header, *rows = text.splitlines()
        cells = rows[0].split(",")
        cells[header.split(",").index(column)] = bad
        (tmp_path / "manifest.csv").write_text("\n".join([header, ",".join(cells), *rows[1:]]) + "\n")
        result = _cli("split", str(tmp_path))
        assert result.returncode == 2 and f"manifest.csv:2: {words}" in result.stderr, result.stderr


def test_split_command_names_a_file_given_for_the_dataset_folder(tmp_path: Path) -> None:
    """``ultramn split DATA/manifest.csv`` said "no such dataset folder" of a file that exists."""
    write_manifest(tmp_path, synthetic_records(2))
    result = _cli("split", str(tmp_path / "manifest.csv"))
    assert result.returncode == 2 and "is a file, not a dataset folder; give its folder" in result.stderr, result.stderr
    assert str(tmp_path) in result.stderr
