"""fastnn: fast multilayer perceptrons on the CPU, with Numba kernels.

The model API (``Sequential``, ``Dense``, ``optimizers``) runs on either engine:
``backend="numba"`` (compiled kernels in ``fastnn.kernels``) or ``backend="numpy"``
(the plain NumPy reference in ``fastnn.backends.numpy``).
"""

from fastnn import optimizers
from fastnn.model import Dense, DivergenceWarning, History, Sequential

__version__ = "0.1.0"

__all__ = ["Dense", "DivergenceWarning", "History", "Sequential", "optimizers", "__version__"]
