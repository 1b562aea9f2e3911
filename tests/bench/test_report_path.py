"""The benchmarks' ``--out`` is checked when the options are parsed, not after the run."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from bench.report import report_path

ROOT = Path(__file__).resolve().parents[2]


def test_report_path_creates_its_folder_and_refuses_what_it_cannot_write(tmp_path: Path) -> None:
    out = report_path(str(tmp_path / "new" / "deeper" / "report.md"))
    assert out.parent.is_dir() and not out.exists()
    with pytest.raises(argparse.ArgumentTypeError, match="is a folder"):
        report_path(str(tmp_path))
    (tmp_path / "file").write_text("x")
    with pytest.raises(argparse.ArgumentTypeError, match="cannot create"):
        report_path(str(tmp_path / "file" / "report.md"))


@pytest.mark.parametrize("script", ["bench_model.py", "bench_triton.py", "bench_gateway.py", "bench_batch.py", "bench_memory.py"])
def test_a_benchmark_with_an_unwritable_out_stops_before_it_runs(script: str, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--out", str(tmp_path / "file" / "r.md")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2 and "argument --out: cannot create" in proc.stderr, proc.stderr
