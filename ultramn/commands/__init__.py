"""Sub-commands of the ``ultramn`` CLI, one module per job (see :mod:`ultramn.cli`)."""
