"""An empty path on the command line (an unset variable) is refused, not taken as the current folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ultramn.cli import PATH_OPTIONS, app, empty_path_argument


def _params() -> list[tuple[bool, bool, list[str]]]:
    """``(is_path, is_positional, option names)`` of every parameter of every command."""
    import typer.main

    found: list[tuple[bool, bool, list[str]]] = []

    def walk(command: Any) -> None:
        for sub in getattr(command, "commands", {}).values():
            walk(sub)
        for p in getattr(command, "params", []):
            names = [o for o in [*p.opts, *getattr(p, "secondary_opts", [])] if o.startswith("-")]
            found.append(("path" in repr(p.type_descriptor).lower(), not names, names))

    walk(typer.main.get_command(app))
    return found


def test_path_options_are_in_step_with_the_commands() -> None:
    params = _params()
    assert {n for is_path, _, names in params if is_path for n in names} == PATH_OPTIONS
    assert not {n for is_path, _, names in params if not is_path for n in names} & PATH_OPTIONS
    # a bare "" is refused as a path argument: every positional is a path, or compare's NAME=DIR
    assert sum(1 for is_path, positional, _ in params if positional and not is_path) == 1


def test_empty_values_are_found_only_where_a_path_is_expected() -> None:
    assert empty_path_argument(["synth", "-n", "1", "--out", ""]) == "--out"
    assert empty_path_argument(["evaluate", "--data", "d", "--out="]) == "--out"
    assert empty_path_argument(["split", ""]) == "a path argument"
    assert empty_path_argument(["import", "images", "--images", "i", "--masks", "i", "--mask-suffix", "", "--out", "o"]) is None
    assert empty_path_argument(["analyze", "c.mp4", "--api-key", ""]) is None


def test_synth_with_an_empty_out_writes_nothing_in_the_current_folder(tmp_path: Path) -> None:
    env = {**os.environ, "OUT": ""}
    proc = subprocess.run(
        [sys.executable, "-m", "ultramn", "synth", "-n", "1", "--frames", "2", "--size", "48", "48", "--out", env["OUT"]],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2 and proc.stderr.startswith("error: --out is empty"), proc.stderr
    assert not list(tmp_path.iterdir())  # was: manifest.csv and clips/ written here


@pytest.mark.parametrize("argv", [["split", "."], ["synth", "--out", "."]])
def test_the_current_folder_can_still_be_named(argv: list[str]) -> None:
    assert empty_path_argument(argv) is None
