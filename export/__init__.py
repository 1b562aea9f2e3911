"""Checkpoint -> ONNX (-> TensorRT on the GPU host) and the Triton model-repository writer.

Commands (``python -m export --help``):

- ``onnx``: export a checkpoint through :class:`export.head.ServingHead` to ONNX, check
  parity against torch with ONNX Runtime, write the build record beside it;
- ``build``: the repository's build step (``models/ultramn.pt`` -> ``triton_models/*``);
- ``repo``: write the ``config.pbtxt`` (and python-backend ``model.py``) of a target;
- ``check``: fail when the committed ``triton_models/`` differ from a fresh generation.
"""
