"""Health check of the CPU override's Triton container (compose/cpu.yml; baked into its image).

Triton 2.51 neither restarts a python-backend stub process that died (killed, out of memory)
nor stops reporting the model ready: ``/v2/health/ready`` stays 200 while every inference
fails with ``Stub process '<model>_0_0' is not healthy``, so a health check that only asks
``/v2/health/ready`` stays green and nothing restarts the container. This check

1. asks ``/v2/health/ready`` (server up, every model loaded);
2. sends every ready model of the repository one inference of zeros (batch 1, shapes and
   types read from the model's own config, so nothing is repeated here);
3. when a model answers that its stub is not healthy, sends SIGTERM to ``tritonserver``:
   the container exits and compose's ``restart: unless-stopped`` starts a fresh one (the
   gateway keeps its jobs queued meanwhile and retries them).

Exit status 0 = healthy, 1 = unhealthy. Any other failure (a timeout under load, an error
answer) only reports unhealthy: it restarts nothing. Runs on the image's own python3
(Python 3.10, standard library only).

    python3 triton_health.py [--url http://localhost:8000] [--pid PID] [--timeout 5]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import urllib.error
import urllib.request
from typing import Any

#: Triton's answer once a python-backend stub has died (also what the gateway recognises).
STUB_DEAD = "is not healthy"
#: Bytes per element of each Triton datatype; BYTES: an empty string is its 4-byte length 0.
ITEM_BYTES = {
    "BOOL": 1,
    "UINT8": 1,
    "INT8": 1,
    "UINT16": 2,
    "INT16": 2,
    "FP16": 2,
    "BF16": 2,
    "UINT32": 4,
    "INT32": 4,
    "FP32": 4,
    "BYTES": 4,
    "UINT64": 8,
    "INT64": 8,
    "FP64": 8,
}


def _call(url: str, timeout: float, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """``(status, body)`` of one HTTP request (POST when ``body`` is given)."""
    request = urllib.request.Request(url, data=body, headers=headers or {}, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


def zero_request(config: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """Body and headers of a batch-1 inference of zeros for the model ``config`` (Triton's JSON
    model configuration), in the binary-data form of Triton's HTTP protocol."""
    inputs, blobs = [], []
    batched = int(config.get("max_batch_size", 0)) > 0
    for spec in config["input"]:
        datatype = str(spec["data_type"]).removeprefix("TYPE_")
        shape = ([1] if batched else []) + [max(int(d), 1) for d in spec["dims"]]  # -1 (variable): 1
        count = 1
        for d in shape:
            count *= d
        blob = bytes(count * ITEM_BYTES[datatype])
        inputs.append({"name": spec["name"], "shape": shape, "datatype": datatype, "parameters": {"binary_data_size": len(blob)}})
        blobs.append(blob)
    outputs = [{"name": spec["name"], "parameters": {"binary_data": True}} for spec in config.get("output", [])]
    header = json.dumps({"inputs": inputs, "outputs": outputs}).encode()
    headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header))}
    return header + b"".join(blobs), headers


def find_server_pid() -> int:
    """The ``tritonserver`` process of this container (PID 1 when none is found by name)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as f:
                    if f.read().strip() == "tritonserver":
                        found.append(int(entry))
            except OSError:
                continue
    return min(found) if found else 1


def restart_server(pid: int, reason: str) -> None:
    """SIGTERM ``pid`` (tritonserver), saying why in its log (the container's log) as well."""
    message = f"[health] {reason}: stopping tritonserver (pid {pid}) so that the restart policy starts it afresh"
    print(message, flush=True)
    try:  # appended to the server's stderr: `docker compose logs triton` shows it
        with open(f"/proc/{pid}/fd/2", "a") as log:
            log.write(message + "\n")
    except OSError:
        pass
    os.kill(pid, signal.SIGTERM)


def check(url: str, timeout: float, pid: int | None) -> int:
    """0 when Triton and every ready model answer; 1 otherwise (restarting Triton for a dead stub)."""
    try:
        status, _ = _call(f"{url}/v2/health/ready", timeout)
        if status != 200:
            print(f"not ready: /v2/health/ready answered {status}")
            return 1
        status, body = _call(f"{url}/v2/repository/index", timeout, b"{}", {"Content-Type": "application/json"})
        if status != 200:
            print(f"repository index answered {status}: {body[:300]!r}")
            return 1
        models = [m for m in json.loads(body) if m.get("state") == "READY"]
        for model in models:
            name = model["name"]
            base = f"{url}/v2/models/{name}" + (f"/versions/{model['version']}" if model.get("version") else "")
            status, body = _call(f"{base}/config", timeout)
            if status != 200:
                print(f"model {name}: config answered {status}")
                return 1
            status, body = _call(f"{base}/infer", timeout, *zero_request(json.loads(body)))
            if status == 200:
                continue
            error = body.decode(errors="replace")
            with contextlib.suppress(ValueError, AttributeError):  # Triton's {"error": "..."}
                error = str(json.loads(error).get("error", error))
            if STUB_DEAD in error and "Stub process" in error:
                restart_server(find_server_pid() if pid is None else pid, f"model {name}: {error}")
            else:
                print(f"model {name}: inference answered {status}: {error[:300]}")
            return 1
    except (OSError, ValueError) as exc:  # refused, timed out, not JSON
        print(f"no answer from {url}: {exc}")
        return 1
    print(f"ready: {len(models)} model(s) answered")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--url", default="http://localhost:8000", help="Triton's HTTP endpoint")
    parser.add_argument("--pid", type=int, default=None, help="tritonserver's PID (default: found by name)")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per HTTP call")
    args = parser.parse_args(argv)
    return check(args.url.rstrip("/"), args.timeout, args.pid)


if __name__ == "__main__":
    sys.exit(main())
