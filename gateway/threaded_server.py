"""Serve an ASGI app with uvicorn in a background thread (tests, benchmarks, embedding).

``make up`` runs uvicorn in the foreground (:mod:`gateway.up`); this is for code that needs
the real HTTP server beside it in one process, e.g. a test that drives the CLI against it.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: Seconds a stopping server waits for open requests (a ``wait=true`` upload may wait a minute)
#: before it cancels them: their jobs are stored and resume at the next start.
GRACEFUL_SHUTDOWN_S = 5


@contextmanager
def serve_in_thread(
    app: Any,
    *,
    host: str = "127.0.0.1",
    start_timeout_s: float = 60.0,
    stop_timeout_s: float = 30.0,
    name: str = "gateway",
) -> Iterator[str]:
    """Serve ``app`` on a free port of ``host`` while the block runs; yields the base URL.

    The socket is bound before uvicorn starts (port 0, so no other process can take the port
    between choosing and binding it). The app's lifespan runs (startup before the URL is
    yielded, shutdown on exit). Raises ``RuntimeError`` when the server thread dies or has not
    started within ``start_timeout_s`` seconds.
    """
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=name, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + start_timeout_s
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError(f"the {name} server stopped during start-up (see its log above)")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the {name} server did not start within {start_timeout_s:g} s")
            time.sleep(0.05)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=stop_timeout_s)
        sock.close()
