"""Heliox-AI backend service. Kept import-light: the gunicorn master imports this package."""

__version__ = "0.1.0"
