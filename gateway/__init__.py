"""UltraMN gateway: FastAPI app that analyses ultrasound clips with the Triton-served model.

Layout (after FastAPI's full-stack template): :mod:`gateway.core` (settings, errors, logs),
:mod:`gateway.api` (dependencies and one router per resource), :mod:`gateway.pipeline`
(named stages from decode to measurements), :mod:`gateway.triton_client`,
:mod:`gateway.store` (database rows and mask files) and :mod:`gateway.worker` (the job
queue). The app factory is :func:`gateway.main.create_app`. Nothing here imports torch.
"""
