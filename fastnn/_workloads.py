"""The benchmark workloads of WORKLOADS.md, built from fixed seeds.

Shared by ``python -m fastnn bench`` and the asv suites in ``benchmarks/``.
"""

from dataclasses import dataclass
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class Workload:
    name: str
    hidden: tuple
    dtype: str
    batch_size: int
    epochs: int
    lr: float


WORKLOADS = {
    "W-tiny": Workload("W-tiny", (16, 16), "float64", 16, 200, 0.01),
    "W-small": Workload("W-small", (128, 64), "float64", 32, 20, 1e-3),
    "W-large": Workload("W-large", (512, 256), "float32", 128, 1, 1e-3),
}


@lru_cache(maxsize=None)
def load(name):
    """``(X_train, y_train, X_test, y_test)`` of a workload (test arrays may be None)."""
    from sklearn.datasets import load_digits, load_iris, make_classification
    from sklearn.model_selection import train_test_split

    if name == "W-tiny":
        X, y = load_iris(return_X_y=True)
        X = (X - X.mean(axis=0)) / X.std(axis=0)
        return X, y, None, None
    if name == "W-small":
        X, y = load_digits(return_X_y=True)
        Xtr, Xte, ytr, yte = train_test_split(X / 16.0, y, test_size=0.2, random_state=0)
        return Xtr, ytr, Xte, yte
    if name == "W-large":
        X, y = make_classification(n_samples=60000, n_features=784, n_informative=64,
                                   n_classes=10, random_state=0)
        return X.astype(np.float32), y, None, None
    raise ValueError(f"unknown workload {name!r}; expected one of {sorted(WORKLOADS)}")


def make_model(name, backend, seed=0):
    """A fresh ``Sequential`` for workload ``name`` on ``backend``."""
    import fastnn

    spec = WORKLOADS[name]
    X, y, _, _ = load(name)
    n_classes = len(np.unique(y))
    layers = [fastnn.Dense(u, activation="relu") for u in spec.hidden]
    layers.append(fastnn.Dense(n_classes, activation="softmax"))
    return fastnn.Sequential(layers, optimizer=fastnn.optimizers.Adam(learning_rate=spec.lr),
                             loss="categorical_crossentropy", backend=backend,
                             dtype=spec.dtype, seed=seed)


def layer_sizes(name):
    """Widths of workload ``name``'s network, input first."""
    spec = WORKLOADS[name]
    X, y, _, _ = load(name)
    return (X.shape[1], *spec.hidden, len(np.unique(y)))


def executed_flops(name):
    """Floating-point operations one epoch of training workload ``name`` executes.

    WORKLOADS.md's count: per sample 2 * n_weights for the forward products, as many for
    the weight gradients, and 2 * (n_weights - the first layer's) for the input gradients
    (the input layer gets none); biases, activations, loss and updates are left out.
    """
    sizes = layer_sizes(name)
    nw = [a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
    return float(load(name)[0].shape[0] * (6 * sum(nw) - 2 * nw[0]))


def gemm_peak(dtype, threads=None, n=2048, repeats=7):
    """GFLOP/s of an ``n x n x n`` product in NumPy's BLAS (the kernels call the same
    OpenBLAS where NumPy's wheel brings one): the machine's practical gemm limit.

    ``threads`` caps the BLAS threads for the measurement (None: as configured). The
    fastest of ``repeats`` products after one untimed one: a limit is what the machine
    reaches, and a shared host's slow phases only pull a median below it (on 2026-12-07 a
    median peak of 150 GFLOP/s came out below the 177 that the epoch's own products
    reached through the same BLAS minutes earlier).
    """
    import time
    from contextlib import nullcontext

    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n)).astype(dtype) for _ in range(2))
    out = np.empty((n, n), dtype)
    limit = nullcontext() if threads is None else threadpool_limits(threads, user_api="blas")
    times = []
    with limit:
        np.dot(a, b, out)
        for _ in range(repeats):
            start = time.perf_counter()
            np.dot(a, b, out)
            times.append(time.perf_counter() - start)
    return 2.0 * n ** 3 / min(times) / 1e9


