"""``make up`` (``python -m gateway.up``) as a real process tree: start-up checks, the data-folder
lock, the "up" message, start failures and signals.

Every stack runs on free ports with its own data folder, in its own session; the fixture
kills what is left of each process group (the embedded Triton dies with its parent).
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from gateway.core.config import Settings
from gateway.main import create_app
from gateway.store.lock import DataDirInUseError
from tests.serving.fixtures import ServedModel
from ultramn.serving.build import file_sha256
from ultramn.serving.embedded import EmbeddedTriton, free_ports, port_is_free

ROOT = Path(__file__).resolve().parents[2]
UP_TIMEOUT_S = 120.0


@dataclass
class Stack:
    """One ``python -m gateway.up`` process; its output files and ports."""

    proc: subprocess.Popen[bytes]
    out: Path
    err: Path
    port: int
    triton_ports: tuple[int, int, int]

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float = UP_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.stdout():
            if self.proc.poll() is not None:
                raise AssertionError(f"exited {self.proc.returncode} before {text!r}:\n{self.stdout()[-3000:]}\n{self.stderr()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} after {timeout} s:\n{self.stdout()[-3000:]}")
            time.sleep(0.02)

    def wait(self, timeout: float = 60.0) -> int:
        return self.proc.wait(timeout)


def _up_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ULTRAMN_")}
    port, http, grpc, metrics = free_ports(4)
    env |= {
        "ULTRAMN_DATA_DIR": str(tmp_path / "data"),
        "ULTRAMN_UP_PORT": str(port),
        "ULTRAMN_UP_TRITON_HTTP_PORT": str(http),
        "ULTRAMN_UP_TRITON_GRPC_PORT": str(grpc),
        "ULTRAMN_UP_TRITON_METRICS_PORT": str(metrics),
        "ULTRAMN_UP_CHECKPOINT": str(tmp_path / "no-weights.pt"),  # fast failure unless a test gives weights
    }
    return env | extra


@pytest.fixture
def start_up(tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    """``start_up(env)``: a running ``python -m gateway.up``; every one is killed at teardown."""
    started: list[Stack] = []

    def start(env: dict[str, str]) -> Stack:
        n = len(started)
        out, err = tmp_path / f"up{n}.out", tmp_path / f"up{n}.err"
        with open(out, "wb") as fo, open(err, "wb") as fe:
            proc = subprocess.Popen([sys.executable, "-m", "gateway.up"], cwd=ROOT, env=env, stdout=fo, stderr=fe, start_new_session=True)
        ports = tuple(int(env[f"ULTRAMN_UP_TRITON_{k}_PORT"]) for k in ("HTTP", "GRPC", "METRICS"))
        stack = Stack(proc, out, err, int(env["ULTRAMN_UP_PORT"]), ports)  # type: ignore[arg-type]
        started.append(stack)
        return stack

    yield start
    for stack in started:
        if stack.proc.poll() is None:
            os.killpg(stack.proc.pid, signal.SIGKILL)
        stack.proc.wait(30)


def _run_up(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.up"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr[-3000:]
    return lines[0]


def _stack_env(tmp_path: Path, served: ServedModel, **extra: str) -> dict[str, str]:
    """Environment of a stack that starts (the session's built repository: no ONNX build)."""
    return _up_env(tmp_path, ULTRAMN_UP_REPOSITORY=str(served.repository), ULTRAMN_UP_CHECKPOINT=str(served.checkpoint), **extra)


def _children(pid: int) -> list[tuple[int, str]]:
    """``(pid, command line)`` of the live children of ``pid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        state, ppid = text[text.rfind(")") + 2 :].split()[:2]
        if int(ppid) == pid and state != "Z":
            found.append((int(stat.parent.name), cmdline))
    return found


def _alive(pid: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text[text.rfind(")") + 2] != "Z"


@pytest.fixture
def locked_data_dir(tmp_path: Path) -> Iterator[Path]:
    """``tmp_path/data`` with its lock held by another open file (as another process would)."""
    data = tmp_path / "data"
    data.mkdir()
    fd = os.open(data / ".lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield data
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- data-folder lock


def test_make_up_on_a_data_folder_in_use_exits_2_before_starting_anything(tmp_path: Path, locked_data_dir: Path) -> None:
    r = _run_up(_up_env(tmp_path))
    assert r.returncode == 2, r.stderr[-3000:]
    line = _one_error_line(r.stderr)
    assert f"data folder {locked_data_dir} is in use by another gateway" in line and "ULTRAMN_DATA_DIR" in line
    assert "[1/3]" not in r.stdout


@pytest.mark.anyio
async def test_the_lifespan_refuses_a_data_folder_another_process_holds_and_frees_it_at_shutdown(
    anyio_backend: str, triton_server: EmbeddedTriton, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path / "data", triton_url=triton_server.grpc_url, log_level="WARNING")
    app = create_app(settings)
    (tmp_path / "data").mkdir()
    fd = os.open(tmp_path / "data" / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        with pytest.raises(DataDirInUseError, match="is in use by another gateway"):
            async with app.router.lifespan_context(app):
                pass
    finally:
        os.close(fd)
    for _ in range(2):  # one app after another on one folder: the lock is released at shutdown
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
                assert (await client.get("/health/live")).status_code == 200
            fd = os.open(tmp_path / "data" / ".lock", os.O_RDWR)
            try:
                with pytest.raises(BlockingIOError):
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            finally:
                os.close(fd)


# --------------------------------------------------------------------------- checks before the build


def test_make_up_refuses_a_gateway_port_that_is_a_triton_port(tmp_path: Path) -> None:
    env = _up_env(tmp_path)
    env["ULTRAMN_UP_PORT"] = env["ULTRAMN_UP_TRITON_GRPC_PORT"]
    r = _run_up(env)
    assert r.returncode == 2
    line = _one_error_line(r.stderr)
    assert "is also the Triton gRPC port" in line and "four different ports" in line


@pytest.mark.parametrize(
    ("host", "reason"),
    [("192.0.2.1", "Cannot assign requested address"), ("no-such-host.invalid", "")],
)
def test_make_up_says_why_it_cannot_bind_the_gateway_host(tmp_path: Path, host: str, reason: str) -> None:
    (tmp_path / "weights.pt").write_bytes(b"x")  # present: the bind is what fails
    env = _up_env(tmp_path, ULTRAMN_UP_HOST=host, ULTRAMN_UP_CHECKPOINT=str(tmp_path / "weights.pt"))
    r = _run_up(env)
    assert r.returncode == 2
    line = _one_error_line(r.stderr)
    assert f"cannot bind {host}:{env['ULTRAMN_UP_PORT']}: {reason}" in line and "already in use" not in line
    assert "ULTRAMN_UP_HOST" in line


def test_a_wrong_model_repository_fails_before_any_build(tmp_path: Path, served_model: ServedModel) -> None:
    typo = tmp_path / "typo"
    r = _run_up(_up_env(tmp_path, ULTRAMN_UP_REPOSITORY=str(typo), ULTRAMN_UP_CHECKPOINT=str(served_model.checkpoint)))
    assert r.returncode == 2
    line = _one_error_line(r.stderr)
    assert f"model repository {typo} does not exist" in line and "ULTRAMN_UP_REPOSITORY" in line
    assert not typo.exists() and "[1/3]" not in r.stdout


# --------------------------------------------------------------------------- full stacks


def test_up_is_printed_once_it_serves_a_second_stack_on_its_folder_is_refused_and_sighup_stops_it(
    tmp_path: Path, served_model: ServedModel, start_up: Callable[..., Stack]
) -> None:
    first = start_up(_stack_env(tmp_path, served_model))
    first.wait_for("Ctrl-C stops everything.")
    with urllib.request.urlopen(f"http://127.0.0.1:{first.port}/health/live", timeout=5) as resp:  # serving already
        assert resp.status == 200
    with urllib.request.urlopen(f"http://127.0.0.1:{first.port}/health/ready", timeout=5) as resp:
        # make up tells the gateway its repository: the served weights are named (ultramn batch compares them)
        assert json.loads(resp.read())["weights"] == file_sha256(served_model.checkpoint)
    assert f"up to date; weights {file_sha256(served_model.checkpoint)[:12]})" in first.stdout()
    second = _run_up(_up_env(tmp_path, ULTRAMN_UP_REPOSITORY=str(served_model.repository)))  # same data folder
    assert second.returncode == 2
    assert f"is in use by another gateway (pid {first.proc.pid})" in _one_error_line(second.stderr)
    first.proc.send_signal(signal.SIGHUP)
    assert first.wait() == 0, first.stderr()[-3000:]
    assert "gateway stopped" in first.stdout() + first.stderr() and "Traceback" not in first.stderr()
    assert all(port_is_free(p) for p in (first.port, *first.triton_ports))


def test_a_corrupt_database_is_one_error_line_and_nothing_is_left_running(
    tmp_path: Path, served_model: ServedModel, start_up: Callable[..., Stack]
) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "ultramn.db").write_bytes(b"this is not an SQLite database" * 100)
    stack = start_up(_stack_env(tmp_path, served_model))
    assert stack.wait(UP_TIMEOUT_S) == 2, stack.stderr()[-3000:]
    line = _one_error_line(stack.stderr())
    assert f"database {(tmp_path / 'data' / 'ultramn.db').resolve()}: file is not a database" in line
    assert "UltraMN is up" not in stack.stdout()
    assert all(port_is_free(p) for p in (stack.port, *stack.triton_ports))


def test_a_second_ctrl_c_while_stopping_is_ignored(tmp_path: Path, served_model: ServedModel, start_up: Callable[..., Stack]) -> None:
    stack = start_up(_stack_env(tmp_path, served_model))
    stack.wait_for("Ctrl-C stops everything.")
    os.killpg(stack.proc.pid, signal.SIGINT)
    stack.wait_for("stopping ...", timeout=30)
    os.killpg(stack.proc.pid, signal.SIGINT)
    assert stack.wait() == 0, stack.stderr()[-3000:]
    assert "Traceback" not in stack.stderr() and "KeyboardInterrupt" not in stack.stderr()
    assert all(port_is_free(p) for p in stack.triton_ports)


@pytest.mark.parametrize(
    ("sig", "to_group", "code", "message"), [(signal.SIGTERM, False, 143, "stopped by SIGTERM"), (signal.SIGINT, True, 130, "interrupted")]
)
def test_a_signal_during_the_onnx_build_stops_the_build_and_exits_with_one_line(
    tmp_path: Path, served_model: ServedModel, start_up: Callable[..., Stack], sig: signal.Signals, to_group: bool, code: int, message: str
) -> None:
    from export.repository import RepoSettings, write_repository

    repository = tmp_path / "cpu"
    write_repository(repository, RepoSettings(target="cpu"))  # no ONNX model yet: make up builds it
    stack = start_up(_up_env(tmp_path, ULTRAMN_UP_REPOSITORY=str(repository), ULTRAMN_UP_CHECKPOINT=str(served_model.checkpoint)))
    stack.wait_for("[1/3]")
    deadline = time.monotonic() + 60
    while not (builds := [pid for pid, cmd in _children(stack.proc.pid) if "export onnx" in cmd]):
        assert stack.proc.poll() is None and time.monotonic() < deadline, stack.stderr()[-3000:]
        time.sleep(0.02)
    try:
        if to_group:  # Ctrl-C in a terminal: the whole foreground group
            os.killpg(stack.proc.pid, sig)
        else:  # kill <pid>: make up alone
            stack.proc.send_signal(sig)
        assert stack.wait() == code, stack.stderr()[-3000:]
        assert [line for line in stack.stderr().splitlines() if line.strip()] == [message]
        time.sleep(0.2)
        assert not _alive(builds[0]), "the build child outlived make up"
    finally:
        if _alive(builds[0]):
            os.kill(builds[0], signal.SIGKILL)
