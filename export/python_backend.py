"""Triton python backend for the ``cpu`` target: ONNX Runtime on CPU.

Copied verbatim to ``triton_models/cpu/<model>/1/model.py`` by ``python -m export repo``.
It reads tensor names from the model config (generated from ``ultramn/contract.py``), so
it needs neither ``ultramn`` nor torch: numpy and onnxruntime only.

All requests of one ``execute()`` call (the dynamic batcher's merged batch) are
concatenated, run through ONNX Runtime in chunks of ``run_batch_size`` windows, then
split back: one response per request, in order. A request that cannot be read (missing
input, wrong dtype or shape, NaN or infinite values) gets its own ``TritonError`` response
and does not fail the others; a request its client has cancelled (gRPC deadline,
disconnect) is answered ``CANCELLED`` without being run.

Config parameters: ``onnx_file`` (default ``model.onnx``, relative to the version
folder), ``intra_op_num_threads`` (0: one per core), ``inter_op_num_threads``,
``run_batch_size`` (windows per ONNX Runtime run; 0: the whole merged batch in one run.
On a CPU the per-window cost does not fall with the batch size, it rises as activations
leave the cache, so the ``cpu`` target runs merged batches window by window: the batcher
then saves the per-request round trips, not compute; docs/benchmarks.md).
"""

import json
import os
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


def _cancelled_error() -> Any:
    """The error that answers a cancelled request (code CANCELLED where the backend has it, from 23.10 on).

    Looked up at call time: ``pb_utils.TritonError`` does not exist yet when Triton imports
    this file to auto-complete the model config.
    """
    code = getattr(pb_utils.TritonError, "CANCELLED", None)
    return pb_utils.TritonError("request cancelled", code) if code is not None else pb_utils.TritonError("request cancelled")


def _cancelled(request: Any) -> bool:
    """Whether the client of ``request`` has given up (``is_cancelled`` exists from Triton 23.10 on)."""
    check = getattr(request, "is_cancelled", None)
    return bool(check()) if check is not None else False


#: ONNX Runtime's tensor type names -> numpy dtypes (the types a model here may use).
_ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(bool)": np.bool_,
}


def _mismatch(arg: Any, spec: dict[str, Any]) -> str | None:
    """How the graph's tensor ``arg`` (an ORT ``NodeArg``) differs from its config ``spec``, or ``None``.

    The element type must be the config's; each fixed graph dimension after the batch axis
    must equal the config's (symbolic dimensions match anything).
    """
    want = np.dtype(pb_utils.triton_string_to_numpy(spec["data_type"]))
    have = _ORT_TYPES.get(arg.type)
    if have is None or np.dtype(have) != want:
        return f"{arg.name!r} is {arg.type} in the graph, {spec['data_type']} in the config"
    dims = [int(d) for d in spec["dims"]]
    graph = list(arg.shape[1:])
    if len(graph) != len(dims) or any(isinstance(g, int) and g != d for g, d in zip(graph, dims, strict=False)):
        return f"{arg.name!r} has shape {arg.shape} in the graph, [batch, {', '.join(map(str, dims))}] in the config"
    return None


