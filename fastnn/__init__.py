"""fastnn: fast multilayer perceptrons on the CPU, with Numba kernels.

The model API (``Sequential``, ``Dense``, ``optimizers``) runs on either engine:
``backend="numba"`` (compiled kernels in ``fastnn.kernels``) or ``backend="numpy"``
(the plain NumPy reference in ``fastnn.backends.numpy``). ``MLPClassifier`` and
``MLPRegressor`` are drop-in replacements for scikit-learn's.

Importing fastnn loads neither numba nor scikit-learn: kernels load on first use, the
estimators on first access, so ``import fastnn`` stays cheap.
"""

from fastnn import optimizers
from fastnn.io import ModelFileError, load
from fastnn._warmup import warmup
from fastnn.model import Dense, DivergenceWarning, History, Sequential

__version__ = "0.1.0"

__all__ = ["Dense", "DivergenceWarning", "History", "MLPClassifier", "MLPRegressor",
           "ModelFileError", "Sequential", "load", "optimizers", "warmup", "__version__"]

_LAZY = {"MLPClassifier": "fastnn.estimators", "MLPRegressor": "fastnn.estimators"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fastnn' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
