"""`ultramn batch INPUT --out DIR`: analyse every clip of a folder, archive or DICOMDIR.

INPUT: a folder (searched recursively; an output folder inside it is left out), a
ZIP/TAR(.gz/.bz2/.xz) archive of clips (extracted safely under ``DIR/.work`` for the run,
removed after it), a DICOMDIR, or one clip file. The clips go to a running gateway
(``--gateway URL``, the default) or straight to Triton (``--triton HOST:PORT``, gRPC; needs
the ``serve`` extra; takes precedence over ``--gateway``), ``--concurrency`` at a time.
Output in DIR: ``results.jsonl`` (one line per clip), ``summary.csv`` (one row per clip),
``frames.csv`` (one row per frame), ``masks/<clip>.npz``, with ``--patient-pattern``
``followup.json`` (each patient's CSA across visits, :mod:`ultramn.batch.patients`) and the
resumable ``state.jsonl``: a re-run skips the clips already
done (same content, same options, same model name and version served, masks present) and
retries the failed ones; ``--redo`` analyses every clip again (new weights under the same
name and version, other ``ULTRAMN_*`` settings), and the same command resumes it after an
interruption. One run at a time per DIR (``DIR/.batch-lock``): a second is refused with
exit code 2.

Ctrl-C, SIGTERM and SIGHUP stop a run cleanly: the clips in flight are dropped, the outputs
are written from the journal and a re-run goes on from there (exit 130, 143, 129). A back
end that goes away mid-run stops it the same way (exit 1).

Exit codes: 0 every clip succeeded; 1 some clips failed (each is in the outputs with its
error) or the gateway/Triton is unreachable (at the start, or in the middle: the batch
stops and a re-run resumes it); 2 bad input (missing INPUT, an unsafe or unreadable
archive, a file that is neither a clip nor an archive, no clips, bad options, an API key
the gateway refuses, an output folder another run holds).
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer

if TYPE_CHECKING:
    from ultramn.batch.patients import PatientRules
    from ultramn.batch.runner import BatchReport
    from ultramn.batch.types import Analyzer, ModelId

DEFAULT_GATEWAY = "http://127.0.0.1:8080"
WORK_DIR = ".work"


def register(app: typer.Typer) -> None:
    """Add ``ultramn batch`` to ``app``."""

    @app.command("batch")
    def batch(
        ctx: typer.Context,
        source: Path = typer.Argument(..., metavar="INPUT", help="Folder, ZIP/TAR archive or DICOMDIR of clips."),
        out: Path = typer.Option(..., "--out", help="Output folder (results.jsonl, summary.csv, masks/, state.jsonl)."),
        gateway: str | None = typer.Option(
            None, "--gateway", envvar="ULTRAMN_GATEWAY", help=f"Gateway base URL (default {DEFAULT_GATEWAY}; ignored with --triton)."
        ),
        triton: str | None = typer.Option(None, "--triton", help="Triton gRPC HOST:PORT: analyse in-process, without a gateway."),
        concurrency: int = typer.Option(4, "--concurrency", min=1, max=64, help="Clips in flight at once."),
        api_key: str | None = typer.Option(None, "--api-key", envvar="ULTRAMN_API_KEY", help="X-API-Key for the gateway."),
        pixel_spacing: float | None = typer.Option(None, "--pixel-spacing", help="Pixel size in mm for every clip (overrides the files')."),
        stride: int | None = typer.Option(None, "--stride", help="Frames between window starts."),
        quiet: bool = typer.Option(
            False, "--quiet", help="No progress bars (checking archive, extracting, checking clips, batch) and no clip count."
        ),
        redo: bool = typer.Option(
            False, "--redo", help="Analyse every clip again, also those done (new weights, other gateway settings); resumable."
        ),
        patient_pattern: str | None = typer.Option(
            None,
            "--patient-pattern",
            help="Regex searched in each clip's path in INPUT; its first group is the patient's pseudonym "
            "(e.g. '^(P\\d+)/'): followup.json, summary.csv and the gateway's follow-up.",
        ),
        side_pattern: str | None = typer.Option(
            None, "--side-pattern", help="Regex whose first group is the side (L, R, left, right), e.g. '/([LR])_'."
        ),
        visit_pattern: str | None = typer.Option(
            None, "--visit-pattern", help="Regex whose first group is the visit's date (YYYY-MM-DD or YYYYMMDD), e.g. '/(\\d{8})/'."
        ),
        repository: Path | None = typer.Option(
            None,
            "--repository",
            envvar="ULTRAMN_MODEL_REPOSITORY",
            help="With --triton: the model repository that Triton serves, read to name the served weights, so a re-run "
            "analyses clips again after retrained weights under the same version (a gateway names them itself).",
        ),
    ) -> None:
        """Analyse every clip of INPUT and write results.jsonl, summary.csv and masks into --out."""
        from ultramn.batch.patients import PatientRules
        from ultramn.batch.state import OutputBusyError, output_lock
        from ultramn.data.archives import remove_tree
        from ultramn.errors import UserInputError, check_host_port, check_http_url, check_stride, out_path_problem
        from ultramn.measure.spacing import pixel_spacing_problem

        if pixel_spacing is not None and (problem := pixel_spacing_problem(pixel_spacing)):
            raise UserInputError(f"--pixel-spacing {problem}")
        rules = PatientRules.compile(patient_pattern, side_pattern, visit_pattern)
        check_stride(stride)  # up front: the API answers 422, and --triton would fail every clip
        if gateway is not None and not triton:
            check_http_url(gateway, "--gateway")
        if triton:
            check_host_port(triton, "--triton")  # a typo is bad input (2), not an unreachable Triton (1)
        if not source.exists():
            raise UserInputError(f"{source} does not exist")
        if (problem := out_path_problem(out, folder=True)) is not None:
            raise UserInputError(f"--out {out}: {problem}")
        if triton and repository is not None and not repository.is_dir():
            raise UserInputError(f"--repository {repository} is not a folder (the model repository Triton serves)")
        source_of = ctx.get_parameter_source("repository")
        given = source_of is not None and source_of.name == "COMMANDLINE"  # not ULTRAMN_MODEL_REPOSITORY from the environment
        if repository is not None and given and not triton:
            raise UserInputError("--repository goes with --triton: a gateway names the weights it serves itself")
        try:
            with output_lock(out):  # one run per folder: a second would redo clips and replace the extracted archive
                try:
                    code = _run(source, out, gateway, triton, api_key, pixel_spacing, stride, concurrency, quiet, redo, repository, rules)
                finally:
                    remove_tree(out / WORK_DIR)  # the extracted copy of an archive (a re-run extracts it again)
        except OutputBusyError as exc:
            raise UserInputError(str(exc)) from exc
        if code:
            sys.exit(code)


def _run(
    source: Path,
    out: Path,
    gateway: str | None,
    triton: str | None,
    api_key: str | None,
    pixel_spacing: float | None,
    stride: int | None,
    concurrency: int,
    quiet: bool,
    redo: bool = False,
    repository: Path | None = None,
    rules: PatientRules | None = None,
) -> int:
    """Find the clips and analyse them (the output folder is locked); the exit code."""
    import asyncio

    from tqdm import tqdm

    from ultramn.batch.discover import discover
    from ultramn.batch.runner import run_batch
    from ultramn.batch.state import STATE_FILE
    from ultramn.data.archives import ArchiveError
    from ultramn.errors import UserInputError

    bars: dict[str, tqdm[Any]] = {}  # an archive's bars, each made when its phase starts

    def bar_to(desc: str, done: int, total: int) -> None:
        """Move the bar of phase ``desc`` (closing the other phase's) to ``done`` of ``total`` bytes."""
        for other in [d for d in bars if d != desc]:
            bars.pop(other).close()
        if desc not in bars:
            bars[desc] = tqdm(total=total, desc=desc, unit="B", unit_scale=True, disable=quiet, leave=False, dynamic_ncols=True)
        bars[desc].update(done - bars[desc].n)

    try:
        found = discover(
            source,
            out / WORK_DIR,
            out=out,
            progress=lambda done, total: bar_to("extracting", done, total),
            checking=lambda done, total: bar_to("checking archive", done, total),
        )
    except FileNotFoundError as exc:
        raise UserInputError(str(exc)) from exc
    except ArchiveError as exc:
        raise UserInputError(f"refused {source.name}: {exc}") from exc
    finally:
        for bar in bars.values():
            bar.close()
    if not found.clips:
        raise UserInputError(f"no clips found in {source} ({found.skipped_text()})")
    if not quiet:
        skipped = f" ({found.skipped_text()} skipped)" if found.skipped else ""
        typer.echo(f"{_clips(len(found.clips))} in {source.resolve().name or source}{skipped}")  # '.' has no name

    async def go() -> int:
        with _stop_on_signals() as signalled:
            try:  # the signal may come while the back end is being reached, or during the batch
                analyzer, model = await _analyzer(gateway, triton, api_key, pixel_spacing, stride, repository)
                try:
                    if model is None and not redo and (out / STATE_FILE).is_file():
                        typer.echo(
                            "warning: the back end does not say which model it serves: clips done before are kept, "
                            "whatever model made them (--redo analyses them again)",
                            err=True,
                        )
                    options = {"pixel_spacing_mm": pixel_spacing, "stride": stride}
                    report = await run_batch(
                        found.clips,
                        analyzer,
                        out,
                        concurrency=concurrency,
                        progress=not quiet,
                        options=options,
                        model=model,
                        redo=redo,
                        rules=rules,
                    )
                finally:
                    await analyzer.aclose()
            except asyncio.CancelledError:
                if not signalled:
                    raise
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
                name = signal.Signals(signalled[0]).name
                typer.echo(f"interrupted ({name}): the clips finished so far are in {out}; run the same command again to resume", err=True)
                return 128 + signalled[0]
        typer.echo(_summary(report, model, out))
        if report.stopped:
            left = f"{_clips(report.not_done)} not done"
            typer.echo(f"error: stopped, {left}: {report.stopped}; run the same command again to resume", err=True)
        return 1 if report.failed or report.stopped else 0

    return asyncio.run(go())


def _clips(n: int) -> str:
    """``"1 clip"``, ``"3 clips"``."""
    return f"{n} clip{'' if n == 1 else 's'}"


def _summary(report: BatchReport, model: ModelId | None, out: Path) -> str:
    """The run's closing line: the counts, and why clips done before were analysed again."""
    line = (
        f"{_clips(report.total)}: {report.already_done} already done, {report.succeeded} analysed, "
        f"{report.failed} failed in {report.seconds:.1f} s -> {out}"
    )
    again = []
    if report.model_changed:
        again.append(f"{report.model_changed} done before under another model, now {model}")
    if report.redone:
        again.append(f"{report.redone} by --redo")
    if again:
        line = f"{line} (analysed again: {'; '.join(again)})"
    if report.not_in_input:
        are = "is" if report.not_in_input == 1 else "are"
        line += (
            f"; {_clips(report.not_in_input)} of earlier runs {are} not in this input: left out of "
            "results.jsonl and summary.csv (kept in state.jsonl and masks/)"
        )
    return line


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[list[int]]:
    """While the block runs, SIGTERM and SIGHUP (a scheduler's stop, a closed terminal) end the
    running batch the way Ctrl-C does: the task is cancelled (the clips in flight dropped, the
    outputs written from the journal). Yields the list the signal's number is put in; the
    previous handlers are back afterwards."""
    import asyncio

    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    got: list[int] = []

    def on_signal(signum: int) -> None:
        if not got and task is not None:
            got.append(signum)
            task.cancel()

    previous: dict[int, Any] = {}
    for signum in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no such signal
            handler = signal.getsignal(signum)
            loop.add_signal_handler(signum, on_signal, signum)
            previous[signum] = handler
    try:
        yield got
    finally:
        for restored, handler in previous.items():
            loop.remove_signal_handler(restored)
            signal.signal(restored, handler)


async def _analyzer(
    gateway: str | None,
    triton: str | None,
    api_key: str | None,
    spacing: float | None,
    stride: int | None,
    repository: Path | None = None,
) -> tuple[Analyzer, ModelId | None]:
    """The back end: the gateway client, or ``gateway.batch_direct`` imported lazily for ``--triton``
    (``repository``: the model repository that Triton serves, to name the weights); and the model it
    serves (``None`` when it does not say)."""
    import importlib

    from ultramn.errors import UserInputError

    if triton:
        try:
            direct = importlib.import_module("gateway.batch_direct")  # ultramn never imports gateway at module level
        except ImportError as exc:
            raise UserInputError(f"--triton needs the serve extra (pip install 'ultramn[serve]'): {exc}") from exc
        try:
            created = await direct.DirectAnalyzer.create(triton, pixel_spacing_mm=spacing, stride=stride, repository=repository)
        except Exception as exc:
            _unreachable(f"cannot use Triton at {triton}: {exc}")
        analyzer: Analyzer = created
        return analyzer, created.model
    try:
        from ultramn.batch.gateway_client import GatewayAnalyzer, GatewayAuthError, GatewayUnreachableError
    except ImportError as exc:
        raise UserInputError(f"--gateway needs httpx (pip install 'ultramn[serve]'): {exc}") from exc
    client = GatewayAnalyzer(gateway or DEFAULT_GATEWAY, api_key=api_key, pixel_spacing_mm=spacing, stride=stride)
    try:
        model = await client.check()
    except GatewayUnreachableError as exc:
        await client.aclose()
        _unreachable(str(exc))
    except GatewayAuthError as exc:  # a bad option, like a bad path: exit 2 before any clip
        await client.aclose()
        raise UserInputError(str(exc)) from exc
    return client, model


def _unreachable(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    sys.exit(1)  # typer.Exit would be swallowed by the CLI's standalone_mode=False
