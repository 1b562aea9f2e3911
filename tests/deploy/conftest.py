"""The real Triton server (embedded ``tritonserver``, cpu target) for the deployment checks that run it."""

from tests.serving.fixtures import served_model  # noqa: F401
