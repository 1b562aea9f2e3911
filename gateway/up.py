"""``make up`` / ``python -m gateway.up``: the whole local stack on CPU, in one process tree.

Stages: build ``triton_models/cpu``'s ONNX model from the shipped weights when it is
missing or stale -> start the embedded Triton (the real ``tritonserver`` from the
``nvidia-pytriton`` wheel) -> start the gateway (uvicorn) pointed at it -> print the URLs ->
run until Ctrl-C/SIGTERM, then stop both.

Ports and paths come from :class:`UpSettings` (environment, prefix ``ULTRAMN_UP_``); the
gateway's own settings (``ULTRAMN_*``, see :mod:`gateway.core.config`) apply as usual,
except ``triton_url``, which points at the embedded server.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from types import FrameType

from pydantic import Field
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
    """SIGTERM arrived."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def run(settings: UpSettings) -> int:
    """Start Triton and the gateway; block until stopped. Returns the exit code."""
    import uvicorn

    from gateway.core.config import Settings
    from gateway.main import create_app
    from gateway.store.files import data_dir_problem
    from ultramn.serving.build import ensure_onnx
    from ultramn.serving.embedded import BackendWatchdog, EmbeddedTriton, Ports, check_glibc, check_ports, port_is_free

    gateway_settings = Settings(triton_url=f"127.0.0.1:{settings.triton_grpc_port}")
    if problem := data_dir_problem(gateway_settings.data_dir):
        raise UserInputError(f"data folder: {problem}; set ULTRAMN_DATA_DIR to a writable folder")
    ports = Ports(settings.triton_http_port, settings.triton_grpc_port, settings.triton_metrics_port)
    check_glibc()
    check_ports(ports)
    if not port_is_free(settings.port, settings.host):
        raise UserInputError(f"gateway port {settings.port} is already in use; set ULTRAMN_UP_PORT to another port")
    if not settings.checkpoint.is_file():
        raise UserInputError(f"shipped weights not found at {settings.checkpoint}")
    print(f"[1/3] model: checking {settings.repository} against {settings.checkpoint} ...", flush=True)
    onnx_path, rebuilt = ensure_onnx(settings.repository, settings.checkpoint)
    print(f"      {onnx_path} ({'rebuilt' if rebuilt else 'up to date'})", flush=True)
    print("[2/3] starting the embedded Triton Inference Server ...", flush=True)
    triton = EmbeddedTriton(settings.repository, ports, models=[CONTRACT.name])
    watchdog = BackendWatchdog(triton, on_restart=lambda message: print(f"[triton] {message}", flush=True))
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        triton.start(timeout=settings.ready_timeout_s)
        watchdog.start()  # Triton does not restart a dead python-backend process itself
        print(f"      ready: HTTP {triton.http_url}  gRPC {triton.grpc_url}  metrics {triton.metrics_url}", flush=True)
        app = create_app(gateway_settings)
        base = f"http://{'localhost' if settings.host in ('127.0.0.1', '0.0.0.0') else settings.host}:{settings.port}"
        print("[3/3] starting the gateway ...", flush=True)
        print(
            "\nUltraMN is up:\n"
            f"  web viewer   {base}/\n"
            f"  API docs     {base}/docs\n"
            f"  health       {base}/health/ready\n"
            f"  metrics      {base}/metrics   (Triton: {triton.metrics_url})\n"
            f"  analyse      .venv/bin/ultramn analyze samples/sample_TW.npz --gateway {base} --out out/sample_TW"
            f"{' --api-key KEY' if gateway_settings.api_key else ''}\n"
            + (
                "  API key      required (ULTRAMN_API_KEY is set): give it to the viewer's key field and as --api-key\n"
                "               (or export ULTRAMN_API_KEY in the shell that runs ultramn)\n"
                if gateway_settings.api_key
                else ""
            )
            + "Ctrl-C stops everything.\n",
            flush=True,
        )
        uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")
    except (KeyboardInterrupt, _Stop):
        pass
    finally:
        print("stopping ...", flush=True)
        watchdog.stop()
        triton.stop()
        signal.signal(signal.SIGTERM, previous)
    return 0


def main() -> None:
    """Entry point: clear one-line errors (exit 2) for problems the user can fix."""
    try:
        sys.exit(run(UpSettings()))
    except UserInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
