"""`ultramn triton`: run the embedded Triton Inference Server on the ``cpu`` repository."""

from __future__ import annotations

import math
import signal
import time
from pathlib import Path
from types import FrameType

import typer

from ultramn.contract import CPU_REPOSITORY, SHIPPED_CHECKPOINT

#: The checkpoint the repository ships (models/ultramn.pt).
DEFAULT_CHECKPOINT = SHIPPED_CHECKPOINT


class _StopRequestedError(Exception):
    """Raised by the SIGTERM handler to leave the serving loop."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _StopRequestedError(signal.Signals(signum).name)


def register(app: typer.Typer) -> None:
    """Add ``ultramn triton`` to ``app``."""

    @app.command("triton")
    def triton(
        http_port: int = typer.Option(8000, "--http-port", help="HTTP/REST port."),
        grpc_port: int = typer.Option(8001, "--grpc-port", help="gRPC port."),
        metrics_port: int = typer.Option(8002, "--metrics-port", help="Prometheus metrics port."),
        repository: Path = typer.Option(CPU_REPOSITORY, "--repository", help="Model repository (cpu target)."),
        checkpoint: Path = typer.Option(
            DEFAULT_CHECKPOINT, "--checkpoint", help="Checkpoint the ONNX model is built from when missing or stale."
        ),
        log_file: Path | None = typer.Option(None, "--log-file", help="Server log (default: a temporary file)."),
        ready_timeout: float = typer.Option(120.0, "--ready-timeout", help="Seconds to wait for readiness."),
        watchdog_interval: float = typer.Option(
            5.0,
            "--watchdog-interval",
            help="Seconds between checks that tritonserver and its python-backend process live (0: no restarts).",
        ),
    ) -> None:
        """Serve the model with the real tritonserver (python backend + ONNX Runtime on CPU).

        Builds the repository's ONNX model from CHECKPOINT when it is missing or stale,
        starts the server, waits until the model is ready and runs until Ctrl-C/SIGTERM.
        Restarts the server on its ports when it or its python-backend process dies (as
        `make up` does; each step is printed as ``[triton] ...``).
        """
        from ultramn.contract import CONTRACT
        from ultramn.errors import UserInputError, checkpoint_path_problem, out_path_problem
        from ultramn.serving.build import built_from, ensure_onnx
        from ultramn.serving.embedded import BackendWatchdog, EmbeddedTriton, Ports, check_glibc, check_ports, check_repository

        if checkpoint != DEFAULT_CHECKPOINT and not checkpoint.is_file():
            folder = checkpoint_path_problem(checkpoint) if checkpoint.is_dir() else None
            raise UserInputError(f"checkpoint {folder or f'{checkpoint} does not exist'}")
        # before the server starts: a ready timeout of 0 or less started it only to stop it at once
        if not (math.isfinite(ready_timeout) and ready_timeout > 0):
            raise UserInputError(f"--ready-timeout must be a positive number of seconds, got {ready_timeout:g}")
        if not (math.isfinite(watchdog_interval) and watchdog_interval >= 0):
            raise UserInputError(f"--watchdog-interval must be 0 (no restarts) or a positive number of seconds, got {watchdog_interval:g}")
        if log_file is not None and (problem := out_path_problem(log_file, folder=False, example="triton.log")) is not None:
            raise UserInputError(f"--log-file {log_file}: {problem}")
        ports = Ports(http_port, grpc_port, metrics_port)
        check_glibc()
        check_ports(ports)  # before a possibly long ONNX build
        check_repository(repository, [CONTRACT.name], versions=False)  # a typo'd --repository must not get a model built into it
        onnx_path, rebuilt = ensure_onnx(repository, checkpoint if checkpoint.is_file() else None)
        weights = built_from(onnx_path)
        typer.echo(
            f"model: {onnx_path}{' (rebuilt from ' + str(checkpoint) + ')' if rebuilt else ''}"
            + (f"; weights {weights[:12]} (ultramn batch --triton ... --repository {repository} names them)" if weights else "")
        )
        server = EmbeddedTriton(repository, ports, models=[CONTRACT.name], log_path=log_file)
        # Triton restarts neither a dead python-backend stub (the model stays "ready" and every request fails) nor itself
        watchdog = BackendWatchdog(server, interval_s=watchdog_interval, on_restart=lambda message: typer.echo(f"[triton] {message}"))
        previous = signal.signal(signal.SIGTERM, _raise_stop)
        try:
            server.start(timeout=ready_timeout)
            if watchdog_interval > 0:
                watchdog.start()
            typer.echo(
                f"tritonserver ready: HTTP {server.http_url}, gRPC {server.grpc_url}, metrics {server.metrics_url} "
                f"(log {server.log_path}); Ctrl-C to stop"
            )
            while watchdog_interval > 0 or (server.process is not None and server.process.poll() is None):
                time.sleep(0.5)
            code = server.process.returncode if server.process is not None else None
            server.keep_log = True  # the message names it
            typer.echo(f"error: tritonserver exited unexpectedly (code {code}); log {server.log_path}:\n{server.log_tail()}", err=True)
            raise typer.Exit(1)
        except (KeyboardInterrupt, _StopRequestedError):
            typer.echo("stopping tritonserver ...")
        finally:
            watchdog.stop()
            server.stop()
            signal.signal(signal.SIGTERM, previous)
        typer.echo("stopped")
