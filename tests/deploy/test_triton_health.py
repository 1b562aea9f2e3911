"""The CPU override's Triton health check (compose/triton_health.py), run against the real server.

Triton 2.51 keeps answering ``/v2/health/ready`` with 200 after the python backend's stub
process died, while every inference fails: the container's check must notice and stop
tritonserver, so that the restart policy brings the model back.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.test_compose import COMPOSE, CPU, ROOT, load
from tests.serving.fixtures import ServedModel
from ultramn.contract import CONTRACT
from ultramn.serving.embedded import EmbeddedTriton, Ports, free_ports

SCRIPT = ROOT / "compose" / "triton_health.py"


def _cpu_triton() -> dict[str, Any]:
    return dict(load(CPU)["services"]["triton"])


def _image_files(service: dict[str, Any]) -> dict[str, Path]:
    """In-image path -> repository file, for the ``COPY`` lines of the service's Dockerfile."""
    context = ROOT / service["build"]["context"]
    dockerfile = (context / service["build"]["dockerfile"]).read_text()
    return {dest: context / src for src, dest in re.findall(r"^COPY\s+(\S+)\s+(\S+)\s*$", dockerfile, re.M)}


def healthcheck_command(url: str, pid: int) -> list[str]:
    """The CPU override's Triton health check as a local command: the image's copy of the script
    -> the repository's file, its python3 -> this interpreter, aimed at ``url`` and ``pid``."""
    triton = _cpu_triton()
    test = triton["healthcheck"]["test"]
    assert isinstance(test, list) and test[0] == "CMD", f"exec form expected, got {test!r}"
    files = _image_files(triton)
    assert test[1] == "python3" and test[2] in files, f"the health check does not run the probe script baked into the image: {test!r}"
    assert files[test[2]] == SCRIPT
    return [sys.executable, str(files[test[2]]), *test[3:], "--url", url, "--pid", str(pid)]


def test_cpu_override_checks_more_than_readiness_and_keeps_the_restart_policy() -> None:
    triton = _cpu_triton()
    healthcheck_command("http://localhost:8000", 1)  # the script, from the image, in exec form
    assert "restart" not in triton or triton["restart"] == "unless-stopped"
    assert yaml.safe_load(COMPOSE.read_text())["services"]["triton"]["restart"] == "unless-stopped"  # merged in
    # the image's python3 is Ubuntu 22.04's 3.10: the script must parse there (stdlib only)
    tree = ast.parse(SCRIPT.read_text(), feature_version=(3, 10))
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported <= set(sys.stdlib_module_names), imported - set(sys.stdlib_module_names)
    # the check's own HTTP timeouts fit in the health check's timeout (4 calls)
    seconds = int(str(triton["healthcheck"]["timeout"]).removesuffix("s"))
    assert seconds >= 4 * 5


def _http(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as r:
        return int(r.status)


@pytest.mark.slow
def test_dead_stub_makes_the_check_fail_and_stops_tritonserver(served_model: ServedModel, tmp_path: Path) -> None:
    server = EmbeddedTriton(served_model.repository, Ports(*free_ports(3)), models=[CONTRACT.name], log_path=tmp_path / "triton.log")
    server.start()
    try:
        assert server.process is not None
        process = server.process
        url = f"http://{server.http_url.removeprefix('http://')}"
        ok = subprocess.run(healthcheck_command(url, process.pid), capture_output=True, text=True, timeout=60)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert process.poll() is None

        stubs = server.backend_stub_pids()
        assert stubs, "no python backend stub found"
        for pid in stubs:
            os.kill(pid, signal.SIGKILL)  # stands in for the OOM killer
        assert _http(f"{url}/v2/health/ready") == 200  # what the old `curl .../v2/health/ready` check saw
        dead = subprocess.run(healthcheck_command(url, process.pid), capture_output=True, text=True, timeout=60)
        assert dead.returncode == 1, dead.stdout + dead.stderr
        assert "is not healthy" in dead.stdout and "stopping tritonserver" in dead.stdout
        # gone (after its exit timeout: the dead stub's requests never finish), and the restart policy starts it afresh
        assert process.wait(timeout=60) is not None
    finally:
        server.stop()


def test_an_unreachable_server_is_unhealthy_and_nothing_is_signalled(tmp_path: Path) -> None:
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (port,) = free_ports(1)
        res = subprocess.run(healthcheck_command(f"http://127.0.0.1:{port}", bystander.pid), capture_output=True, text=True, timeout=60)
        assert res.returncode == 1 and "no answer" in res.stdout, res.stdout + res.stderr
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_the_restart_is_announced_in_the_servers_log() -> None:
    """The reason goes to tritonserver's stderr (a pipe to the container's log) before the SIGTERM."""
    spec = importlib.util.spec_from_file_location("triton_health", SCRIPT)
    assert spec is not None and spec.loader is not None
    health = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(health)
    server = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], stderr=subprocess.PIPE, text=True)
    try:
        health.restart_server(server.pid, "model ultramn: Stub process 'ultramn_0_0' is not healthy.")
        assert server.wait(timeout=30) == -signal.SIGTERM
        assert server.stderr is not None
        assert "is not healthy.: stopping tritonserver" in server.stderr.read()
    finally:
        if server.poll() is None:
            server.kill()
