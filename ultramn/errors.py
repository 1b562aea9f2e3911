"""Errors the user can fix: the CLI prints their message and exits with code 2."""


class UserInputError(Exception):
    """Bad input (a missing folder, an unreadable file, an invalid option value)."""
