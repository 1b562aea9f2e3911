"""The GPU deployment is validated, not run, here (no Docker engine, no GPU): docker-compose.yml,
its CPU override, the monitoring configs and the gateway image recipe, parsed and cross-checked
against the code (model repository, Triton config, gateway settings and metrics)."""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement

from export.repository import drift
from gateway.core.config import Settings
from gateway.core.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
CPU = ROOT / "compose" / "cpu.yml"
TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:24.10-py3"


class ComposeLoader(yaml.SafeLoader):
    """Safe YAML plus Compose's merge tags (``!reset``, ``!override``), kept as markers."""


def _tagged(tag: str) -> Any:
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        if isinstance(node, yaml.MappingNode):
            value: Any = loader.construct_mapping(node, deep=True)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_scalar(node)
        return {tag: value}

    return construct


for _tag in ("!reset", "!override"):
    ComposeLoader.add_constructor(_tag, _tagged(_tag))


def load(path: Path) -> dict[str, Any]:
    data = yaml.load(path.read_text(), Loader=ComposeLoader)
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load(COMPOSE)


def mounts(service: dict[str, Any]) -> list[dict[str, Any]]:
    """Long-syntax volume entries (the file uses only those, so read-only flags are explicit)."""
    vols = service.get("volumes", [])
    assert all(isinstance(v, dict) for v in vols), "use the long volume syntax"
    return list(vols)


def healthcheck_text(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    return " ".join(test) if isinstance(test, list) else str(test)


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's variable interpolation of one value: ``$VAR``, ``${VAR}``, ``${VAR:-default}``
    (unset or empty), ``${VAR-default}`` (unset), ``$$`` (a dollar)."""

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group("braced") or m.group("plain")
        op, default = m.group("op"), m.group("default") or ""
        if op == ":-":
            return env.get(name) or default
        if op == "-":
            return env.get(name, default)
        return env.get(name, "")

    pattern = r"\$\$|\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?-)(?P<default>[^}]*))?\}|\$(?P<plain>[A-Za-z_][A-Za-z0-9_]*)"
    return re.sub(pattern, one, value)


def container_settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The gateway's settings inside its container when ``docker compose up`` runs with ``env`` on the host
    (the Dockerfile's ENV first, the compose file's environment over it)."""
    dockerfile = (ROOT / "gateway" / "Dockerfile").read_text()
    image_env = dict(re.findall(r"\b(ULTRAMN_[A-Z_]+)=(\S+)", dockerfile))
    compose_env = {k: interpolate(str(v), env) for k, v in load(COMPOSE)["services"]["gateway"]["environment"].items()}
    for key in [k for k in os.environ if k.startswith("ULTRAMN_")]:
        monkeypatch.delenv(key)
    for key, value in {**image_env, **compose_env}.items():
        monkeypatch.setenv(key, value)
    return Settings()


def image_installs() -> list[list[str]]:
    """The arguments of each ``pip install`` of the gateway's Dockerfile (quotes removed)."""
    dockerfile = (ROOT / "gateway" / "Dockerfile").read_text().replace("\\\n", " ")
    return [shlex.split(m) for m in re.findall(r"pip install ([^\n&]+)", dockerfile)]


def image_requirements() -> set[str]:
    """Names of what the gateway image's ``pip install`` asks for: its named requirements and
    those of the project's extras in ``.[extra,...]`` (pyproject.toml)."""
    (install,) = image_installs()
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names = {Requirement(r).name for r in install[1:]}
    for extra in re.fullmatch(r"\.\[([\w,]+)\]", install[0]).group(1).split(","):  # type: ignore[union-attr]
        names |= {Requirement(r).name for r in extras[extra]}
    return names


def project_version() -> str:
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])


def test_services_and_pinned_images(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"triton", "gateway", "prometheus", "grafana"}
    for name, svc in services.items():
        image = svc.get("image")
        assert image, f"{name}: no image"
        repo, _, tag = image.rpartition(":")
        assert repo and "/" not in tag and tag and tag != "latest", f"{name}: image {image!r} is not pinned to a tag"
        assert "@" not in tag
        assert svc.get("restart") == "unless-stopped", name
        assert "healthcheck" in svc, f"{name}: no health check"
    assert services["triton"]["image"] == TRITON_IMAGE
    assert TRITON_IMAGE in (ROOT / "docs" / "serving.md").read_text()  # the release the configs were written for
    assert services["gateway"]["image"] == f"ultramn-gateway:{project_version()}"


