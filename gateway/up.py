"""``make up`` / ``python -m gateway.up``: the whole local stack on CPU, in one process tree.

Stages: check everything the user can fix (data folder free and writable, the four ports
distinct and free, the model repository, the weights; the gateway port is bound at once) ->
build ``triton_models/cpu``'s ONNX model from the shipped weights when it is missing or
stale -> start the embedded Triton (the real ``tritonserver`` from the ``nvidia-pytriton``
wheel) -> start the gateway (its lifespan, then uvicorn on the bound socket) -> print the
URLs once it serves -> run until Ctrl-C/SIGTERM/SIGHUP, then stop both (further signals are
ignored while stopping).

Exit codes: 0 stopped by a signal after it was up; 2 a problem the user can fix, as one
``error:`` line (a setting, a port, a data folder in use or unusable, the model
repository, the database); 1 the gateway failed to start for another reason (a bug, one
``error:`` line); 128 + the signal number when stopped before it was up (130: Ctrl-C).

Ports and paths come from :class:`UpSettings` (environment, prefix ``ULTRAMN_UP_``); the
gateway's own settings (``ULTRAMN_*``, see :mod:`gateway.core.config`) apply as usual,
except ``triton_url``, which points at the embedded server, and ``model_repository``, which is
the repository that server runs on (so results name the weights it serves).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from ultramn.contract import CONTRACT, CPU_REPOSITORY, SHIPPED_CHECKPOINT
from ultramn.errors import UserInputError


class UpSettings(BaseSettings):
    """Where the local stack listens and what it serves."""

    model_config = SettingsConfigDict(env_prefix="ULTRAMN_UP_", extra="ignore", frozen=True)

    host: str = Field("127.0.0.1", description="Interface the gateway binds (0.0.0.0 to expose it).")
    port: int = Field(8080, ge=1, le=65535, description="Gateway (API + web viewer) port.")
    triton_http_port: int = Field(8000, ge=1, le=65535)
    triton_grpc_port: int = Field(8001, ge=1, le=65535)
    triton_metrics_port: int = Field(8002, ge=1, le=65535)
    repository: Path = Field(CPU_REPOSITORY, description="The cpu model repository.")
    checkpoint: Path = Field(SHIPPED_CHECKPOINT, description="Weights the ONNX model is built from.")
    ready_timeout_s: float = Field(180.0, gt=0)


class _Stop(Exception):  # noqa: N818 - a control-flow signal, not an error
    """SIGINT, SIGTERM or SIGHUP arrived before the gateway was serving."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class GatewayStartError(Exception):
    """The gateway's lifespan failed: the one line to print and the exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


#: The signals that stop ``make up``.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _Signals:
    """What SIGINT, SIGTERM and SIGHUP do in each phase.

    - starting (build, Triton start): raise :class:`_Stop`, which unwinds ``run`` (a running
      ``python -m export onnx`` child is killed by :func:`subprocess.run`, Triton is stopped);
    - serving (:attr:`server` set): ask uvicorn to shut down gracefully (uvicorn itself takes
      SIGINT/SIGTERM while it serves, a second SIGINT there skips waiting for connections);
    - stopping: ignored, so a second Ctrl-C cannot interrupt the shutdown half-way.
    """

    def __init__(self) -> None:
        self.stopping = False
        self.server: Any = None  # the uvicorn.Server once the gateway is being started

    def install(self) -> None:
        for sig in STOP_SIGNALS:
            signal.signal(sig, self.handle)

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping:
            return
        if self.server is not None:
            self.server.should_exit = True
            return
        self.stopping = True
        raise _Stop(signum)


def _bind(host: str, port: int) -> socket.socket:
    """The gateway's listening socket, bound before anything slow starts (the port is then ours)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else str(exc)
        raise UserInputError(f"cannot bind {host}:{port}: {reason}; set ULTRAMN_UP_HOST to an address of this machine") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: TIME_WAIT is no conflict
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise UserInputError(f"gateway port {port} is already in use; set ULTRAMN_UP_PORT to another port") from None
        hint = "ULTRAMN_UP_HOST to an address of this machine" if exc.errno == errno.EADDRNOTAVAIL else "ULTRAMN_UP_HOST / ULTRAMN_UP_PORT"
        raise UserInputError(f"cannot bind {host}:{port}: {exc.strerror or exc}; set {hint}") from None
    return sock


