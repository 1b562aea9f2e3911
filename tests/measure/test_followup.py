"""Follow-up across visits (``ultramn.measure.followup``) on hand-made clip results."""

from __future__ import annotations

from datetime import date

import pytest

from ultramn.measure.followup import ClipCsa, clip_csa, follow_up, parse_side, parse_visit, patient_problem, side_visits

D1, D2, D3 = date(2026, 1, 10), date(2026, 4, 10), date(2026, 7, 10)


def result(plane: str, median: float | None, unit: str = "mm2") -> dict[str, object]:
    return {"plane": plane, "csa": {"unit": unit, "median": median}}


def test_a_clip_counts_only_as_a_transverse_view_in_mm2_with_a_nerve() -> None:
    ok = clip_csa("a", D1, "R", "succeeded", result("TW", 12.5))
    assert ok == ClipCsa("a", D1, "R", "wrist", 12.5)
    assert clip_csa("b", D1, "R", "succeeded", result("TF", 7.0)) == ClipCsa("b", D1, "R", "forearm", 7.0)
    assert clip_csa("c", D1, "R", "succeeded", result("LW", 30.0)) == "longitudinal"
    assert clip_csa("d", D1, "R", "succeeded", result("TW", 640.0, unit="px")) == "no_pixel_spacing"
    assert clip_csa("e", D1, "R", "succeeded", result("TW", None)) == "no_nerve"
    assert clip_csa("f", D1, "R", "failed", None) == "not_succeeded"
    assert clip_csa("g", D1, "R", "running", None) == "not_succeeded"


def test_visits_average_repeated_clips_and_give_ratio_difference_and_changes() -> None:
    clips = [
        ClipCsa("w1a", D1, "R", "wrist", 14.0),
        ClipCsa("w1b", D1, "R", "wrist", 12.0),  # two measurements at the first visit: mean 13
        ClipCsa("f1", D1, "R", "forearm", 8.0),
        ClipCsa("w2", D2, "R", "wrist", 11.0),  # after treatment, no forearm clip
        ClipCsa("w3", D3, "R", "wrist", 10.4),
        ClipCsa("f3", D3, "R", "forearm", 8.0),
    ]
    first, second, third = side_visits(reversed(clips))  # oldest first whatever the input order
    assert first["visit"] == "2026-01-10"
    assert first["wrist"] == {
        "csa_mm2": 13.0,
        "n_clips": 2,
        "change_from_first_mm2": None,
        "change_from_first_pct": None,
        "change_from_previous_mm2": None,
        "analyses": ["w1b", "w1a"],
    }
    assert first["wrist_to_forearm_ratio"] == 1.625 and first["wrist_minus_forearm_mm2"] == 5.0
    assert second["forearm"] is None and second["wrist_to_forearm_ratio"] is None and second["wrist_minus_forearm_mm2"] is None
    assert second["wrist"]["change_from_first_mm2"] == -2.0 and second["wrist"]["change_from_first_pct"] == -15.4
    assert third["wrist"]["change_from_first_mm2"] == -2.6 and third["wrist"]["change_from_previous_mm2"] == pytest.approx(-0.6)
    # the forearm's previous measurement is the first visit's: the second had none
    assert third["forearm"]["change_from_previous_mm2"] == 0.0 and third["wrist_to_forearm_ratio"] == 1.3


def test_sides_are_kept_apart_and_left_out_clips_are_counted() -> None:
    clips = [ClipCsa("l", D1, "L", "wrist", 9.0), ClipCsa("u", D2, None, "wrist", 10.0), ClipCsa("r", D1, "R", "wrist", 15.0)]
    report = follow_up(clips, left_out={"longitudinal": 2, "no_pixel_spacing": 1})
    assert [s["side"] for s in report["sides"]] == ["L", "R", None]
    assert [s["visits"][0]["wrist"]["csa_mm2"] for s in report["sides"]] == [9.0, 15.0, 10.0]
    assert report["n_clips"] == 3
    assert report["left_out"] == {"longitudinal": 2, "no_pixel_spacing": 1, "no_nerve": 0, "not_succeeded": 0}
    assert follow_up([]) == {"sides": [], "n_clips": 0, "left_out": dict.fromkeys(report["left_out"], 0)}


@pytest.mark.parametrize("value", ["P-0042", "p.42", "A", "0042_R", "x" * 64])
def test_patient_references_that_are_pseudonyms_are_accepted(value: str) -> None:
    assert patient_problem(value) is None


@pytest.mark.parametrize("value", ["", "Jane Doe", "-P1", "P/1", "x" * 65, "P1\n", "Müller"])
def test_names_paths_and_long_or_empty_references_are_refused(value: str) -> None:
    assert patient_problem(value) is not None


def test_side_and_visit_are_parsed_one_way_for_uploads_batches_and_the_cli() -> None:
    assert [parse_side(s) for s in ("l", "R", "Left", " right ")] == ["L", "R", "L", "R"]
    with pytest.raises(ValueError, match="not one of L, R"):
        parse_side("x")
    today = date(2026, 6, 1)
    for text in ("2026-01-10", "20260110", "2026_01_10", "2026.01.10"):
        assert parse_visit(text, today) == date(2026, 1, 10)
    assert parse_visit("2026-06-02", today) == date(2026, 6, 2)  # tomorrow: another time zone's today
    with pytest.raises(ValueError, match="in the future"):
        parse_visit("2026-06-03", today)
    for bad in ("2026-02-30", "10/01/2026", "2026-1-10", ""):
        with pytest.raises(ValueError, match="is not a date YYYY-MM-DD"):
            parse_visit(bad, today)