def products_seconds(name, repeats=15):
    """Seconds one epoch of ``name`` spends in its matrix products alone, timed product by
    product through NumPy's BLAS at the epoch's shapes (full batches; the remainder batch
    counted as a full one): the epoch's floor while those products go through this BLAS.

    Each product counts its fastest of ``repeats`` calls into a preallocated output, timed
    in rounds of the batch's products in order, as an epoch calls them. A floor is what the
    machine reaches: medians of back-to-back calls put this floor at 1.48 s, above the
    1.10 s epoch of the same run, when a slow phase of the host held its second core
    (2026-12-07, runs k and m).
    """
    import time

    spec = WORKLOADS[name]
    sizes = layer_sizes(name)
    rows = spec.batch_size
    dtype = np.dtype(spec.dtype)
    rng = np.random.default_rng(0)
    acts = [rng.standard_normal((rows, s)).astype(dtype) for s in sizes]
    deltas = [rng.standard_normal((rows, s)).astype(dtype) for s in sizes[1:]]
    weights = [rng.standard_normal((a, b)).astype(dtype)
               for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
    products = []
    for layer, w in enumerate(weights):
        products.append((acts[layer], w, np.empty((rows, w.shape[1]), dtype)))  # forward
        products.append((acts[layer].T, deltas[layer], np.empty_like(w)))      # weight grad
        if layer > 0:                                                          # input grad
            products.append((deltas[layer], w.T, np.empty((rows, w.shape[0]), dtype)))
    for a, b, out in products:
        np.dot(a, b, out)
    fastest = [float("inf")] * len(products)
    for _ in range(repeats):
        for i, (a, b, out) in enumerate(products):
            start = time.perf_counter()
            np.dot(a, b, out)
            fastest[i] = min(fastest[i], time.perf_counter() - start)
    n = load(name)[0].shape[0]
    return sum(fastest) * -(-n // rows)


# --- inference, compile and estimator workloads (added; the three above stay as they are) ---

@dataclass(frozen=True)
class InferWorkload:
    name: str
    model: str      # the training workload whose network (and data) it predicts with
    rows: int       # rows per predict_proba call
    dtype: str
    metric: str     # "latency" (seconds per call) or "throughput" (rows per second)


INFER_WORKLOADS = {
    "W-infer1": InferWorkload("W-infer1", "W-small", 1, "float64", "latency"),
    "W-inferB": InferWorkload("W-inferB", "W-large", 10000, "float32", "throughput"),
}

# Rows of W-large the W-inferB model is fitted on before timing: predict cost does not
# depend on the weights' values, and a full W-large epoch would dominate setup.
_INFER_B_FIT_ROWS = 2048


@lru_cache(maxsize=None)
def infer_rows(name):
    """The rows each ``predict_proba`` call of inference workload ``name`` gets."""
    spec = INFER_WORKLOADS[name]
    X, _, X_test, _ = load(spec.model)
    source = X if X_test is None else X_test  # predict on held-out rows where there are any
    return np.ascontiguousarray(source[: spec.rows])


def make_infer_model(name, backend, seed=0):
    """A fitted ``Sequential`` of inference workload ``name`` on ``backend``.

    W-infer1: the W-small digits model trained for its 20 epochs (a real model).
    W-inferB: the W-large network after one epoch over its first 2048 rows.
    """
    spec = INFER_WORKLOADS[name]
    train = WORKLOADS[spec.model]
    X, y, _, _ = load(spec.model)
    model = make_model(spec.model, backend, seed)
    if name == "W-inferB":
        X, y = X[:_INFER_B_FIT_ROWS], y[:_INFER_B_FIT_ROWS]
        model.fit(X, y, epochs=1, batch_size=train.batch_size)
    else:
        model.fit(X, y, epochs=train.epochs, batch_size=train.batch_size)
    return model


def compiled_predictor(model):
    """``model.compile_predictor()`` when the model API has one, else None.

    The hook for the issue-4 goal "W-infer1 <= 2 us through a compiled predictor": the
    report and the asv suite time whatever callable it returns on one row.
    """
    factory = getattr(model, "compile_predictor", None)
    return factory() if callable(factory) else None


# W-compile: a fresh process imports fastnn and runs the first W-tiny fit. The iris rows
# travel as literals so that the timed code imports nothing but fastnn (and NumPy).
_COMPILE_SETUP = """\
import os, sys, tempfile
{cache}
DATA_X = {X!r}
DATA_Y = {y!r}
"""

_COMPILE_STMT = """\
import numpy as np
import fastnn
_m = fastnn.Sequential(
    [fastnn.Dense(16, activation="relu"), fastnn.Dense(16, activation="relu"),
     fastnn.Dense(3, activation="softmax")],
    optimizer=fastnn.optimizers.Adam(learning_rate={lr!r}),
    loss="categorical_crossentropy", backend="numba", dtype="float64", seed=0)
_m.fit(np.asarray(DATA_X), np.asarray(DATA_Y), epochs={epochs}, batch_size={batch_size})
"""


def compile_code(cache_dir=None):
    """``(stmt, setup)`` of W-compile: ``stmt`` imports fastnn and runs the first W-tiny fit.

    ``setup`` (untimed) points ``NUMBA_CACHE_DIR`` at ``cache_dir``, or at a new empty
    temporary directory when ``cache_dir`` is None (a cold start), and builds the data.
    Run both in a fresh interpreter; ``stmt`` must be the first import of fastnn there.
    """
    spec = WORKLOADS["W-tiny"]
    X, y, _, _ = load("W-tiny")
    if cache_dir is None:
        cache = ("os.environ['NUMBA_CACHE_DIR'] = tempfile.mkdtemp(prefix='fastnn-cold-')\n"
                 "import atexit, shutil\n"
                 "atexit.register(shutil.rmtree, os.environ['NUMBA_CACHE_DIR'], True)")
    else:
        cache = f"os.environ['NUMBA_CACHE_DIR'] = {str(cache_dir)!r}"
    setup = _COMPILE_SETUP.format(cache=cache, X=X.tolist(), y=[int(v) for v in y])
    stmt = _COMPILE_STMT.format(lr=spec.lr, epochs=spec.epochs, batch_size=spec.batch_size)
    return stmt, setup


def run_compile(cache_dir=None, timeout=600):
    """Run W-compile in a fresh interpreter; seconds of ``stmt`` and of the whole process."""
    import subprocess
    import sys
    import time

    stmt, setup = compile_code(cache_dir)
    code = (setup + "import time\n_t0 = time.perf_counter()\n" + stmt
            + "print(repr(time.perf_counter() - _t0))\n")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"W-compile subprocess failed:\n{proc.stderr[-2000:]}")
    return float(proc.stdout.strip().splitlines()[-1]), wall


# scikit-learn estimator comparisons of issue 3, on the data of a training workload.
# tol=0 and n_iter_no_change > max_iter make both libraries run every epoch.
ESTIMATOR_CASES = {
    "digits (128,64)": ("W-small", dict(hidden_layer_sizes=(128, 64), batch_size=32,
                                        max_iter=20)),
    "iris (16,16)": ("W-tiny", dict(hidden_layer_sizes=(16, 16), batch_size=16,
                                    learning_rate_init=0.01, max_iter=200, alpha=0.0)),
    # no goal of the issue's; the sparse path's speed on text-like data (estimator_data)
    "sparse 4000x20000 (64,)": ("sparse", dict(hidden_layer_sizes=(64,), max_iter=3)),
}


@lru_cache(maxsize=None)
def _sparse_text_like():
    # 4000 rows of 20000 columns, 50 stored values a row (bag-of-words-like CSR), 3 classes
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    n, d, per_row = 4000, 20000, 50
    cols = rng.integers(0, d, (n, per_row))
    X = sp.csr_matrix((rng.random(n * per_row), cols.ravel(),
                       np.arange(0, n * per_row + 1, per_row)), shape=(n, d))
    X.sum_duplicates()
    y = (X @ rng.standard_normal(d) > 0).astype(int) + (X @ rng.standard_normal(d) > 0)
    return X, y


def make_estimator(case, library, random_state=0):
    """An unfitted ``MLPClassifier`` of ``case`` from ``library`` ("fastnn" or "sklearn")."""
    if library == "fastnn":
        from fastnn.estimators import MLPClassifier
    elif library == "sklearn":
        from sklearn.neural_network import MLPClassifier
    else:
        raise ValueError(f"unknown library {library!r}; expected 'fastnn' or 'sklearn'")
    _, params = ESTIMATOR_CASES[case]
    return MLPClassifier(**params, tol=0.0, n_iter_no_change=params["max_iter"] + 1,
                         random_state=random_state)


def estimator_data(case):
    """``(X, y)`` a case's estimators are fitted on (the workload's training rows)."""
    source = ESTIMATOR_CASES[case][0]
    if source == "sparse":
        return _sparse_text_like()
    X, y, _, _ = load(source)
    return X, y
