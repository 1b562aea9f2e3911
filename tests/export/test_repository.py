"""Generated Triton configs: derived from the contract, committed copies never drift."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from export.repository import DEFAULT_ROOT, TARGETS, RepoSettings, config_text, drift, generated_files, write_repository
from ultramn.contract import CONTRACT, TensorSpec


def test_committed_repositories_match_the_contract() -> None:
    problems = drift(DEFAULT_ROOT)
    assert not problems, "triton_models/ drifted; run `python -m export repo`:\n" + "\n".join(problems)


def test_drift_is_detected_when_the_contract_changes(tmp_path: Path) -> None:
    for target in TARGETS:
        write_repository(tmp_path / target, RepoSettings(target=target))
    assert drift(tmp_path) == []
    t = CONTRACT.window_frames + 4
    changed = replace(CONTRACT, inputs=(TensorSpec(CONTRACT.inputs[0].name, "TYPE_FP32", (1, t, CONTRACT.height, CONTRACT.width)),))
    problems = drift(tmp_path, changed)
    assert problems and f"dims: [ 1, {t}, {CONTRACT.height}, {CONTRACT.width} ]" in "".join(problems)


def test_drift_is_detected_when_a_committed_file_is_edited(tmp_path: Path) -> None:
    for target in TARGETS:
        write_repository(tmp_path / target, RepoSettings(target=target))
    config = tmp_path / "cpu" / CONTRACT.name / "config.pbtxt"
    config.write_text(config.read_text().replace("max_batch_size", "max_batch_size: 1\n#"))
    assert len(drift(tmp_path)) == 1


@pytest.mark.parametrize("target", TARGETS)
def test_config_carries_every_contract_tensor(target: str) -> None:
    text = config_text(RepoSettings(target=target))  # type: ignore[arg-type]
    assert f'name: "{CONTRACT.name}"' in text
    assert f"max_batch_size: {CONTRACT.max_batch_size}" in text
    for spec in (*CONTRACT.inputs, *CONTRACT.served_outputs):
        block = f'name: "{spec.name}"\n    data_type: {spec.dtype}\n    dims: [ {", ".join(map(str, spec.dims))} ]'
        assert block in text, spec.name
    for needle in ("dynamic_batching {", "preferred_batch_size", "max_queue_delay_microseconds", "instance_group", "model_warmup",
                   "version_policy", "zero_data: true"):  # fmt: skip
        assert needle in text


def test_cpu_config_is_python_backend_with_thread_parameters() -> None:
    text = config_text(RepoSettings(target="cpu", intra_op_threads=3, run_batch_size=2))
    assert 'backend: "python"' in text and "KIND_CPU" in text
    assert 'key: "intra_op_num_threads"\n  value: { string_value: "3" }' in text
    assert 'key: "run_batch_size"\n  value: { string_value: "2" }' in text
    assert "model.py" in "".join(generated_files(RepoSettings(target="cpu")))


def test_gpu_config_uses_tensorrt_fp16_with_engine_cache() -> None:
    text = config_text(RepoSettings(target="gpu"))
    assert 'platform: "onnxruntime_onnxruntime"' in text and "KIND_GPU" in text
    for needle in ('name : "tensorrt"', 'key: "precision_mode" value: "FP16"', 'key: "trt_engine_cache_enable" value: "1"',
                   'key: "trt_engine_cache_path"', f"batch_size: {CONTRACT.max_batch_size}"):  # fmt: skip
        assert needle in text


def test_batching_off_has_no_dynamic_batching() -> None:
    assert "dynamic_batching" not in config_text(RepoSettings(target="cpu", dynamic_batching=False))


def test_check_command_exit_codes(tmp_path: Path) -> None:
    ok = subprocess.run([sys.executable, "-m", "export", "check"], capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = subprocess.run([sys.executable, "-m", "export", "check", "--root", str(tmp_path)], capture_output=True, text=True, check=False)
    assert bad.returncode == 1 and "drifted" in bad.stdout


@pytest.mark.parametrize("target", TARGETS)
def test_config_is_a_valid_triton_model_config(target: str) -> None:
    """Parsed with Triton's own schema (model_config.proto): a misspelt field or enum fails here,
    not first on a GPU host (the gpu repository is never loaded by the CPU test server)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    config = text_format.Parse(config_text(RepoSettings(target=target)), model_config_pb2.ModelConfig())  # type: ignore[arg-type]
    io = {t.name: (model_config_pb2.DataType.Name(t.data_type), tuple(t.dims)) for t in (*config.input, *config.output)}
    assert io == {s.name: (s.dtype, s.dims) for s in (*CONTRACT.inputs, *CONTRACT.served_outputs)}
    assert config.max_batch_size == CONTRACT.max_batch_size
    assert all(b <= config.max_batch_size for b in config.dynamic_batching.preferred_batch_size)
    assert {w.batch_size for w in config.model_warmup} <= set(range(1, config.max_batch_size + 1))
    if target == "gpu":
        (accelerator,) = config.optimization.execution_accelerators.gpu_execution_accelerator
        assert accelerator.name == "tensorrt" and accelerator.parameters["precision_mode"] == "FP16"
