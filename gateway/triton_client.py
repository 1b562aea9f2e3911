"""The gateway's Triton client: one ``tritonclient.grpc.aio`` client per process.

- created in the app's lifespan (:meth:`TritonClient.start`) and closed at shutdown;
- :meth:`infer_window` sends one window per request; at most ``infer_concurrency``
  requests are in flight (an ``asyncio.Semaphore``), so the windows of a clip (and of
  concurrent clips) reach Triton together and its dynamic batcher merges them;
- every call has a deadline; a server that is down, overloaded or still loading the model
  raises :class:`TritonUnavailableError` (the worker retries the job later), anything else
  :class:`TritonRequestError`;
- the served model's config is checked against :data:`ultramn.contract.CONTRACT` once the
  server answers (at start-up, or at the first call when it was down then):
  :class:`ContractMismatchError` when names, dtypes or dims differ.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import tritonclient.grpc.aio as grpcclient
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.utils import InferenceServerException

from ultramn.contract import CONTRACT, MASK_PROB_SCALE, ModelContract
from ultramn.serving.build import ONNX_FILENAME, built_from

if TYPE_CHECKING:
    from gateway.core.config import Settings

log = logging.getLogger("gateway.triton")

#: gRPC status codes that mean "try again later" rather than "this request is wrong".
RETRYABLE = {
    "StatusCode.UNAVAILABLE",
    "StatusCode.DEADLINE_EXCEEDED",
    "StatusCode.NOT_FOUND",
    "StatusCode.RESOURCE_EXHAUSTED",
    "StatusCode.CANCELLED",
}
#: gRPC channel options: reconnect quickly after a Triton restart; big messages.
CHANNEL_ARGS: list[tuple[str, Any]] = [
    ("grpc.max_send_message_length", 2**31 - 1),
    ("grpc.max_receive_message_length", 2**31 - 1),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.keepalive_time_ms", 2**31 - 1),
]


#: What Triton answers once the python backend's stub process has died (killed, out of memory):
#: Triton 2.51 does not restart it and still reports the model ready, so the client remembers.
STUB_DEAD_MARKER = "is not healthy"


class TritonUnavailableError(RuntimeError):
    """Triton is down, overloaded or the model is not ready: retry later."""


class TritonRequestError(RuntimeError):
    """Triton rejected a request (a bug or a model fault: retrying will not help)."""


class ContractMismatchError(RuntimeError):
    """The served model's inputs/outputs differ from the contract."""


@dataclass(frozen=True)
class WindowOutput:
    """One window's answer: ``plane_probs`` ``float32 [P]``, ``mask_probs`` ``float32 [T,H,W]`` in [0, 1]."""

    plane_probs: npt.NDArray[np.float32]
    mask_probs: npt.NDArray[np.float32]


def _dims(values: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in values)


def check_model_config(config: dict[str, Any], contract: ModelContract = CONTRACT) -> None:
    """Raise :class:`ContractMismatchError` when the Triton model config (as JSON) breaks the contract."""
    problems: list[str] = []
    for kind, specs, served in (
        ("input", contract.inputs, config.get("input", [])),
        ("output", contract.served_outputs, config.get("output", [])),
    ):
        by_name = {t["name"]: t for t in served}
        for spec in specs:
            got = by_name.get(spec.name)
            if got is None:
                problems.append(f"{kind} {spec.name!r} missing")
                continue
            dtype, dims = got.get("data_type"), _dims(got.get("dims", []))
            if dtype != spec.dtype or dims != spec.dims:
                problems.append(f"{kind} {spec.name!r} is {dtype} {dims}, expected {spec.dtype} {spec.dims}")
    if problems:
        raise ContractMismatchError(f"model {config.get('name')!r} does not match the contract: " + "; ".join(problems))


