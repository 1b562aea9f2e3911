# Triton for the CPU override (compose/cpu.yml): NVIDIA's image of the same release plus the
# packages the `cpu` repository's python backend imports (numpy, ONNX Runtime), and the health
# check that restarts Triton when the python backend's stub process has died (triton_health.py).
FROM nvcr.io/nvidia/tritonserver:24.10-py3
RUN python3 -m pip install --no-cache-dir "numpy>=1.26,<2" "onnxruntime>=1.17,<2"
COPY triton_health.py /opt/ultramn/triton_health.py