def _check_distinct_ports(settings: UpSettings) -> None:
    """The gateway port must be none of Triton's."""
    for label, port in (
        ("HTTP", settings.triton_http_port),
        ("gRPC", settings.triton_grpc_port),
        ("metrics", settings.triton_metrics_port),
    ):
        if settings.port == port:
            raise UserInputError(
                f"ULTRAMN_UP_PORT {port} is also the Triton {label} port (ULTRAMN_UP_TRITON_{label.upper()}_PORT); "
                "the gateway and Triton need four different ports"
            )


def _start_failure(exc: Exception, gateway_settings: Any) -> GatewayStartError:
    """The gateway's lifespan raised ``exc``: one line, exit 2 when the user can fix it, else 1."""
    import sqlalchemy.exc

    if isinstance(exc, UserInputError):
        return GatewayStartError(str(exc), 2)
    url = str(gateway_settings.sqlalchemy_url)
    where = f"database {url.removeprefix('sqlite:///')}" if url.startswith("sqlite:///") else "database (ULTRAMN_DATABASE_URL)"
    if isinstance(exc, sqlalchemy.exc.DBAPIError):
        return GatewayStartError(f"{where}: {exc.orig}; move it away or set ULTRAMN_DATA_DIR / ULTRAMN_DATABASE_URL", 2)
    if isinstance(exc, sqlalchemy.exc.SQLAlchemyError):
        return GatewayStartError(f"{where}: {str(exc).splitlines()[0]}", 2)
    if isinstance(exc, OSError):
        return GatewayStartError(f"data folder {gateway_settings.data_dir}: {exc}", 2)
    logging.getLogger("gateway").debug("the gateway failed to start", exc_info=exc)
    return GatewayStartError(
        f"the gateway failed to start ({type(exc).__name__}: {exc}); a bug: ULTRAMN_LOG_LEVEL=DEBUG logs the traceback", 1
    )


async def _serve(app: Any, server: Any, sock: socket.socket, gateway_settings: Any, on_up: Callable[[], None]) -> None:
    """Run the app's lifespan around uvicorn (so a failing start is an exception here, not a log)."""
    lifespan = app.router.lifespan_context(app)
    try:
        await lifespan.__aenter__()
    except Exception as exc:
        raise _start_failure(exc, gateway_settings) from exc
    try:
        if not server.should_exit:  # else a signal came during the lifespan's start
            task = asyncio.create_task(server.serve(sockets=[sock]))
            while not server.started and not task.done():
                await asyncio.sleep(0.02)
            if server.started and not server.should_exit:
                on_up()
            await task
            if not server.started:
                raise GatewayStartError("the gateway's HTTP server did not start", 1)
    finally:
        print("stopping ...", flush=True)
        await lifespan.__aexit__(None, None, None)


