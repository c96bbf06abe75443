"""Shared fixtures and constants.

``DTYPES`` and ``TOL`` are imported by the test modules (``from conftest import DTYPES, TOL``):
pytest's default "prepend" import mode puts ``tests/`` on ``sys.path`` because it has no
``__init__.py``. A test that needs a different tolerance says why next to it.
"""

import numpy as np
import pytest

DTYPES = [np.float32, np.float64]

# Kernel vs NumPy twin: same formula, different summation order (and BLAS vs hand loops),
# so a few ulps per reduction; float32 rtol leaves room for ~1000 float32 ulps.
TOL = {np.float32: dict(rtol=1e-4, atol=1e-5), np.float64: dict(rtol=1e-10, atol=1e-12)}


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def mutated(blob, data):
    """``blob`` with 1-8 random bytes overwritten and, half the time, truncated; ``data``
    is hypothesis's ``st.data()`` (the model-file fuzz tests share this)."""
    from hypothesis import strategies as st

    blob = bytearray(blob)
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(blob) - 1))
        blob[pos] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        blob = blob[: data.draw(st.integers(0, len(blob)))]
    return bytes(blob)
