"""A result's per-frame measurements as one CSV table (for a spreadsheet, R or pandas).

One row per frame, the columns :data:`FRAME_COLUMNS`; with a ``clip`` name first when rows of
several clips share one file (``ultramn batch``'s ``frames.csv``). Units are in the column
names: ``_px`` pixels (``csa_px`` px²), ``_mm`` millimetres (``csa_mm2`` mm²; empty without a
pixel spacing), ``time_s`` seconds from the first frame (empty without a frame rate).
Coordinates are the original frame's: x to the right, y down, pixel centres at whole numbers;
``bbox_*`` is ``[x0, y0, x1, y1)`` with the end exclusive. A frame without a reported nerve
has ``nerve_present`` 0 and its shape columns empty.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import IO, Any

from ultramn.contract import PLANES

FRAME_COLUMNS: tuple[str, ...] = (
    "frame",
    "time_s",
    "plane",
    "confidence",
    *(f"prob_{p}" for p in PLANES),
    "nerve_present",
    "csa_px",
    "csa_mm2",
    "centroid_x_px",
    "centroid_y_px",
    "centroid_x_mm",
    "centroid_y_mm",
    "bbox_x0",
    "bbox_y0",
    "bbox_x1",
    "bbox_y1",
    "perimeter_px",
    "perimeter_mm",
    "circularity",
    "flattening_ratio",
    "at_side",
    "off_track",
)


def _num(value: Any, digits: int = 4) -> float | int | str:
    """A finite number rounded to ``digits`` (ints kept), else ``""``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return ""
    if isinstance(value, int):
        return value
    return round(value, digits) if math.isfinite(value) else ""


def _flag(value: Any) -> int | str:
    return "" if value is None else int(bool(value))


def _pair(value: Any) -> tuple[Any, Any]:
    return (value[0], value[1]) if isinstance(value, Sequence) and len(value) == 2 else ("", "")


def frame_rows(result: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The rows of :data:`FRAME_COLUMNS` for every frame of a gateway result object."""
    fps = result.get("fps")
    rate = fps if isinstance(fps, int | float) and not isinstance(fps, bool) and fps > 0 else None
    for position, frame in enumerate(result.get("frames") or []):
        index = frame.get("index", position)
        probs = frame.get("plane_probs") or {}
        cx, cy = _pair(frame.get("centroid"))
        mx, my = _pair(frame.get("centroid_mm"))
        bbox = frame.get("bbox")
        box = list(bbox) if isinstance(bbox, Sequence) and len(bbox) == 4 else ["", "", "", ""]
        yield {
            "frame": index,
            "time_s": _num(index / rate) if rate else "",
            "plane": frame.get("plane") or "",
            "confidence": _num(frame.get("confidence")),
            **{f"prob_{p}": _num(probs.get(p)) for p in PLANES},
            "nerve_present": _flag(frame.get("nerve_present")),
            "csa_px": _num(frame.get("csa_px")),
            "csa_mm2": _num(frame.get("csa_mm2")),
            "centroid_x_px": _num(cx),
            "centroid_y_px": _num(cy),
            "centroid_x_mm": _num(mx),
            "centroid_y_mm": _num(my),
            "bbox_x0": _num(box[0]),
            "bbox_y0": _num(box[1]),
            "bbox_x1": _num(box[2]),
            "bbox_y1": _num(box[3]),
            "perimeter_px": _num(frame.get("perimeter_px")),
            "perimeter_mm": _num(frame.get("perimeter_mm")),
            "circularity": _num(frame.get("circularity")),
            "flattening_ratio": _num(frame.get("flattening_ratio")),
            "at_side": _flag(frame.get("at_side")),
            "off_track": _flag(frame.get("off_track")),
        }


class FrameTableWriter:
    """Writes the table to ``out`` a result at a time (the header at once).

    ``with_clip`` adds a first ``clip`` column, for one file of many clips.
    """

    def __init__(self, out: IO[str], with_clip: bool = False) -> None:
        self.with_clip = with_clip
        columns = ("clip", *FRAME_COLUMNS) if with_clip else FRAME_COLUMNS
        self._writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
        self._writer.writeheader()

    def write(self, result: Mapping[str, Any], clip: str = "") -> int:
        """Write the rows of ``result`` (its frames; ``clip`` names them); the row count."""
        n = 0
        for row in frame_rows(result):
            self._writer.writerow({"clip": clip, **row} if self.with_clip else row)
            n += 1
        return n


def frame_table_csv(result: Mapping[str, Any]) -> str:
    """One result's table as CSV text (:data:`FRAME_COLUMNS`)."""
    buf = io.StringIO()
    FrameTableWriter(buf).write(result)
    return buf.getvalue()