class TritonClient:
    """Async Triton access for the gateway (see the module docstring)."""

    def __init__(
        self,
        url: str,
        model_name: str = CONTRACT.name,
        model_version: str = "",
        concurrency: int = 8,
        timeout_s: float = 30.0,
        check_timeout_s: float = 2.0,
        contract: ModelContract = CONTRACT,
        repository: Path | None = None,
    ) -> None:
        self.url = url
        self.model_name = model_name
        self.model_version = model_version
        self.timeout_s = timeout_s
        self.check_timeout_s = check_timeout_s
        self.contract = contract
        self.served_version: str | None = None
        #: the model repository as this process sees it, to read the served weights' identity from
        self.repository = repository
        #: SHA-256 of the checkpoint the served ONNX model was built from (:func:`built_from`), when known
        self.served_weights: str | None = None
        self._semaphore = asyncio.Semaphore(concurrency)
        self._client: grpcclient.InferenceServerClient | None = None
        self._checked = False
        self._check_lock = asyncio.Lock()  # one check at a time: after a restart every window waits for the same one
        #: set when an inference found the model's backend process dead; cleared by a success
        self.model_broken: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> TritonClient:
        """A client configured by the gateway's settings (URL, model, concurrency, timeouts)."""
        return cls(
            settings.triton_url,
            settings.model_name,
            settings.model_version,
            concurrency=settings.infer_concurrency,
            timeout_s=settings.infer_timeout_s,
            check_timeout_s=settings.triton_check_timeout_s,
            repository=settings.model_repository,
        )

    # lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Create the client and check the model when the server answers (not fatal when down)."""
        self._client = grpcclient.InferenceServerClient(self.url, channel_args=CHANNEL_ARGS)
        try:
            await self.ensure_checked()
        except TritonUnavailableError as exc:
            log.warning("triton not reachable at start-up; will check the model at first use", extra={"reason": str(exc)[:200]})

    async def close(self) -> None:
        """Close the channel."""
        if self._client is not None:
            await self._client.close()
            self._client = None

    @property
    def client(self) -> grpcclient.InferenceServerClient:
        """The underlying client (after :meth:`start`)."""
        if self._client is None:
            raise RuntimeError("TritonClient.start() was not called")
        return self._client

    # checks ----------------------------------------------------------------------------
    async def ensure_checked(self) -> None:
        """Fetch the model config and metadata once and compare them with the contract."""
        if self._checked:
            return
        async with self._check_lock:
            if not self._checked:
                await self._check()

    async def _check(self) -> None:
        try:
            cfg = await self.client.get_model_config(self.model_name, self.model_version, as_json=True, client_timeout=self.check_timeout_s)
            meta = await self.client.get_model_metadata(
                self.model_name, self.model_version, as_json=True, client_timeout=self.check_timeout_s
            )
        except InferenceServerException as exc:
            raise self._map(exc) from exc
        check_model_config(cfg.get("config", cfg), self.contract)
        versions = meta.get("versions") or []
        self.served_version = self.model_version or (str(max(versions, key=int)) if versions else None)
        self.served_weights = await asyncio.to_thread(self._weights_on_disk)
        self._checked = True
        log.info(
            "model matches the contract", extra={"model": self.model_name, "version": self.served_version, "weights": self.served_weights}
        )

    def _weights_on_disk(self) -> str | None:
        """The served version's weights identity from its build record in :attr:`repository`
        (``None`` without a repository, a version or a record that matches the ONNX file)."""
        if self.repository is None or self.served_version is None:
            return None
        weights = built_from(self.repository / self.model_name / self.served_version / ONNX_FILENAME)
        if weights is None:
            log.warning(
                "the served weights are unknown: no current build record in the model repository",
                extra={"repository": str(self.repository), "version": self.served_version},
            )
        return weights

    def model_identity(self) -> dict[str, str | None]:
        """The served model as results and ``/health/ready`` name it: ``name``, ``version`` and, when
        known, ``weights`` (the SHA-256 of the checkpoint it was built from)."""
        identity: dict[str, str | None] = {"name": self.model_name, "version": self.served_version}
        if self.served_weights is not None:
            identity["weights"] = self.served_weights
        return identity

    async def is_ready(self) -> bool:
        """Whether the server answers and the model is ready (never raises).

        False too while the last inference found the model's backend process dead: Triton
        itself keeps calling such a model ready; and while the served model does not match
        the contract (checked again whenever the server was away).
        """
        if self.model_broken is not None:
            return await self._backend_recovered()
        try:
            ready = await self.client.is_model_ready(self.model_name, self.model_version, client_timeout=self.check_timeout_s)
            if ready and not self._checked:
                await self.ensure_checked()
        except (InferenceServerException, RuntimeError, OSError, TritonUnavailableError, TritonRequestError, ContractMismatchError):
            return False
        return bool(ready)

    async def _backend_recovered(self) -> bool:
        """One all-zero window through the model: True (and the mark cleared) once it answers again."""
        spec = self.contract.inputs[0]
        try:
            await self.infer_window(np.zeros(spec.dims, dtype=spec.numpy_dtype))
        except (TritonUnavailableError, TritonRequestError, ValueError):
            return False
        return True

    # inference -------------------------------------------------------------------------
    async def infer_window(self, window: npt.NDArray[np.float32]) -> WindowOutput:
        """One window ``float32 [1,T,H,W]`` (the contract's input dims) -> :class:`WindowOutput`."""
        await self.ensure_checked()
        spec = self.contract.inputs[0]
        if window.shape != spec.dims:
            raise ValueError(f"window shape {window.shape} != contract {spec.dims}")
        batch = np.ascontiguousarray(window[None], dtype=spec.numpy_dtype)
        inp = InferInput(spec.name, list(batch.shape), spec.triton_datatype)
        inp.set_data_from_numpy(batch)
        outputs = [InferRequestedOutput(o.name) for o in self.contract.served_outputs]
        async with self._semaphore:
            try:
                result = await self.client.infer(
                    self.model_name, [inp], model_version=self.model_version, outputs=outputs, client_timeout=self.timeout_s
                )
            except InferenceServerException as exc:
                mapped = self._map(exc)
                if STUB_DEAD_MARKER in str(mapped):
                    if self.model_broken is None:
                        log.error("the model's backend process is dead; Triton must be restarted", extra={"error": str(mapped)})
                    self.model_broken = str(mapped)
                if isinstance(mapped, TritonUnavailableError):
                    self._checked = False  # the server may come back with another model: check it again then
                raise mapped from exc
        self.model_broken = None
        plane_spec, mask_spec = self.contract.served_outputs
        plane = result.as_numpy(plane_spec.name)
        mask = result.as_numpy(mask_spec.name)
        if plane is None or mask is None:
            raise TritonRequestError("Triton answered without the expected outputs")
        for spec, array in ((plane_spec, plane), (mask_spec, mask)):
            if array.dtype != spec.numpy_dtype or tuple(array.shape[1:]) != tuple(spec.dims):
                self._checked = False
                raise ContractMismatchError(
                    f"model {self.model_name!r} answered {spec.name!r} as {array.dtype} {list(array.shape)}; the contract says "
                    f"{np.dtype(spec.numpy_dtype).name} [1, {', '.join(map(str, spec.dims))}]"
                )
        probs = mask[0, 0].astype(np.float32) * np.float32(1.0 / MASK_PROB_SCALE)
        return WindowOutput(plane_probs=plane[0].astype(np.float32), mask_probs=probs)

    @staticmethod
    def _map(exc: InferenceServerException) -> Exception:
        status = str(exc.status() or "")
        text = exc.message() or str(exc)
        lowered = text.lower()
        if status in RETRYABLE or "failed to connect" in lowered or "unavailable" in lowered or STUB_DEAD_MARKER in lowered:
            return TritonUnavailableError(f"{status or 'Triton error'}: {text}")
        return TritonRequestError(f"{status or 'Triton error'}: {text}")
