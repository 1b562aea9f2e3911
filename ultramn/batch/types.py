"""What the batch runner needs from an analysis back end (the gateway, or Triton directly)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

#: :class:`ClipError` codes that may mean the back end itself is gone, not that the clip is bad:
#: the runner then asks :meth:`Analyzer.unavailable` and stops the batch when it is.
BACKEND_DOWN_CODES: frozenset[str] = frozenset({"gateway_unreachable", "triton_unavailable"})

#: :class:`ClipError` codes that say the back end cannot take any clip now (its disk is full or
#: its storage fails): the runner stops the batch at once rather than fail every clip after.
BACKEND_REFUSES_CODES: frozenset[str] = frozenset({"insufficient_storage", "storage_error"})


@dataclass(frozen=True)
class ModelId:
    """Which model a back end serves, or served for one result: the ``{"name", "version"}`` of the
    gateway's ``/health/ready`` and of every result's ``model`` object, with ``weights`` (the SHA-256
    of the checkpoint the served model was built from) when the back end knows it."""

    name: str
    version: str
    weights: str | None = None

    @classmethod
    def of(cls, value: Any) -> ModelId | None:
        """The identity in a ``{"name": ..., "version": ..., "weights": ...}`` object (``weights``
        optional); ``None`` when the name or the version is missing."""
        if not isinstance(value, dict):
            return None
        name, version, weights = value.get("name"), value.get("version"), value.get("weights")
        if not isinstance(name, str) or not name or not isinstance(version, str | int) or isinstance(version, bool) or version == "":
            return None
        return cls(name, str(version), weights if isinstance(weights, str) and weights else None)

    def same_as(self, other: ModelId) -> bool:
        """Whether both name the same model: name and version equal, and the weights too where both
        know them (a record from a back end that did not say is taken at its name and version)."""
        weights_differ = self.weights is not None and other.weights is not None and self.weights != other.weights
        return self.name == other.name and self.version == other.version and not weights_differ

    def as_dict(self) -> dict[str, str]:
        """The journal's form: ``{"name": ..., "version": ...}``, with ``"weights"`` when known."""
        out = {"name": self.name, "version": self.version}
        if self.weights is not None:
            out["weights"] = self.weights
        return out

    def __str__(self) -> str:
        weights = f" (weights {self.weights[:12]})" if self.weights else ""
        return f"{self.name} version {self.version}{weights}"


class ClipError(Exception):
    """One clip could not be analysed; the batch records ``code`` and ``message`` and goes on."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ClipAnalysis:
    """A finished analysis: the result JSON (the gateway's ``result`` object), the masks archive, its id."""

    result: dict[str, Any]
    masks_npz: bytes
    analysis_id: str | None = None


class Analyzer(Protocol):
    """Analyses one clip file; raises :class:`ClipError` for a clip that fails."""

    async def analyze(self, path: Path, name: str, key: str | None = None, fields: Mapping[str, str] | None = None) -> ClipAnalysis:
        """The analysis of the clip at ``path`` (``name``: its name in the batch, for messages;
        ``key``: the same for every attempt at this clip in this output folder, so a server that
        accepted an earlier attempt can give that job back; ``fields``: the clip's ``patient``,
        ``side``, ``visit`` for a server that keeps them)."""
        ...

    async def unavailable(self) -> str | None:
        """Why the back end cannot analyse anything now (it does not answer), or ``None`` when it can."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
