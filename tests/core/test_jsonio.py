"""Result files are strict JSON: NaN and infinity become null."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ultramn.jsonio import write_json


def _strict(text: str) -> object:
    def refuse(name: str) -> None:
        raise ValueError(f"not strict JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_numbers_become_null_and_numpy_scalars_plain(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    write_json(path, {"acc": math.nan, "loss": np.float32(0.5), "n": np.int64(3), "edges": (math.inf, -math.inf, 1.0), 2: "key"})
    assert _strict(path.read_text()) == {"acc": None, "loss": 0.5, "n": 3, "edges": [None, None, 1.0], "2": "key"}
