"""herd: the plain-Python core of the fleet router (never imports ray)."""

__version__ = "0.1.0"