def test_triton_service(compose: dict[str, Any]) -> None:
    triton = compose["services"]["triton"]
    devices = triton["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] and d.get("count") for d in devices)
    command = triton["command"]
    assert command[0] == "tritonserver" and "--model-repository=/models" in command
    assert "--metrics-port=8002" in command and "8002" in triton["expose"] and "8001" in triton["expose"]
    assert "/v2/health/ready" in healthcheck_text(triton)
    by_target = {m["target"]: m for m in mounts(triton)}
    models = by_target["/models"]
    assert models["type"] == "bind" and models["read_only"] is True and models["source"] == "./triton_models/gpu"
    repo = ROOT / models["source"]
    assert (repo / "ultramn" / "config.pbtxt").is_file()
    config = (repo / "ultramn" / "config.pbtxt").read_text()
    cache_path = re.search(r'key: "trt_engine_cache_path" value: "([^"]+)"', config)
    assert cache_path, "the gpu config has no TensorRT engine cache path"
    cache = by_target[cache_path.group(1)]
    assert cache["type"] == "volume" and cache["source"] in compose["volumes"]
    assert drift(ROOT / "triton_models") == [], "triton_models/ drifted from the contract: python -m export repo ..."


def test_gateway_service(compose: dict[str, Any]) -> None:
    gw = compose["services"]["gateway"]
    assert gw["build"] == {"context": ".", "dockerfile": "gateway/Dockerfile"}
    env = gw["environment"]
    assert interpolate(env["ULTRAMN_TRITON_URL"], {}) == "triton:8001"
    for key in env:  # every variable is a real setting
        assert key.startswith("ULTRAMN_") and key.removeprefix("ULTRAMN_").lower() in Settings.model_fields, key
    data = {m["target"]: m for m in mounts(gw)}[interpolate(env["ULTRAMN_DATA_DIR"], {})]
    assert data["type"] == "volume" and data["source"] in compose["volumes"]
    # the gateway sees the repository Triton serves, at the path its setting names, to name the served weights
    repository = {m["target"]: m for m in mounts(gw)}[env["ULTRAMN_MODEL_REPOSITORY"]]
    triton_models = {m["target"]: m for m in mounts(compose["services"]["triton"])}["/models"]
    assert repository["source"] == triton_models["source"] and repository["read_only"] is True
    assert gw["depends_on"]["triton"]["condition"] == "service_healthy"
    assert "/health/ready" in healthcheck_text(gw)
    assert any(str(p).endswith(":8080") for p in gw["ports"])


def test_volumes_and_bind_sources(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        for m in mounts(svc):
            if m["type"] == "volume":
                assert m["source"] in compose["volumes"], (name, m)
            else:
                assert m["type"] == "bind" and m.get("read_only") is True, (name, m)
                assert (ROOT / m["source"]).exists(), (name, m["source"])
    assert {"gateway_data", "trt_cache"} <= set(compose["volumes"])


def test_monitoring_profile(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["prometheus"]["profiles"] == ["monitoring"] and services["grafana"]["profiles"] == ["monitoring"]
    assert "profiles" not in services["triton"] and "profiles" not in services["gateway"]
    prom = load(ROOT / "compose" / "prometheus.yml")
    jobs = {job["job_name"]: job for job in prom["scrape_configs"]}
    assert set(jobs) == {"triton", "gateway"}
    assert jobs["triton"]["dns_sd_configs"][0] == {"names": ["triton"], "type": "A", "port": 8002}
    assert jobs["gateway"]["dns_sd_configs"][0]["port"] == 8080 and jobs["gateway"]["metrics_path"] == "/metrics"
    grafana = {m["target"]: m["source"] for m in mounts(services["grafana"])}
    provisioning = ROOT / grafana["/etc/grafana/provisioning"]
    datasource = load(provisioning / "datasources" / "prometheus.yml")["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090" and datasource["uid"] == "prometheus"
    provider = load(provisioning / "dashboards" / "ultramn.yml")["providers"][0]
    dashboards = ROOT / grafana[provider["options"]["path"]]
    dashboard = json.loads((dashboards / "ultramn.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert any("nv_inference_count" in e for e in exprs) and any("nv_gpu_utilization" in e for e in exprs)
    assert all(t["datasource"]["uid"] == datasource["uid"] for p in dashboard["panels"] for t in p.get("targets", []))
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    exposed = {f.name + sfx for f in Metrics().registry.collect() for sfx in suffixes.get(f.type, ("",))}
    used = {name for e in exprs for name in re.findall(r"\b(ultramn_[a-z_]+)", e)}
    assert used and used <= exposed, f"dashboard queries unknown gateway metrics: {used - exposed}"


def test_cpu_override() -> None:
    cpu = load(CPU)["services"]
    triton = cpu["triton"]
    assert triton["deploy"] == {"!reset": {}}
    assert {m["target"]: m["source"] for m in mounts(triton)}["/models"] == "./triton_models/cpu"
    gateway_repository = load(COMPOSE)["services"]["gateway"]["environment"]["ULTRAMN_MODEL_REPOSITORY"]
    assert {m["target"]: m["source"] for m in mounts(cpu["gateway"])}[gateway_repository] == "./triton_models/cpu"
    assert (ROOT / "triton_models" / "cpu" / "ultramn" / "config.pbtxt").is_file()
    # its health check (readiness plus an inference per model): tests/deploy/test_triton_health.py
    dockerfile = ROOT / triton["build"]["context"] / triton["build"]["dockerfile"]
    assert f"FROM {TRITON_IMAGE}" in dockerfile.read_text() and "onnxruntime" in dockerfile.read_text()
    repo, _, tag = triton["image"].rpartition(":")
    assert repo and tag and tag != "latest"


def test_gateway_image_has_no_torch() -> None:
    dockerfile = (ROOT / "gateway" / "Dockerfile").read_text()
    bases = re.findall(r"^FROM (\S+)", dockerfile, re.M)
    assert bases == ["python:3.11-slim-bookworm"] * 2, bases  # a Debian release pinned: a rebuild keeps its base
    (install,) = image_installs()
    assert install[0] == ".[serve,postgres]", install
    assert not any(Requirement(r).name == "torch" for r in install[1:])
    assert not {"torch", "nvidia-pytriton", "onnxruntime"} & image_requirements()
    # the installed closure of ultramn[serve,postgres] (metadata of this environment) pulls no torch,
    # and not the embedded Triton (its tritonserver binary and ONNX Runtime: only `make up` uses them)
    seen: set[str] = set()
    todo: list[tuple[str, tuple[str, ...]]] = [("ultramn", ("serve", "postgres"))]
    while todo:
        name, extras = todo.pop()
        key = name.lower().replace("_", "-")
        if key in seen:
            continue
        seen.add(key)
        try:
            requires = md.distribution(name).requires or []
        except md.PackageNotFoundError:
            continue
        for raw in requires:
            req = Requirement(raw)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in (*extras, "")):
                todo.append((req.name, tuple(req.extras)))
    assert "fastapi" in seen and "tritonclient" in seen and "psycopg" in seen
    assert "torch" not in seen, "the serve extra pulls torch"
    assert not {"nvidia-pytriton", "onnxruntime"} & seen, "the gateway image pulls the embedded Triton"
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".git", "models", "data", "triton_models"} <= set(ignored)


def test_docker_compose_config_when_available(compose: dict[str, Any]) -> None:
    """``docker compose config -q`` where the Compose plugin exists; the YAML checks above run regardless."""
    docker = shutil.which("docker")
    has_compose = docker is not None and subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30).returncode == 0
    if not has_compose:
        assert compose["name"] == "ultramn"  # parsed above; nothing more to ask of a missing plugin
        return
    assert docker is not None
    for files in (["-f", str(COMPOSE)], ["-f", str(COMPOSE), "-f", str(CPU)]):
        res = subprocess.run(
            [docker, "compose", *files, "--profile", "monitoring", "config", "-q"], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert res.returncode == 0, res.stderr


def _seconds(duration: str) -> float:
    """A Compose duration (``30s``, ``1m30s``, ``15m``) in seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6}[u] for n, u in parts)


#: Docker's grace between SIGTERM and SIGKILL on ``docker compose stop`` when none is set.
DOCKER_STOP_GRACE_S = 10.0


def test_triton_gets_its_exit_timeout_before_sigkill(compose: dict[str, Any]) -> None:
    """A stopping Triton waits ``--exit-timeout-secs`` for in-flight requests (the whole timeout when a
    python-backend stub is dead, tests/deploy/test_triton_health.py), then unloads the model."""
    base = compose["services"]["triton"]
    for triton in (base, {**base, **load(CPU)["services"]["triton"]}):  # command and grace: replaced, not merged
        timeouts = [float(a.split("=", 1)[1]) for a in triton["command"] if a.startswith("--exit-timeout-secs=")]
        assert len(timeouts) == 1, triton["command"]
        grace = _seconds(str(triton.get("stop_grace_period", f"{DOCKER_STOP_GRACE_S:g}s")))
        assert grace >= timeouts[0] + 10, f"Triton is SIGKILLed after {grace:g} s, before its {timeouts[0]:g} s exit timeout and unload"


def test_gateway_stops_gracefully_before_sigkill(compose: dict[str, Any]) -> None:
    """uvicorn is PID 1 (exec form) and gets Docker's SIGTERM; its graceful shutdown is the one the code
    documents (``GRACEFUL_SHUTDOWN_S``) and ends well inside the container's stop grace."""
    from gateway.threaded_server import GRACEFUL_SHUTDOWN_S

    dockerfile = (ROOT / "gateway" / "Dockerfile").read_text()
    cmd = json.loads(re.findall(r"^CMD (\[.*\])\s*$", dockerfile, re.M)[-1])
    assert cmd[0] == "uvicorn"
    assert float(cmd[cmd.index("--timeout-graceful-shutdown") + 1]) == GRACEFUL_SHUTDOWN_S
    assert re.findall(r"^STOPSIGNAL\s+(\S+)", dockerfile, re.M) in ([], ["SIGTERM"], ["SIGINT"])  # what uvicorn handles
    users = re.findall(r"^USER\s+(\S+)", dockerfile, re.M)
    assert users and users[-1] not in ("root", "0")
    grace = _seconds(str(compose["services"]["gateway"].get("stop_grace_period", f"{DOCKER_STOP_GRACE_S:g}s")))
    assert grace >= GRACEFUL_SHUTDOWN_S + 5, "the lifespan shutdown (workers, Triton client, database) needs time after the requests"


def test_host_variables_reach_the_gateway(monkeypatch: pytest.MonkeyPatch) -> None:
    """What docs/deploy.md tells operators to export before ``docker compose up`` reaches the gateway."""
    defaults = container_settings({}, monkeypatch)
    assert defaults.triton_url == "triton:8001" and str(defaults.data_dir) == "/data"
    assert defaults.sqlalchemy_url == "sqlite:////data/ultramn.db" and not defaults.api_key
    assert (defaults.workers, defaults.infer_concurrency) == (2, 16)
    pg = "postgresql+psycopg://ultramn:secret@db:5432/ultramn"
    host = {"ULTRAMN_DATABASE_URL": pg, "ULTRAMN_TRITON_URL": "envoy:9001", "ULTRAMN_API_KEY": "k", "ULTRAMN_WORKERS": "3"}
    custom = container_settings(host, monkeypatch)
    assert custom.sqlalchemy_url == pg and custom.triton_url == "envoy:9001"
    assert (custom.api_key, custom.workers) == ("k", 3)
    deploy = (ROOT / "docs" / "deploy.md").read_text()
    for name in ("ULTRAMN_DATABASE_URL", "ULTRAMN_TRITON_URL", "ULTRAMN_API_KEY", "ULTRAMN_WORKERS", "ULTRAMN_INFER_CONCURRENCY"):
        assert name in deploy


def test_the_image_has_the_driver_of_the_documented_database_url() -> None:
    """docs/api.md's PostgreSQL example URL names a DBAPI driver: the gateway image must install it."""
    from sqlalchemy.engine import make_url

    (url,) = re.findall(r"`(postgresql\+\w+://[^`]+)`", (ROOT / "docs" / "api.md").read_text())
    driver = make_url(url).get_dialect().driver  # the module SQLAlchemy imports, e.g. psycopg
    assert driver in image_requirements(), f"{url} needs {driver!r}; the gateway image installs {image_installs()}"
