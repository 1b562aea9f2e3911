"""The ``ultramn`` console entry point: one command, one sub-command per job.

Each sub-command lives in :mod:`ultramn.commands` (one module per job, each with a
``register(app)`` function) and imports its heavy dependencies inside the command body,
so ``ultramn --help`` stays fast.
"""

from __future__ import annotations

import importlib
import os
import sys

# Intel MKL (torch's CPU BLAS) may take another code path for differently aligned buffers,
# so two identical runs in one process could differ in the last bits (seen as a rare failure
# of the exact-resume test). MKL reads this once, at its first call: set before torch loads.
os.environ.setdefault("MKL_CBWR", "AUTO")

import typer

from ultramn import __version__
from ultramn.errors import UserInputError

#: Modules under ``ultramn.commands`` whose ``register(app)`` adds sub-commands.
COMMAND_MODULES: tuple[str, ...] = (
    "synth",
    "importers",
    "split",
    "train",
    "evaluate",
    "compare",
    "triton",
    "analyze",
    "batch",
    "live",
)

#: Options whose value is a file or folder (``tests/core`` keeps this in step with the commands).
PATH_OPTIONS: frozenset[str] = frozenset(
    [
        "--checkpoint",
        "--config",
        "--data",
        "--dicoms",
        "--images",
        "--init",
        "--log-file",
        "--masks",
        "--out",
        "--preview",
        "--repository",
        "--videos",
        "-o",
    ]
)


def empty_path_argument(argv: list[str]) -> str | None:
    """The path option (or ``"a path argument"``) that ``argv`` gives an empty value, if any.

    An empty value is what an unset shell variable gives (``--out "$OUT"``); as a path it
    would silently mean the current folder, where ``synth`` and the importers write (and
    ``synth`` replaces an earlier synthetic set)."""
    for i, arg in enumerate(argv):
        name, eq, value = arg.partition("=")
        if eq and name in PATH_OPTIONS and not value:
            return name
        if arg != "":
            continue
        before = argv[i - 1] if i > 0 else ""
        if before in PATH_OPTIONS:
            return before
        if not before.startswith("-"):  # a positional: every command's positional argument is a path
            return "a path argument"
    return None


app = typer.Typer(
    name="ultramn",
    help="UltraMN: median-nerve ultrasound plane recognition and segmentation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"ultramn {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True, help="Print the version."),
) -> None:
    """UltraMN command line."""


for _name in COMMAND_MODULES:
    importlib.import_module(f"ultramn.commands.{_name}").register(app)


def main() -> None:
    """Run the CLI; a :class:`UserInputError` or an ``OSError`` (a path the user gave that
    cannot be read or written) becomes a message on stderr and exit code 2."""
    empty = empty_path_argument(sys.argv[1:])
    if empty is not None:
        typer.echo(f"error: {empty} is empty (an unset variable?); give a file or folder, '.' for the current one", err=True)
        sys.exit(2)
    try:
        # without standalone mode click *returns* the code of an Exit it caught (Ctrl-C becomes
        # Exit(130) in typer) instead of exiting: pass it on, or an interrupted run exits 0
        code = app(standalone_mode=False)
        if isinstance(code, int) and code != 0:
            if code == 130:
                typer.echo("interrupted", err=True)
            sys.exit(code)
    except UserInputError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except OSError as exc:  # a path that cannot be read or written (missing folder, a file where a folder should be, permissions)
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except Exception as exc:  # usage errors (missing option, unknown command) carry their exit code (2)
        if isinstance(exc, _usage_error_types()):
            exc.show()  # type: ignore[attr-defined]
            sys.exit(exc.exit_code)  # type: ignore[attr-defined]
        raise


def _usage_error_types() -> tuple[type[Exception], ...]:
    """Click's exception classes for usage errors (recent typer releases vendor click as ``typer._click``)."""
    import click

    types: list[type[Exception]] = [click.ClickException]
    try:
        from typer._click.exceptions import ClickException as VendoredClickException
    except ImportError:  # an older typer on the real click
        pass
    else:
        types.append(VendoredClickException)
    return tuple(types)


if __name__ == "__main__":
    main()
