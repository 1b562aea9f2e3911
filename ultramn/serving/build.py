"""Is the repository's ONNX model current? Build it (``python -m export onnx``) when not.

``python -m export onnx`` writes ``model.onnx`` and, beside it, ``model.onnx.json``: the
SHA-256 of the checkpoint it came from and a fingerprint of the contract. The ONNX model
is stale when that record is missing or either hash differs. The build runs the
``export`` package in a child process: :mod:`ultramn` never imports ``export`` (DESIGN.md,
dependencies point one way) and the server process needs no torch.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from ultramn.contract import CONTRACT, ModelContract
from ultramn.errors import UserInputError
from ultramn.serving.procs import dying_with_parent

#: Name of the ONNX file inside a model version folder.
ONNX_FILENAME = "model.onnx"


def meta_path(onnx_path: Path) -> Path:
    """The build record beside an ONNX file (``model.onnx`` -> ``model.onnx.json``)."""
    return onnx_path.with_name(onnx_path.name + ".json")


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


#: The export encoding whose outputs are the contract's ``served_outputs`` (uint8 mask
#: probabilities); what :func:`build_onnx` builds and the committed repositories declare.
SERVED_ENCODING = "probs_u8"


def contract_fingerprint(contract: ModelContract = CONTRACT) -> str:
    """Short hash of everything in the contract (a changed shape or name makes it differ)."""
    text = json.dumps(asdict(contract), sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def onnx_model_path(repository: Path, contract: ModelContract = CONTRACT, version: int = 1) -> Path:
    """``<repository>/<model name>/<version>/model.onnx``."""
    return repository / contract.name / str(version) / ONNX_FILENAME


def staleness(onnx_path: Path, checkpoint: Path | None, contract: ModelContract = CONTRACT) -> str | None:
    """Why ``onnx_path`` must be (re)built from ``checkpoint``, or ``None`` when it is current.

    Without a checkpoint only presence and the contract fingerprint are checked.
    """
    if not onnx_path.is_file():
        return f"{onnx_path} does not exist"
    meta_file = meta_path(onnx_path)
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, ValueError):
        return f"{meta_file} (the build record) is missing or unreadable"
    if meta.get("contract_fingerprint") != contract_fingerprint(contract):
        return "the model contract changed since the ONNX model was built"
    if meta.get("onnx_sha256") and meta["onnx_sha256"] != file_sha256(onnx_path):
        return f"{onnx_path} is not the file that was built (damaged or replaced since)"
    if meta.get("encoding", SERVED_ENCODING) != SERVED_ENCODING:
        return f"the ONNX model was exported with --encoding {meta['encoding']}; the served contract is {SERVED_ENCODING}"
    if checkpoint is not None and meta.get("checkpoint_sha256") != file_sha256(checkpoint):
        return f"{checkpoint} changed since the ONNX model was built"
    return None


def built_from(onnx_path: Path) -> str | None:
    """The SHA-256 (hex) of the checkpoint ``onnx_path`` was exported from, by its build record;
    ``None`` when there is no readable record, it names no checkpoint, or the ONNX file is not the
    one it describes (replaced or damaged since). The served weights' identity (``ultramn batch``
    compares it): two builds from one checkpoint give the same value, a retrained one another."""
    try:
        meta = json.loads(meta_path(onnx_path).read_text())
        sha = meta["checkpoint_sha256"]
        built = meta["onnx_sha256"]
        if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
            return None
        return sha if built == file_sha256(onnx_path) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def build_onnx(checkpoint: Path, onnx_path: Path, extra_args: tuple[str, ...] = ()) -> None:
    """Run ``python -m export onnx --checkpoint ... --out ...``; raise with its output on failure."""
    cmd = [sys.executable, "-m", "export", "onnx", "--checkpoint", str(checkpoint), "--out", str(onnx_path), *extra_args]
    # the build ends with its caller, even a SIGKILLed `make up` (no orphaned export left running)
    proc = subprocess.run(dying_with_parent(cmd), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise UserInputError(f"exporting {checkpoint} to ONNX failed ({' '.join(cmd)}):\n{proc.stdout}{proc.stderr}")


def ensure_onnx(repository: Path, checkpoint: Path | None, contract: ModelContract = CONTRACT) -> tuple[Path, bool]:
    """Make ``repository``'s ONNX model current; ``(path, rebuilt)``.

    Raises :class:`UserInputError` when the model is missing and no checkpoint can build it.
    """
    onnx_path = onnx_model_path(repository, contract)
    reason = staleness(onnx_path, checkpoint if checkpoint and checkpoint.is_file() else None, contract)
    if reason is None:
        return onnx_path, False
    if checkpoint is None or not checkpoint.is_file():
        where = f"checkpoint {checkpoint} does not exist" if checkpoint else "no --checkpoint was given"
        raise UserInputError(
            f"model missing: {reason} and {where}; train one (ultramn train) or pass --checkpoint, "
            "or build it with `python -m export build`"
        )
    build_onnx(checkpoint, onnx_path)
    return onnx_path, True
