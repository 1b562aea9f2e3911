"""Routers: ``analyses`` (the data API), ``health`` and ``metrics``."""
