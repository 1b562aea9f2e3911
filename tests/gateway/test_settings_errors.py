"""A bad ``ULTRAMN_*`` value under a plain ASGI server (the Dockerfile's uvicorn command) is a
clear message and exit 2, not a pydantic traceback from inside the server's import."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_bad_settings_under_uvicorn_are_one_line_each_and_exit_2(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "ULTRAMN_DATA_DIR": str(tmp_path / "data"),
        "ULTRAMN_STITCH_TEMPORAL_FILTER": "4",
        "ULTRAMN_WORKERS": "many",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "uvicorn", "gateway.main:app", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert any(line.startswith("error: invalid setting ULTRAMN_WORKERS: ") for line in lines), proc.stderr
    assert any(line.startswith("error: invalid setting ULTRAMN_STITCH_TEMPORAL_FILTER: ") and "odd" in line for line in lines)