def run(settings: UpSettings, signals: _Signals | None = None) -> int:
    """Start Triton and the gateway; block until stopped. Returns the exit code.

    Raises :class:`UserInputError` for problems the user can fix (all checked before the
    ONNX build), :class:`GatewayStartError` when the gateway's start fails and
    :class:`_Stop` when a signal arrives before the gateway serves.
    """
    import uvicorn

    from gateway.core.config import Settings
    from gateway.main import create_app
    from gateway.store.files import data_dir_problem
    from gateway.store.lock import DataDirLock
    from gateway.threaded_server import GRACEFUL_SHUTDOWN_S
    from ultramn.serving.build import built_from, ensure_onnx
    from ultramn.serving.embedded import BackendWatchdog, EmbeddedTriton, Ports, check_glibc, check_ports, check_repository

    signals = signals or _Signals()
    gateway_settings = Settings(triton_url=f"127.0.0.1:{settings.triton_grpc_port}", model_repository=settings.repository)
    # every check the user can act on comes before the (minutes long) build and the Triton start
    if problem := data_dir_problem(gateway_settings.data_dir):
        raise UserInputError(f"data folder: {problem}; set ULTRAMN_DATA_DIR to a writable folder")
    with contextlib.ExitStack() as stack:
        # held to the end (released last); the app's lifespan shares this process's hold
        stack.enter_context(DataDirLock(gateway_settings.data_dir))
        ports = Ports(settings.triton_http_port, settings.triton_grpc_port, settings.triton_metrics_port)
        _check_distinct_ports(settings)
        check_glibc()
        check_ports(ports)
        try:
            check_repository(settings.repository, [CONTRACT.name])
        except UserInputError as exc:
            raise UserInputError(f"{exc}; set ULTRAMN_UP_REPOSITORY to the cpu model repository (default {CPU_REPOSITORY})") from None
        if not settings.checkpoint.is_file():
            raise UserInputError(f"shipped weights not found at {settings.checkpoint}")
        sock = stack.enter_context(_bind(settings.host, settings.port))
        triton: EmbeddedTriton | None = None
        watchdog: BackendWatchdog | None = None
        serving = False  # once _serve runs, it says "stopping ..." itself
        try:
            print(f"[1/3] model: checking {settings.repository} against {settings.checkpoint} ...", flush=True)
            onnx_path, rebuilt = ensure_onnx(settings.repository, settings.checkpoint)
            weights = built_from(onnx_path)
            named = f"; weights {weights[:12]}" if weights else ""
            print(f"      {onnx_path} ({'rebuilt' if rebuilt else 'up to date'}{named})", flush=True)
            print("[2/3] starting the embedded Triton Inference Server ...", flush=True)
            triton = EmbeddedTriton(settings.repository, ports, models=[CONTRACT.name])
            triton.start(timeout=settings.ready_timeout_s)
            watchdog = BackendWatchdog(triton, on_restart=lambda message: print(f"[triton] {message}", flush=True))
            watchdog.start()  # Triton does not restart a dead python-backend process itself
            print(f"      ready: HTTP {triton.http_url}  gRPC {triton.grpc_url}  metrics {triton.metrics_url}", flush=True)
            print("[3/3] starting the gateway ...", flush=True)
            app = create_app(gateway_settings)
            server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning", timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S))
            signals.server = server
            serving = True
            up_message = _up_message(settings, gateway_settings, triton.metrics_url)
            asyncio.run(_serve(app, server, sock, gateway_settings, lambda: print(up_message, flush=True)))
        finally:
            signals.stopping = True  # from here on, signals are ignored
            signals.server = None
            if triton is not None and not serving:
                print("stopping ...", flush=True)
            if watchdog is not None:
                watchdog.stop()
            if triton is not None:
                triton.stop()
    return 0


def _up_message(settings: UpSettings, gateway_settings: Any, triton_metrics_url: str) -> str:
    base = f"http://{'localhost' if settings.host in ('127.0.0.1', '0.0.0.0') else settings.host}:{settings.port}"
    return (
        "\nUltraMN is up:\n"
        f"  web viewer   {base}/\n"
        f"  API docs     {base}/docs\n"
        f"  health       {base}/health/ready\n"
        f"  metrics      {base}/metrics   (Triton: {triton_metrics_url})\n"
        f"  analyse      .venv/bin/ultramn analyze samples/sample_TW.npz --gateway {base} --out out/sample_TW"
        f"{' --api-key KEY' if gateway_settings.api_key else ''}\n"
        + (
            "  API key      required (ULTRAMN_API_KEY is set): give it to the viewer's key field and as --api-key\n"
            "               (or export ULTRAMN_API_KEY in the shell that runs ultramn)\n"
            if gateway_settings.api_key
            else ""
        )
        + "Ctrl-C stops everything.\n"
    )


def _exit_code(signals: _Signals) -> int:
    try:
        return run(UpSettings(), signals)
    except _Stop as stop:
        name = signal.Signals(stop.signum).name
        print("interrupted" if stop.signum == signal.SIGINT else f"stopped by {name}", file=sys.stderr, flush=True)
        return 128 + stop.signum
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr, flush=True)
        return 130
    except (UserInputError, GatewayStartError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return exc.code if isinstance(exc, GatewayStartError) else 2
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        print(f"error: invalid setting {where!r}: {first['msg']} ({exc.title}, environment ULTRAMN_UP_* / ULTRAMN_*)", file=sys.stderr)
        return 2


def main() -> None:
    """Entry point. Exit codes: 0 stopped by a signal after it was up; 2 a problem the user can fix
    (one ``error:`` line: settings, ports, data folder in use or unusable, model repository,
    database); 1 the gateway failed to start for another reason (a bug; one ``error:`` line);
    128 + the signal number when interrupted before it was up (130 for Ctrl-C)."""
    signals = _Signals()
    signals.install()  # first: a signal during the imports and the build must unwind, not kill
    sys.exit(_exit_code(signals))


if __name__ == "__main__":
    main()
