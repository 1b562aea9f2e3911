"""Does Triton still spend the CPU on requests whose clients gave up? (the python backend's cancellation check)

Run: ``.venv/bin/python bench/triton_cancel_probe.py [--rounds 3]``. Starts the embedded server on
free ports with ``triton_models/cpu``, times a batch-1 request, then sends 6 concurrent batch-16
requests with a 0.3 s client deadline (all time out) and times the next batch-1 request. Without
the check in ``execute()`` the server works through the abandoned ~96 windows first. Prints
seconds per round; not part of the tests.
"""

from __future__ import annotations

import argparse
import contextlib
import threading
import time
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient

from ultramn.contract import CONTRACT
from ultramn.serving.embedded import start_on_free_ports

IN = CONTRACT.inputs[0]


def request(client: grpcclient.InferenceServerClient, batch: int, timeout: float | None = None) -> None:
    """One inference of ``batch`` random windows (raises on timeout)."""
    x = np.random.default_rng(batch).random((batch, *IN.dims), dtype=np.float32)
    tensor = grpcclient.InferInput(IN.name, list(x.shape), IN.triton_datatype)
    tensor.set_data_from_numpy(x)
    client.infer(CONTRACT.name, [tensor], client_timeout=timeout)


def abandoned(client: grpcclient.InferenceServerClient) -> None:
    """A batch-16 request whose client gives up after 0.3 s."""
    with contextlib.suppress(Exception):  # the deadline is the point
        request(client, 16, 0.3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    server = start_on_free_ports(Path("triton_models/cpu"), [CONTRACT.name])
    try:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        request(client, 1)  # warm-up
        for r in range(args.rounds):
            t0 = time.perf_counter()
            request(client, 1)
            before = time.perf_counter() - t0
            threads = [threading.Thread(target=abandoned, args=(client,)) for _ in range(6)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            time.sleep(0.5)
            t0 = time.perf_counter()
            request(client, 1)
            print(
                f"round {r + 1}: batch-1 {before:.2f} s before, {time.perf_counter() - t0:.2f} s after 6 abandoned batch-16 requests",
                flush=True,
            )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
