"""HTTP clients for a device's local backends, each behind the :class:`Backend` protocol."""
