"""Writing result files as strict JSON: NaN and infinity become ``null``, NumPy scalars plain numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np


def json_ready(value: Any) -> Any:
    """``value`` with non-finite floats as ``None``, NumPy scalars as Python ones, tuples as lists."""
    if isinstance(value, np.generic):
        return json_ready(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    return value


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` to ``path`` as indented strict JSON (any reader parses it, JavaScript's included)."""
    path.write_text(json.dumps(json_ready(obj), indent=2, allow_nan=False) + "\n")
