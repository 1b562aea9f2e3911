"""Serving helpers: the embedded Triton Inference Server and its model repository.

Nothing here imports ``tritonclient`` or ``torch``: the server is a child process, its
health is read over plain HTTP, and the ONNX model is built by ``python -m export``.
"""
