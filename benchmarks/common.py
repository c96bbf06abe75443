"""Workload data and model pairs for the asv suites (see WORKLOADS.md).

The workloads themselves live in ``fastnn._workloads`` so that ``python -m fastnn
bench`` measures exactly what asv measures.

``FASTNN_BENCH_QUICK=1`` (set by ``tests/test_benchmarks.py``) skips the workloads built
on the 60000 x 784 W-large data set, whose generation alone takes ~9 s in every
benchmark process, and makes the ``track_`` ratios take one repeat per engine, so the
quick smoke run of the whole suite stays within a few minutes.
"""

import os
import statistics
import time
import warnings

from fastnn._workloads import WORKLOADS, load, make_model

__all__ = ["QUICK", "REPEATS", "WORKLOADS", "load", "make_model", "make_pair",
           "median_seconds", "quiet_fit", "skip_in_quick_mode"]

QUICK = os.environ.get("FASTNN_BENCH_QUICK") == "1"
REPEATS = 1 if QUICK else 5
LARGE = ("W-large", "W-inferB")


def skip_in_quick_mode(workload):
    """Call from ``setup``: asv skips the benchmark (NotImplementedError) in quick mode."""
    if QUICK and workload in LARGE:
        raise NotImplementedError(f"{workload} is skipped when FASTNN_BENCH_QUICK=1")


def make_pair(name):
    """Numba- and NumPy-backend models for workload ``name``, same seed."""
    return make_model(name, "numba"), make_model(name, "numpy")


def median_seconds(fn, repeats=None):
    """Median wall time of ``fn()`` over ``repeats`` calls (default ``REPEATS``)."""
    times = []
    for _ in range(REPEATS if repeats is None else repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def quiet_fit(estimator, X, y):
    """``estimator.fit(X, y)`` without the ConvergenceWarning of a fixed ``max_iter``."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(X, y)
