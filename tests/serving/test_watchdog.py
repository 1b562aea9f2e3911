"""The backend watchdog (library and `ultramn triton`) against real faults: kill -9, a held port."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tritonclient.http as httpclient

from tests.serving.fixtures import ServedModel
from ultramn.contract import CONTRACT
from ultramn.serving.build import file_sha256
from ultramn.serving.embedded import SHM_DIR, BackendWatchdog, EmbeddedTriton, Ports, free_ports, live_children

IN = CONTRACT.inputs[0]


def _until(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(0.05)


def _hold(port: int, timeout: float = 10.0) -> socket.socket:
    """Listen on 127.0.0.1:``port`` as soon as it is free (the killed server's port)."""
    deadline = time.monotonic() + timeout
    while True:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
            return sock
        except OSError:
            sock.close()
            assert time.monotonic() < deadline, f"port {port} never became free"
            time.sleep(0.01)


def _infer_ok(http_url: str) -> bool:
    client = httpclient.InferenceServerClient(http_url)
    try:
        x = np.zeros((1, *IN.dims), dtype=IN.numpy_dtype)
        inp = httpclient.InferInput(IN.name, list(x.shape), IN.triton_datatype)
        inp.set_data_from_numpy(x)
        client.infer(CONTRACT.name, [inp])
        return True
    finally:
        client.close()


def test_a_failed_restart_is_retried_and_the_dead_servers_shared_memory_removed(served_model: ServedModel) -> None:
    """kill -9 tritonserver while its HTTP port is held: the first restarts fail, later ones succeed once it is free."""
    server = EmbeddedTriton(served_model.repository, Ports(*free_ports(3)), models=[CONTRACT.name])
    messages: list[str] = []
    held: socket.socket | None = None
    watchdog = BackendWatchdog(server, interval_s=0.2, on_restart=messages.append, retry_initial_s=0.3, retry_max_s=0.6)
    try:
        server.start(timeout=40)
        assert server.ready_timeout == 40  # what restart() waits, not 120 s
        watchdog.start()
        regions = {name for name in server.shm_regions if (SHM_DIR / name).exists()}
        assert regions  # (a stub that only completed the config at load time is gone with its region)
        assert server.process is not None
        os.kill(server.process.pid, signal.SIGKILL)
        held = _hold(server.ports.http)
        _until(lambda: watchdog.failed_attempts >= 1, 90, "a failed restart")
        held.close()
        held = None
        _until(lambda: watchdog.restarts == 1, 90, f"a successful restart; messages: {messages}")
        assert messages[0] == "tritonserver itself died (killed by SIGKILL); restarting Triton on the same ports", messages
        failures = [m for m in messages if "restart failed" in m]
        assert failures and failures[0].startswith("Triton restart failed (attempt 1): tritonserver "), messages
        assert "port is already in use" in failures[0] and failures[0].endswith("; trying again in 0.3 s"), messages
        assert all("\n" not in m for m in messages)
        assert re.fullmatch(r"Triton restarted \(attempt [2-9]\); the model is ready again", messages[-1]), messages
        assert server.is_ready() and _infer_ok(server.http_url)
        assert not [name for name in regions if (SHM_DIR / name).exists()], "the killed server's shared memory is still in /dev/shm"
        regions = set(server.shm_regions)
        assert regions
    finally:
        if held is not None:
            held.close()
        watchdog.stop()
        server.stop()
    assert not [name for name in regions if (SHM_DIR / name).exists()]
    assert server.log_path is not None and server.log_path.exists()  # the failure messages named it: kept
    server.log_path.unlink()


def _stub_regions(server_pid: int) -> dict[int, str]:
    """The python-backend stubs of tritonserver ``server_pid`` and their shared-memory regions."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            ppid = int(text[text.rfind(")") + 2 :].split()[1])
            args = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == server_pid and b"triton_python_backend_stub" in args[0]:
            found[int(stat.parent.name)] = next(a.decode() for a in args if a.startswith(b"triton_python_backend_shm_region_"))
    return found


def test_ultramn_triton_restarts_a_server_whose_backend_died(served_model: ServedModel) -> None:
    """`ultramn triton` runs the watchdog: kill -9 of the stub is reported and repaired; a clean stop removes the temporary log."""
    http, grpc, metrics = free_ports(3)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ultramn", "triton", "--repository", str(served_model.repository),
         "--checkpoint", str(served_model.checkpoint), "--http-port", str(http), "--grpc-port", str(grpc),
         "--metrics-port", str(metrics), "--watchdog-interval", "0.3", "--ready-timeout", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        _until(lambda: any("tritonserver ready" in line for line in lines), 90, "the server to be ready")
        # the served weights, as the gateway and `ultramn batch --triton --repository` name them
        assert any(f"weights {file_sha256(served_model.checkpoint)[:12]}" in line for line in lines if line.startswith("model: ")), lines
        match = re.search(r"\(log (\S+)\)", "".join(lines))
        assert match, lines
        log = Path(match.group(1))
        assert log.exists()
        server_pid = next(pid for pid, name in live_children(proc.pid) if name == "tritonserver")
        stubs = _stub_regions(server_pid)
        assert stubs
        for pid in stubs:
            os.kill(pid, signal.SIGKILL)
        _until(lambda: any("ready again" in line for line in lines), 90, "the restart")
        text = "".join(lines)
        assert "[triton] the model's python-backend process died; restarting Triton on the same ports" in text, text
        assert _infer_ok(f"127.0.0.1:{http}")
        assert not [r for r in stubs.values() if (SHM_DIR / r).exists()], "the killed stub's shared memory is still in /dev/shm"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, "".join(lines)
        reader.join(5)
        assert "stopped" in "".join(lines)
        assert not log.exists(), "a clean stop leaves the temporary log behind"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
