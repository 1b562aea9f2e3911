"""Settings, errors and logging of the gateway."""
