"""Engines behind the models: ``"numba"`` (compiled kernels) and ``"numpy"`` (reference)."""

import importlib

BACKENDS = ("numba", "numpy")


def get_backend(name):
    """Return the engine module for ``name`` (``"numba"`` or ``"numpy"``)."""
    if not isinstance(name, str) or name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    return importlib.import_module(f"fastnn.backends.{name}")
