"""The real tritonserver (cpu target) against ONNX Runtime in-process, over gRPC and HTTP."""

from __future__ import annotations

import threading
import time

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.serving.fixtures import ServedModel
from ultramn.contract import CONTRACT
from ultramn.serving.embedded import EmbeddedTriton

IN = CONTRACT.inputs[0]
OUTS = CONTRACT.served_outputs
Client = grpcclient.InferenceServerClient | httpclient.InferenceServerClient


def windows(batch: int, seed: int = 0, dtype: str = IN.numpy_dtype, shape: tuple[int, ...] = IN.dims) -> np.ndarray:
    """Random windows ``[batch, *shape]`` in [0, 1]."""
    return np.random.default_rng(seed).random((batch, *shape)).astype(dtype)


def reference(served: ServedModel, x: np.ndarray) -> dict[str, np.ndarray]:
    """ONNX Runtime in-process on the file the server serves."""
    sess = ort.InferenceSession(str(served.onnx_path), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in OUTS], sess.run([o.name for o in OUTS], {IN.name: x}), strict=True))


def infer(module, client: Client, x: np.ndarray, datatype: str = IN.triton_datatype) -> dict[str, np.ndarray]:
    """One request through ``client`` (``module`` is tritonclient.grpc or .http)."""
    inp = module.InferInput(IN.name, list(x.shape), datatype)
    inp.set_data_from_numpy(x)
    outs = [module.InferRequestedOutput(o.name) for o in OUTS]
    result = client.infer(CONTRACT.name, [inp], outputs=outs)
    return {o.name: result.as_numpy(o.name) for o in OUTS}


@pytest.fixture(scope="module")
def grpc_client(served_model: ServedModel):
    client = grpcclient.InferenceServerClient(served_model.server.grpc_url)
    yield client
    client.close()


@pytest.fixture(scope="module")
def http_client(served_model: ServedModel):
    client = httpclient.InferenceServerClient(served_model.server.http_url, concurrency=4)
    yield client
    client.close()


