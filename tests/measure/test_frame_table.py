"""The per-frame CSV table (``ultramn.measure.frame_table``) from hand-made result objects."""

from __future__ import annotations

import csv
import io

from ultramn.measure.frame_table import FRAME_COLUMNS, FrameTableWriter, frame_table_csv

NERVE = {
    "index": 0,
    "plane_probs": {"TW": 0.91, "TF": 0.07, "LW": 0.01, "LF": 0.01},
    "plane": "TW",
    "confidence": 0.91,
    "nerve_present": True,
    "csa_px": 464,
    "csa_mm2": 8.72384,
    "centroid": [145.13579, 31.0172],
    "centroid_mm": [19.9007, 4.253],
    "bbox": [124, 24, 167, 38],
    "at_side": False,
    "off_track": True,
    "perimeter_px": 96.6867,
    "perimeter_mm": 13.2574,
    "circularity": 0.6189,
    "flattening_ratio": 3.2328,
    "contour": [[1.5, 2.0]],
}
EMPTY = {
    "index": 1,
    "plane_probs": {"TW": 0.6, "TF": 0.4, "LW": 0.0, "LF": 0.0},
    "plane": "TW",
    "confidence": 0.6,
    "nerve_present": False,
    "csa_px": 0,
    "csa_mm2": None,
    "centroid": None,
    "centroid_mm": None,
    "bbox": None,
    "at_side": None,
    "off_track": None,
    "perimeter_px": None,
    "perimeter_mm": None,
    "circularity": None,
    "flattening_ratio": None,
    "contour": [],
}


def read(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_one_row_per_frame_with_units_in_the_column_names() -> None:
    text = frame_table_csv({"fps": 20.0, "frames": [NERVE, EMPTY]})
    assert text.splitlines()[0] == ",".join(FRAME_COLUMNS)
    nerve, empty = read(text)
    assert nerve["frame"] == "0" and nerve["time_s"] == "0.0" and empty["time_s"] == "0.05"
    assert (nerve["plane"], nerve["confidence"], nerve["prob_TW"], nerve["prob_LF"]) == ("TW", "0.91", "0.91", "0.01")
    assert (nerve["csa_px"], nerve["csa_mm2"]) == ("464", "8.7238")  # rounded to 4 digits
    assert (nerve["centroid_x_px"], nerve["centroid_y_px"], nerve["centroid_x_mm"]) == ("145.1358", "31.0172", "19.9007")
    assert [nerve[f"bbox_{k}"] for k in ("x0", "y0", "x1", "y1")] == ["124", "24", "167", "38"]
    assert (nerve["nerve_present"], nerve["at_side"], nerve["off_track"]) == ("1", "0", "1")
    assert "contour" not in nerve
    # a frame without a nerve: 0 present, its area 0 px², every shape column empty
    assert (empty["nerve_present"], empty["csa_px"]) == ("0", "0")
    shape = ("csa_mm2", "centroid_x_px", "centroid_x_mm", "bbox_x0", "perimeter_px", "circularity", "at_side", "off_track")
    assert all(empty[k] == "" for k in shape)


def test_without_a_frame_rate_or_spacing_the_columns_are_empty_not_zero() -> None:
    no_spacing = {**NERVE, "csa_mm2": None, "centroid_mm": None, "perimeter_mm": None}
    (row,) = read(frame_table_csv({"fps": None, "frames": [no_spacing]}))
    assert row["time_s"] == "" and row["csa_mm2"] == "" and row["centroid_x_mm"] == "" and row["perimeter_mm"] == ""
    assert row["csa_px"] == "464"
    assert read(frame_table_csv({"fps": float("nan"), "frames": [NERVE]}))[0]["time_s"] == ""
    assert frame_table_csv({"frames": []}) == ",".join(FRAME_COLUMNS) + "\n"  # a failed clip: the header only


def test_many_clips_share_one_table_with_a_clip_column() -> None:
    buf = io.StringIO()
    table = FrameTableWriter(buf, with_clip=True)
    n = table.write({"fps": 10, "frames": [NERVE, EMPTY]}, clip="a.mp4") + table.write({"fps": 10, "frames": [NERVE]}, clip="b.dcm")
    rows = read(buf.getvalue())
    assert n == 3 and [r["clip"] for r in rows] == ["a.mp4", "a.mp4", "b.dcm"]
    assert list(rows[0]) == ["clip", *FRAME_COLUMNS]
    assert [r["frame"] for r in rows] == ["0", "1", "0"]
