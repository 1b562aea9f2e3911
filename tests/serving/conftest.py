"""Fixtures of the serving tests (defined in :mod:`tests.serving.fixtures` for reuse)."""

from tests.serving.fixtures import served_model, triton_server  # noqa: F401