def assert_matches(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    for spec in OUTS:
        assert got[spec.name].dtype == np.dtype(spec.numpy_dtype), spec.name
        assert got[spec.name].shape == want[spec.name].shape, spec.name
    plane = OUTS[0].name
    np.testing.assert_allclose(got[plane], want[plane], atol=1e-5)
    mask = OUTS[1].name
    # same graph, same provider: at most a rounding tie may differ by one uint8 level
    assert np.abs(got[mask].astype(np.int16) - want[mask].astype(np.int16)).max() <= 1


@pytest.mark.parametrize("batch", [1, 3])
def test_grpc_equals_onnxruntime(served_model: ServedModel, grpc_client, batch: int) -> None:
    x = windows(batch, seed=batch)
    assert_matches(infer(grpcclient, grpc_client, x), reference(served_model, x))


def test_http_equals_onnxruntime(served_model: ServedModel, http_client) -> None:
    x = windows(2, seed=7)
    assert_matches(infer(httpclient, http_client, x), reference(served_model, x))


def _counts(client: grpcclient.InferenceServerClient) -> tuple[int, int]:
    stats = client.get_inference_statistics(CONTRACT.name, as_json=True)["model_stats"][0]
    return int(stats.get("inference_count", 0)), int(stats.get("execution_count", 0))


def test_dynamic_batcher_merges_64_concurrent_requests(served_model: ServedModel, grpc_client) -> None:
    n = 64
    x = windows(n, seed=3)
    want = reference(served_model, x)
    inferences_before, executions_before = _counts(grpc_client)
    done = threading.Semaphore(0)
    results: dict[int, object] = {}

    def callback(i: int, result, error) -> None:
        results[i] = error if error is not None else result
        done.release()

    for i in range(n):
        inp = grpcclient.InferInput(IN.name, [1, *IN.dims], IN.triton_datatype)
        inp.set_data_from_numpy(x[i : i + 1])
        grpc_client.async_infer(CONTRACT.name, [inp], callback=lambda result, error, i=i: callback(i, result, error))
    deadline = time.monotonic() + 60
    for _ in range(n):
        assert done.acquire(timeout=max(0.0, deadline - time.monotonic())), "a request got no answer within 60 s"
    errors = [r for r in results.values() if isinstance(r, Exception)]
    assert not errors, errors[:3]
    got = {o.name: np.concatenate([results[i].as_numpy(o.name) for i in range(n)]) for o in OUTS}  # type: ignore[union-attr]
    assert_matches(got, want)
    # Triton records a batch's statistics after it has sent the answers: the last batch may not
    # be counted yet when its callbacks have run (CI once read 60 of 64), so wait for it briefly
    settle = time.monotonic() + 5
    while (counts := _counts(grpc_client))[0] - inferences_before < n and time.monotonic() < settle:
        time.sleep(0.05)
    inferences, executions = counts
    assert inferences - inferences_before == n
    assert executions - executions_before < n, "the dynamic batcher merged no requests"


@pytest.mark.parametrize(
    ("shape", "dtype", "datatype", "words"),
    [
        ((1, IN.dims[1], IN.dims[2] // 2, IN.dims[3]), IN.numpy_dtype, IN.triton_datatype, ("shape",)),
        (IN.dims, "float64", "FP64", ("data-type", "datatype", "data type")),
        (IN.dims, "uint8", "UINT8", ("data-type", "datatype", "data type")),
    ],
    ids=["wrong-shape", "fp64", "uint8"],
)
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_bad_input_is_a_clear_error(grpc_client, http_client, protocol, shape, dtype, datatype, words) -> None:
    module, client = (grpcclient, grpc_client) if protocol == "grpc" else (httpclient, http_client)
    x = windows(1, shape=shape, dtype=dtype)
    with pytest.raises(InferenceServerException) as info:
        infer(module, client, x, datatype=datatype)
    message = str(info.value.message() or "").lower()
    assert IN.name in message, message
    assert any(w in message for w in words), message


def test_non_finite_windows_are_refused_without_failing_their_batch(served_model: ServedModel, grpc_client) -> None:
    """One NaN voxel turned a whole window's planes to NaN and its mask to noise: a direct client gets an error instead."""
    bad = windows(2, seed=5)
    bad[1, 0, 3, 80, 80] = np.nan
    with pytest.raises(InferenceServerException) as info:
        infer(grpcclient, grpc_client, bad)
    assert "NaN or infinite" in str(info.value.message())
    inf = windows(1, seed=6)
    inf[0, 0, 0, 0, 0] = np.inf
    with pytest.raises(InferenceServerException, match="NaN or infinite"):
        infer(grpcclient, grpc_client, inf)
    good = windows(2, seed=5)
    assert_matches(infer(grpcclient, grpc_client, good), reference(served_model, good))


def test_server_still_serves_after_errors(served_model: ServedModel, grpc_client) -> None:
    x = windows(1, seed=11)
    assert_matches(infer(grpcclient, grpc_client, x), reference(served_model, x))


def test_model_config_matches_contract(grpc_client, http_client) -> None:
    for config in (grpc_client.get_model_config(CONTRACT.name, as_json=True)["config"], http_client.get_model_config(CONTRACT.name)):
        assert config["name"] == CONTRACT.name
        assert int(config["max_batch_size"]) == CONTRACT.max_batch_size
        got_in = [(t["name"], t["data_type"], [int(d) for d in t["dims"]]) for t in config["input"]]
        got_out = [(t["name"], t["data_type"], [int(d) for d in t["dims"]]) for t in config["output"]]
        assert got_in == [(t.name, t.dtype, list(t.dims)) for t in CONTRACT.inputs]
        assert got_out == [(t.name, t.dtype, list(t.dims)) for t in CONTRACT.served_outputs]
        assert "dynamic_batching" in config
        assert config["backend"] == "python"


def test_health_and_metrics(triton_server) -> None:
    assert triton_server.is_live() and triton_server.is_ready()
    import urllib.request

    with urllib.request.urlopen(triton_server.metrics_url, timeout=5) as resp:
        text = resp.read().decode()
    assert f'nv_inference_request_success{{model="{CONTRACT.name}"' in text


def _listening(port: int) -> set[str]:
    """Local addresses (hex, as in /proc/net/tcp[6]) that listen on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            for line in fh.readlines()[1:]:
                fields = line.split()
                address, port_hex = fields[1].rsplit(":", 1)
                if fields[3] == "0A" and int(port_hex, 16) == port:  # 0A = LISTEN
                    found.add(address)
    return found


def test_the_embedded_server_listens_on_loopback_only(triton_server) -> None:
    """Triton binds every interface by default: the embedded one must not put its unauthenticated API on the network."""
    loopback = {"0100007F", "00000000000000000000000001000000", "0000000000000000FFFF00000100007F"}  # 127.0.0.1, ::1, ::ffff:127.0.0.1
    for port in (triton_server.ports.http, triton_server.ports.grpc, triton_server.ports.metrics):
        addresses = _listening(port)
        assert addresses and addresses <= loopback, (port, addresses)


def test_watchdog_restarts_a_server_whose_backend_died(served_model: ServedModel, tmp_path) -> None:
    """Triton 2.51 leaves a killed python-backend stub dead and the model 'ready': the watchdog restarts the server."""
    import os
    import signal

    from ultramn.serving.embedded import SHM_DIR, BackendWatchdog, EmbeddedTriton, Ports, free_ports

    server = EmbeddedTriton(served_model.repository, Ports(*free_ports(3)), models=[CONTRACT.name], log_path=tmp_path / "t.log").start()
    messages: list[str] = []
    watchdog = BackendWatchdog(server, interval_s=0.3, on_restart=messages.append).start()
    try:
        first = server.backend_stub_pids()
        assert first
        killed_regions = {name for name in server.shm_regions if (SHM_DIR / name).exists()}
        assert killed_regions
        for pid in first:
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 120
        while watchdog.restarts < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert watchdog.restarts == 1, messages
        assert server.is_ready() and server.backend_stub_pids() and not set(server.backend_stub_pids()) & set(first)
        assert any("died" in m for m in messages) and any("ready again" in m for m in messages)
        client = grpcclient.InferenceServerClient(server.grpc_url)
        x = windows(1, seed=3)
        assert_matches(infer(grpcclient, client, x), reference(served_model, x))
        assert (tmp_path / "t.log").read_text().count("Started GRPCInferenceService") == 2  # the log keeps both runs
        assert not [name for name in killed_regions if (SHM_DIR / name).exists()], "the killed stubs' shared memory is left in /dev/shm"
    finally:
        watchdog.stop()
        server.stop()
    assert (tmp_path / "t.log").exists()  # a log the caller named is never removed


def test_an_onnx_model_that_contradicts_its_config_is_refused_at_load(served_model: ServedModel, tmp_path) -> None:
    """float32 probabilities under a config that says uint8 would be served as all zeros: the
    python backend refuses to load such a model, and the start-up error says why."""
    import shutil

    from export.onnx_export import export_onnx, load_model
    from ultramn.serving.build import onnx_model_path
    from ultramn.serving.embedded import Ports, TritonStartError, free_ports

    repository = tmp_path / "cpu"
    shutil.copytree(served_model.repository, repository)
    model, _ = load_model(served_model.checkpoint)
    export_onnx(model, onnx_model_path(repository), encoding="probs_f32", checkpoint=served_model.checkpoint)
    server = EmbeddedTriton(repository, Ports(*free_ports(3)), models=[CONTRACT.name], log_path=tmp_path / "triton.log")
    try:
        with pytest.raises(TritonStartError):
            server.start(timeout=60)
    finally:
        server.stop()
    log = (tmp_path / "triton.log").read_text()
    assert "does not match config.pbtxt" in log and "'mask_probs' is tensor(float) in the graph, TYPE_UINT8 in the config" in log


def test_the_start_failure_message_leads_with_the_logs_errors(served_model: ServedModel, tmp_path) -> None:
    """A truncated model.onnx: the parse error is far above the log's last lines (Triton's shutdown), yet the message shows it."""
    import shutil

    from ultramn.serving.build import onnx_model_path
    from ultramn.serving.embedded import Ports, TritonStartError, free_ports

    repository = tmp_path / "cpu"
    shutil.copytree(served_model.repository, repository)
    onnx = onnx_model_path(repository)
    onnx.write_bytes(onnx.read_bytes()[: onnx.stat().st_size // 2])
    server = EmbeddedTriton(repository, Ports(*free_ports(3)), models=[CONTRACT.name])  # a temporary log
    try:
        with pytest.raises(TritonStartError) as info:
            server.start(timeout=60)
    finally:
        server.stop()
    message = str(info.value)
    head = message.partition("last lines:")[0]
    assert "a model failed to load" in head and "errors:" in head and "Protobuf parsing failed" in head, message
    assert "CudaDriverHelper" not in message  # an error line every CPU start logs
    assert server.log_path is not None and str(server.log_path) in message
    assert server.log_path.exists()  # the message names it: kept after stop()
    server.log_path.unlink()
