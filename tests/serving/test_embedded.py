"""Pre-flight checks of the embedded server: clear messages before anything starts."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from export.repository import RepoSettings, write_repository
from ultramn.contract import CONTRACT
from ultramn.serving import embedded
from ultramn.serving.build import contract_fingerprint, ensure_onnx, meta_path, onnx_model_path, staleness
from ultramn.serving.embedded import EmbeddedTriton, Ports, TritonStartError, free_ports, prepare_install, server_env


@pytest.mark.parametrize(("text", "ok"), [("glibc 2.35", True), ("glibc 2.39", True), ("glibc 2.31", False), ("glibc 2.17", False)])
def test_glibc_check(monkeypatch: pytest.MonkeyPatch, text: str, ok: bool) -> None:
    monkeypatch.setattr(os, "confstr", lambda name: text)
    if ok:
        embedded.check_glibc()
    else:
        with pytest.raises(TritonStartError, match=r"glibc 2\.\d+ is too old.*>= 2\.35"):
            embedded.check_glibc()


def test_no_glibc_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "confstr", lambda name: None)
    with pytest.raises(TritonStartError, match="needs Linux with glibc"):
        embedded.check_glibc()


def test_this_machine_can_run_the_server() -> None:
    embedded.check_glibc()  # the serving tests need it; fail loudly here if not


def test_taken_port_is_reported_before_start(tmp_path: Path) -> None:
    write_repository(tmp_path, RepoSettings(target="cpu"))
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        sock.listen()
        taken = sock.getsockname()[1]
        a, b = free_ports(2)
        server = EmbeddedTriton(tmp_path, Ports(http=a, grpc=taken, metrics=b), models=[CONTRACT.name])
        with pytest.raises(TritonStartError, match=f"gRPC port {taken} is already in use"):
            server.start()
    assert server.process is None


def test_equal_ports_are_rejected() -> None:
    with pytest.raises(TritonStartError, match="must differ"):
        embedded.check_ports(Ports(9000, 9000, 9002))


def test_missing_model_is_reported(tmp_path: Path) -> None:
    with pytest.raises(TritonStartError, match="does not exist"):
        embedded.check_repository(tmp_path / "nope", [CONTRACT.name])
    with pytest.raises(TritonStartError, match=f"model '{CONTRACT.name}' is missing"):
        embedded.check_repository(tmp_path, [CONTRACT.name])


def test_prepare_install_layout(tmp_path: Path) -> None:
    install = prepare_install(tmp_path / "ts")
    assert os.access(install.binary, os.X_OK)
    assert (install.backends / "python" / "triton_python_backend_stub").is_file()
    assert (install.backends / "python" / "libtriton_python.so").is_file()
    assert prepare_install(tmp_path / "ts") == install  # reused
    env = server_env(install, {"PATH": "/usr/bin", "LD_LIBRARY_PATH": "/x"})
    assert env["LD_LIBRARY_PATH"].split(os.pathsep)[0] == str(install.libs)
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)


def test_model_missing_without_checkpoint(tmp_path: Path) -> None:
    write_repository(tmp_path, RepoSettings(target="cpu"))
    with pytest.raises(Exception, match="model missing"):
        ensure_onnx(tmp_path, None)


def test_staleness_follows_checkpoint_and_contract(tmp_path: Path) -> None:
    onnx = onnx_model_path(tmp_path)
    ckpt = tmp_path / "a.pt"
    ckpt.write_bytes(b"one")
    assert "does not exist" in (staleness(onnx, ckpt) or "")
    onnx.parent.mkdir(parents=True)
    onnx.write_bytes(b"x")
    assert "build record" in (staleness(onnx, ckpt) or "")
    from ultramn.serving.build import file_sha256

    meta_path(onnx).write_text(f'{{"contract_fingerprint": "{contract_fingerprint()}", "checkpoint_sha256": "{file_sha256(ckpt)}"}}')
    assert staleness(onnx, ckpt) is None
    ckpt.write_bytes(b"two")
    assert "changed" in (staleness(onnx, ckpt) or "")
    meta_path(onnx).write_text('{"contract_fingerprint": "0"}')
    assert "contract changed" in (staleness(onnx, None) or "")
    # the build record holds the ONNX file's hash: a truncated or replaced file is stale
    meta_path(onnx).write_text(f'{{"contract_fingerprint": "{contract_fingerprint()}", "onnx_sha256": "{file_sha256(onnx)}"}}')
    assert staleness(onnx, None) is None
    onnx.write_bytes(b"x"[:0])  # truncated to nothing
    assert "not the file that was built" in (staleness(onnx, None) or "")
    onnx.write_bytes(b"x")
    for encoding, stale in (("probs_u8", False), ("probs_f32", True), ("logits", True)):  # what Triton serves is uint8
        meta_path(onnx).write_text(f'{{"contract_fingerprint": "{contract_fingerprint()}", "encoding": "{encoding}"}}')
        assert (f"--encoding {encoding}" in (staleness(onnx, None) or "")) is stale


def test_cli_reports_missing_model_with_exit_code_2(tmp_path: Path) -> None:
    http, grpc, metrics = free_ports(3)
    proc = subprocess.run(
        [sys.executable, "-m", "ultramn", "triton", "--repository", str(tmp_path / "repo"), "--checkpoint", str(tmp_path / "none.pt"),
         "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "does not exist" in proc.stderr


def test_a_port_left_in_time_wait_by_a_stopped_server_is_free_a_listening_one_is_not() -> None:
    from ultramn.serving.embedded import port_is_free

    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    assert not port_is_free(port)
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    accepted.close()  # the server side closes first: its end of the connection lingers in TIME_WAIT
    server.close()
    client.recv(1)
    client.close()
    assert port_is_free(port)  # a restart within the TIME_WAIT minute must not be refused


@pytest.mark.parametrize(
    ("host", "words"),
    [("192.0.2.1", "is not an address of this machine"), ("no-such-host.invalid", "cannot be resolved")],
    ids=["unassigned", "unresolvable"],
)
def test_a_bad_host_is_not_reported_as_a_port_in_use(host: str, words: str) -> None:
    from ultramn.errors import UserInputError
    from ultramn.serving.embedded import port_is_free

    (port,) = free_ports(1)
    with pytest.raises(UserInputError, match=words) as info:
        port_is_free(port, host)
    assert "in use" not in str(info.value)


def test_cli_checks_the_repository_before_building_a_model_into_it(tmp_path: Path) -> None:
    """A typo'd --repository used to get an ONNX model built into a new folder, then fail."""
    typo = tmp_path / "cpu-typo"
    http, grpc, metrics = free_ports(3)

    def triton_cli() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ultramn", "triton", "--repository", str(typo),
             "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics)],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    proc = triton_cli()
    assert proc.returncode == 2, proc.stderr
    assert f"model repository {typo} does not exist" in proc.stderr
    assert not typo.exists()
    write_repository(typo, RepoSettings(target="cpu"))
    (typo / CONTRACT.name / "config.pbtxt").unlink()
    proc = triton_cli()
    assert proc.returncode == 2, proc.stderr
    assert "config.pbtxt does not exist" in proc.stderr
    assert not onnx_model_path(typo).exists()


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--ready-timeout", "0", "--ready-timeout must be a positive number of seconds, got 0"),
        ("--ready-timeout", "-1", "--ready-timeout must be a positive number of seconds, got -1"),
        ("--watchdog-interval", "-5", "--watchdog-interval must be 0 (no restarts) or a positive number of seconds, got -5"),
        ("--log-file", "NOTES/triton.log", "--log-file NOTES/triton.log: NOTES is a file, not a folder"),
        ("--log-file", "LOGS", "--log-file LOGS: it is a folder; give a file name (e.g. LOGS/triton.log)"),
    ],
)
def test_cli_refuses_bad_options_before_starting_the_server(tmp_path: Path, option: str, value: str, expected: str) -> None:
    """A ready timeout of 0 or less started the server, then gave up at once ("not ready after -1 s"); a
    negative watchdog interval was taken as 0; a bad --log-file failed with "[Errno 17] File exists" or
    "[Errno 21] Is a directory" once the model was built."""
    (tmp_path / "notes").write_text("a file")
    (tmp_path / "logs").mkdir()
    repository = tmp_path / "repo"
    write_repository(repository, RepoSettings(target="cpu"))
    http, grpc, metrics = free_ports(3)
    value = value.replace("NOTES", str(tmp_path / "notes")).replace("LOGS", str(tmp_path / "logs"))
    proc = subprocess.run(
        [sys.executable, "-m", "ultramn", "triton", "--repository", str(repository), option, value,
         "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    expected = expected.replace("NOTES", str(tmp_path / "notes")).replace("LOGS", str(tmp_path / "logs"))
    assert proc.returncode == 2 and expected in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert "tritonserver" not in proc.stderr and not onnx_model_path(repository).exists()  # nothing built, nothing started


def test_a_child_started_dying_with_parent_ends_when_its_parent_is_killed(tmp_path: Path) -> None:
    """The ONNX build (and tritonserver) must not outlive a SIGKILLed `make up`."""
    import signal
    import time

    pid_file = tmp_path / "child.pid"
    sleeper = [sys.executable, "-c", f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(120)"]
    code = f"import subprocess; from ultramn.serving.procs import dying_with_parent; subprocess.run(dying_with_parent({sleeper!r}))"
    parent = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)  # wraps its own child, as build_onnx does
    try:
        deadline = time.monotonic() + 30
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline, "the child did not start"
            time.sleep(0.05)
        child = int(pid_file.read_text())
        os.kill(parent.pid, signal.SIGKILL)  # the OOM killer, or `kill -9` of make up
        parent.wait(10)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child}").exists() and "Z" not in Path(f"/proc/{child}/stat").read_text().split(")")[-1][:3]:
            assert time.monotonic() < deadline, "the child outlived its parent"
            time.sleep(0.05)
    finally:
        if parent.poll() is None:
            parent.kill()
