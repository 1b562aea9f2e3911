"""Errors the user can fix: the CLI prints their message and exits with code 2."""

from __future__ import annotations

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


def check_stride(stride: int | None, option: str = "--stride") -> int | None:
    """``stride`` when it is ``None`` (the default) or in ``[1, T]`` frames (T: the contract's
    window length; the API's bounds), else :class:`UserInputError` naming ``option``."""
    from ultramn.contract import CONTRACT

    window = CONTRACT.window_frames
    if stride is not None and not 1 <= stride <= window:
        raise UserInputError(f"{option} must be in [1, {window}] frames (at most the window length), got {stride}")
    return stride
