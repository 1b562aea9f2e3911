"""Errors the user can fix: the CLI prints their message and exits with code 2."""

from __future__ import annotations

import tempfile
from pathlib import Path
from urllib.parse import urlsplit


class UserInputError(Exception):
    """Bad input (a missing folder, an unreadable file, an invalid option value)."""


def check_http_url(url: str, option: str) -> str:
    """``url`` when it is an ``http(s)://host[:port][/path]`` base URL, else :class:`UserInputError` naming ``option``."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise UserInputError(f"{option}: not a URL: {url!r} ({exc})") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserInputError(f"{option} must be an http:// or https:// URL such as http://localhost:8080, got {url!r}")
    return url


def check_host_port(address: str, option: str) -> str:
    """``address`` when it is ``HOST:PORT`` (after an optional ``grpc://``, ``http://`` or ``https://``,
    as the gRPC client takes it), else :class:`UserInputError` naming ``option``."""
    scheme, sep, target = address.partition("://")
    if not sep:
        scheme, target = "", address
    usage = f"{option} must be HOST:PORT (a gRPC address such as 127.0.0.1:8001), got {address!r}"
    if scheme not in ("", "grpc", "http", "https"):
        raise UserInputError(usage)
    try:
        parts = urlsplit(f"//{target.rstrip('/')}")
        port = parts.port
    except ValueError as exc:
        raise UserInputError(f"{usage} ({exc})") from exc
    if not parts.hostname or port is None or parts.path or parts.query or parts.fragment:
        raise UserInputError(usage)
    return address


def check_stride(stride: int | None, option: str = "--stride") -> int | None:
    """``stride`` when it is ``None`` (the default) or in ``[1, T]`` frames (T: the contract's
    window length; the API's bounds), else :class:`UserInputError` naming ``option``."""
    from ultramn.contract import CONTRACT

    window = CONTRACT.window_frames
    if stride is not None and not 1 <= stride <= window:
        raise UserInputError(f"{option} must be in [1, {window}] frames (at most the window length), got {stride}")
    return stride


def checkpoint_path_problem(path: Path) -> str | None:
    """Why ``path`` cannot be a checkpoint file (``"not found: PATH"``, or a folder given for
    the file), or ``None``; the reason reads after ``"checkpoint "``."""
    if path.is_dir():
        return f"{path} is a folder, not a checkpoint file (a training run's is {path / 'best.pt'})"
    if not path.is_file():
        return f"not found: {path}"
    return None


def folder_problem(path: Path) -> str | None:
    """Why ``path`` is not an existing folder to read (``"no such folder: PATH"``, or a file
    given for the folder), or ``None``; the reason reads after the option: ``f"--data: {reason}"``."""
    if path.is_dir():
        return None
    if path.exists():
        return f"{path} is a file, not a folder"
    return f"no such folder: {path}"


def out_path_problem(path: Path, folder: bool, example: str = "out.md") -> str | None:
    """Why ``path`` cannot be written as an output folder (``folder``) or file, or ``None``;
    the reason reads after the path: ``f"--out {path}: {reason}"``. ``example``: a file name
    the reason suggests inside a folder given for a file.

    Nothing is created: the path must not be the other kind, its nearest existing folder must
    take a file (a probe file, removed at once), and no file may stand where a folder is needed.
    """
    if path.exists() and path.is_dir() != folder:
        return "it is a file, not a folder" if folder else f"it is a folder; give a file name (e.g. {path / example})"
    existing = next(p for p in ((path,) if folder else ()) + tuple(path.parents) if p.exists())
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        return f"cannot write there ({exc.strerror or exc})"
    return None
