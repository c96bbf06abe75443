"""The one place numba options live.

Every kernel in ``fastnn.kernels`` is compiled through these decorators so that
fastmath flags, the error model and caching are set once.
"""

import numba

# No nnan/ninf: the API's finiteness checks and the divergence guard still see NaN.
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}
# error_model="numpy": x / 0 gives inf instead of raising, so division loops vectorize.
_OPTS = dict(nogil=True, fastmath=FASTMATH, error_model="numpy")


def kernel(fn):
    """Compile ``fn`` lazily, per dtype, with an on-disk cache."""
    return numba.njit(fn, cache=True, **_OPTS)


def inline(fn):
    """Compile ``fn`` into each caller (row and element helpers)."""
    return numba.njit(fn, **_OPTS)
