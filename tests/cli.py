"""Run ``ultramn`` commands in the test process (so monkeypatches and fixtures apply)."""

from __future__ import annotations

import sys

import pytest


def run_ultramn(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """``ultramn ARGS``: (exit code, stderr). Output printed before the call is discarded."""
    from ultramn.cli import main

    monkeypatch.setattr(sys, "argv", ["ultramn", *args])
    capsys.readouterr()
    code: object = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code or 0
    assert isinstance(code, int), code
    return code, capsys.readouterr().err
