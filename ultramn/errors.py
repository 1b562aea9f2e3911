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