class TritonPythonModel:
    """ONNX Runtime session per model instance; batches each execute() into one run."""

    def initialize(self, args: dict[str, str]) -> None:
        """Load the config's tensor specs and create the ONNX Runtime session."""
        self.model_config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in self.model_config.get("parameters", {}).items()}
        onnx_path = os.path.join(args["model_repository"], args["model_version"], params.get("onnx_file") or "model.onnx")
        if not os.path.isfile(onnx_path):
            raise pb_utils.TritonModelException(
                f"ONNX model {onnx_path} is missing: build it with `python -m export build` or `ultramn triton --checkpoint ...`"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(params.get("intra_op_num_threads") or 0)
        options.inter_op_num_threads = int(params.get("inter_op_num_threads") or 1)
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
        self.run_batch_size = max(0, int(params.get("run_batch_size") or 0))
        self.inputs = [
            (spec["name"], pb_utils.triton_string_to_numpy(spec["data_type"]), tuple(int(d) for d in spec["dims"]))
            for spec in self.model_config["input"]
        ]
        self.outputs = [(spec["name"], pb_utils.triton_string_to_numpy(spec["data_type"])) for spec in self.model_config["output"]]
        graph_outputs = {o.name for o in self.session.get_outputs()}
        missing = [name for name, _ in self.outputs if name not in graph_outputs]
        if missing:
            raise pb_utils.TritonModelException(
                f"{onnx_path} lacks outputs {missing} that config.pbtxt declares (graph has {sorted(graph_outputs)}); "
                "re-export it with `python -m export build`"
            )
        declared = {spec["name"]: spec for spec in (*self.model_config["input"], *self.model_config["output"])}
        problems = [
            problem
            for arg in (*self.session.get_inputs(), *self.session.get_outputs())
            if arg.name in declared and (problem := _mismatch(arg, declared[arg.name]))
        ]
        if problems:  # e.g. float32 probabilities served as uint8 would all read as 0
            raise pb_utils.TritonModelException(
                f"{onnx_path} does not match config.pbtxt: {'; '.join(problems)}; re-export it with `python -m export build`"
            )

    def _read(self, request: Any) -> dict[str, np.ndarray]:
        """The request's inputs as ``{name: array [b, ...]}``; ValueError when one is unusable."""
        feed: dict[str, np.ndarray] = {}
        for name, dtype, dims in self.inputs:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                raise ValueError(f"input {name!r} is missing")
            array = tensor.as_numpy()
            if array.dtype != dtype:
                raise ValueError(f"input {name!r} must be {np.dtype(dtype).name}, got {array.dtype}")
            if tuple(array.shape[1:]) != dims:
                raise ValueError(f"input {name!r} must have shape [batch, {', '.join(map(str, dims))}], got {list(array.shape)}")
            if array.dtype.kind == "f" and not np.isfinite(array).all():  # NaN spreads through a whole window
                raise ValueError(f"input {name!r} holds NaN or infinite values")
            feed[name] = array
        sizes = {a.shape[0] for a in feed.values()}
        if len(sizes) != 1:
            raise ValueError(f"inputs disagree on the batch size: {sorted(sizes)}")
        return feed

    def execute(self, requests: list[Any]) -> list[Any]:
        """One ORT run for all readable requests; one response per request, in order."""
        responses: list[Any] = [None] * len(requests)
        feeds, order = [], []
        for i, request in enumerate(requests):
            if _cancelled(request):  # the client gave up (deadline, disconnect): do not spend the CPU on it
                responses[i] = pb_utils.InferenceResponse(error=_cancelled_error())
                continue
            try:
                feeds.append(self._read(request))
                order.append(i)
            except ValueError as exc:
                responses[i] = pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc)))
        if feeds:
            names = [name for name, _, _ in self.inputs]
            batch = {n: feeds[0][n] if len(feeds) == 1 else np.concatenate([f[n] for f in feeds]) for n in names}
            counts = [f[names[0]].shape[0] for f in feeds]
            try:
                results = self._run(batch)
            except Exception as exc:  # an ORT failure fails this batch's requests, not the server
                for i in order:
                    responses[i] = pb_utils.InferenceResponse(error=pb_utils.TritonError(f"inference failed: {exc}"))
                return responses
            splits = np.cumsum(counts)[:-1]
            per_output = [np.split(result, splits) for result in results]
            for k, i in enumerate(order):
                tensors = [
                    pb_utils.Tensor(name, np.ascontiguousarray(parts[k], dtype=dtype))
                    for (name, dtype), parts in zip(self.outputs, per_output, strict=True)
                ]
                responses[i] = pb_utils.InferenceResponse(output_tensors=tensors)
        return responses

    def _run(self, batch: dict[str, np.ndarray]) -> list[np.ndarray]:
        """ONNX Runtime outputs for ``batch`` (``[b, ...]`` per input), ``run_batch_size`` windows per run."""
        names = [name for name, _ in self.outputs]
        total = next(iter(batch.values())).shape[0]
        step = self.run_batch_size or total
        if step >= total:
            return list(self.session.run(names, batch))
        chunks = [self.session.run(names, {k: v[i : i + step] for k, v in batch.items()}) for i in range(0, total, step)]
        return [np.concatenate([chunk[j] for chunk in chunks]) for j in range(len(names))]

    def finalize(self) -> None:
        """Release the ONNX Runtime session."""
        self.session = None
