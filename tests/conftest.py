"""Session set-up shared by every test package."""

from __future__ import annotations

import os

# before any test imports torch: bit-reproducible MKL results (see ultramn/cli.py)
os.environ.setdefault("MKL_CBWR", "AUTO")
