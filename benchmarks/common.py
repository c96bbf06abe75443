"""Workload data and model pairs for the asv suites (see WORKLOADS.md).

The workloads themselves live in ``fastnn._workloads`` so that ``python -m fastnn
bench`` measures exactly what asv measures.
"""

import statistics
import time

from fastnn._workloads import WORKLOADS, load, make_model

__all__ = ["WORKLOADS", "load", "make_model", "make_pair", "median_seconds"]


def make_pair(name):
    """Numba- and NumPy-backend models for workload ``name``, same seed."""
    return make_model(name, "numba"), make_model(name, "numpy")


def median_seconds(fn, repeats=5):
    """Median wall time of ``fn()`` over ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
