"""fastnn.MLPClassifier / MLPRegressor against the installed scikit-learn.

Parity: for the same ``random_state`` in float64 the two libraries must produce the
same run: ``loss_curve_``, ``coefs_`` and ``intercepts_`` to rtol 1e-9, equal ``n_iter_``
and ``t_``, the same validation scores, the same warnings, and the same predicted labels.
Weights and regression predictions are compared to rtol 1e-9 of each array's scale
(see ``_assert_close_to_scale``). The data are real datasets that ship with
scikit-learn, subsampled and standardized so each fit takes milliseconds.

L-BFGS runs are compared over at most 8 iterations: the two libraries sum the same
products in different orders (hand loops or BLAS), and L-BFGS's line search amplifies
those last-bit differences by roughly 10x per iteration after the first ten or so (on
iris/tanh, 1e-13 after 5 iterations, 1e-10 after 15, 1e-5 after 40; the NumPy backend,
which shares scikit-learn's BLAS calls, drifts the same way, only later).
"""

import pickle
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.datasets import (
    load_breast_cancer,
    load_diabetes,
    load_digits,
    load_iris,
    load_linnerud,
    load_wine,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.neural_network import MLPClassifier as SkMLPClassifier
from sklearn.neural_network import MLPRegressor as SkMLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import parametrize_with_checks

from fastnn import MLPClassifier, MLPRegressor

RTOL = 1e-9


# --- data -----------------------------------------------------------------------------
def _standardize(X):
    return (X - X.mean(axis=0)) / np.where(X.std(axis=0) > 0, X.std(axis=0), 1.0)


def _subsample(X, y, n, seed=0):
    idx = np.random.RandomState(seed).permutation(X.shape[0])[:n]
    return _standardize(X[idx]), y[idx]


def _task(name):
    """(X, y, is_classifier) for one task; y of a regression task is standardized."""
    if name == "binary":  # breast cancer: 2 classes
        X, y = _subsample(*load_breast_cancer(return_X_y=True), 150)
        return X, y, True
    if name == "multiclass":  # wine: 3 classes
        X, y = _subsample(*load_wine(return_X_y=True), 150)
        return X, y, True
    if name == "multiclass-iris":
        X, y = load_iris(return_X_y=True)
        return _standardize(X), y, True
    if name == "multiclass-digits":  # 10 classes, 64 features
        X, y = _subsample(*load_digits(return_X_y=True), 200)
        return X, y, True
    if name == "multilabel":  # digits, 3 indicator columns
        X, d = _subsample(*load_digits(return_X_y=True), 200)
        Y = np.column_stack([d % 2 == 0, d >= 5, d % 3 == 0]).astype(int)
        return X, Y, True
    if name == "regression":  # diabetes, one output
        X, y = _subsample(*load_diabetes(return_X_y=True), 150)
        return X, (y - y.mean()) / y.std(), False
    if name == "regression-multi":  # linnerud: 3 outputs, 20 samples
        X, Y = load_linnerud(return_X_y=True)
        return _standardize(X), _standardize(Y), False
    raise ValueError(name)


def _weights(n, seed=1):
    return np.random.RandomState(seed).uniform(0.2, 2.0, n)


SOLVERS = {
    "adam": dict(solver="adam", learning_rate_init=0.01),
    "sgd-nesterov": dict(solver="sgd", learning_rate_init=0.05),
    "sgd-momentum-invscaling": dict(solver="sgd", learning_rate_init=0.2, momentum=0.5,
                                    nesterovs_momentum=False, learning_rate="invscaling",
                                    power_t=0.3),
    "sgd-adaptive": dict(solver="sgd", learning_rate_init=0.05, learning_rate="adaptive",
                         momentum=0.0, tol=1e-2, n_iter_no_change=1),
    "lbfgs": dict(solver="lbfgs", max_iter=8),
}


# --- helpers ----------------------------------------------------------------------------
def _fit_recording(est, *args, method="fit", **kwargs):
    """Fit and return the (category, message) of every warning raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        getattr(est, method)(*args, **kwargs)
    return [(w.category, str(w.message)) for w in caught]


def _assert_close_to_scale(a, b):
    """``|a - b| <= RTOL * max|b|`` elementwise: rtol 1e-9 relative to the array's scale.

    A weight that happens to sit near zero (say 5e-7 in a layer of 0.3s) inherits the
    last-bit rounding of its larger neighbours (~1e-16 absolute), so an elementwise
    relative test on it would measure its smallness, not the engine's accuracy.
    """
    b = np.asarray(b)
    assert_allclose(a, b, rtol=RTOL, atol=RTOL * float(np.max(np.abs(b), initial=0.0)))


def _assert_same_run(fa, sk, X):
    assert fa.n_iter_ == sk.n_iter_
    assert fa.t_ == sk.t_
    assert fa.n_layers_ == sk.n_layers_
    assert fa.n_outputs_ == sk.n_outputs_
    assert fa.out_activation_ == sk.out_activation_
    assert fa.n_features_in_ == sk.n_features_in_
    assert_allclose(fa.loss_, sk.loss_, rtol=RTOL)
    for name in ("loss_curve_", "validation_scores_", "best_loss_", "best_validation_score_"):
        assert hasattr(fa, name) == hasattr(sk, name), name
        if hasattr(sk, name):
            a, b = getattr(fa, name), getattr(sk, name)
            if b is None:
                assert a is None, name
            else:
                assert_allclose(a, b, rtol=RTOL, err_msg=name)
    assert len(fa.coefs_) == len(sk.coefs_)
    for a, b in zip(fa.coefs_ + fa.intercepts_, sk.coefs_ + sk.intercepts_):
        assert a.shape == b.shape and a.dtype == b.dtype
        _assert_close_to_scale(a, b)
    if hasattr(sk, "classes_"):
        assert_array_equal(fa.classes_, sk.classes_)
        assert_array_equal(fa.predict(X), sk.predict(X))
        assert_allclose(fa.predict_proba(X), sk.predict_proba(X), rtol=RTOL, atol=1e-15)
    else:
        _assert_close_to_scale(fa.predict(X), sk.predict(X))


def _run_pair(task, solver, activation, early_stopping, weighted, backend="numba",
              hidden=(12, 8), **extra):
    X, y, is_clf = _task(task)
    params = dict(hidden_layer_sizes=hidden, activation=activation, random_state=3,
                  max_iter=12, batch_size=32, early_stopping=early_stopping,
                  n_iter_no_change=3, validation_fraction=0.2, alpha=1e-3)
    params.update(SOLVERS[solver])
    params.update(extra)
    Sk, Fa = (SkMLPClassifier, MLPClassifier) if is_clf else (SkMLPRegressor, MLPRegressor)
    sk, fa = Sk(**params), Fa(backend=backend, **params)
    kwargs = {"sample_weight": _weights(X.shape[0])} if weighted else {}
    assert _fit_recording(fa, X, y, **kwargs) == _fit_recording(sk, X, y, **kwargs)
    _assert_same_run(fa, sk, X)
    return fa, sk


# --- numerical parity -----------------------------------------------------------------------
TASKS = ["binary", "multiclass", "multilabel", "regression", "regression-multi"]
ACTIVATIONS = ["relu", "tanh", "logistic", "identity"]


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("solver", list(SOLVERS))
def test_parity_quick(task, solver):
    _run_pair(task, solver, "tanh", early_stopping=False, weighted=False)


@pytest.mark.slow
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("early_stopping", [False, True], ids=["no-es", "es"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("solver", list(SOLVERS))
@pytest.mark.parametrize("task", TASKS)
def test_parity_matrix(task, solver, activation, early_stopping, weighted):
    _run_pair(task, solver, activation, early_stopping, weighted)


@pytest.mark.parametrize("task", ["multiclass-iris", "multiclass-digits", "binary",
                                  "regression"])
@pytest.mark.parametrize("solver", ["adam", "sgd-nesterov", "lbfgs"])
def test_parity_numpy_backend(task, solver):
    _run_pair(task, solver, "relu", early_stopping=True, weighted=True, backend="numpy")


@pytest.mark.parametrize("hidden", [(), 5, (16, 12, 8)], ids=["no-hidden", "int", "deep"])
@pytest.mark.parametrize("task", ["multiclass", "binary", "multilabel", "regression"])
@pytest.mark.parametrize("solver", ["adam", "sgd-nesterov", "lbfgs"])
def test_parity_architectures(task, solver, hidden):
    _run_pair(task, solver, "logistic", early_stopping=True, weighted=True, hidden=hidden)


def test_parity_blas_sized_layers():
    """The issue's digits network: (128, 64) at batch 32 takes the in-kernel BLAS path."""
    X, y, _ = _task("multiclass-digits")
    params = dict(hidden_layer_sizes=(128, 64), batch_size=32, max_iter=3, random_state=0)
    sk, fa = SkMLPClassifier(**params), MLPClassifier(**params)
    assert _fit_recording(fa, X, y) == _fit_recording(sk, X, y)
    _assert_same_run(fa, sk, X)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("bit_generator", ["MT19937", "PCG64"])
def test_parity_random_state_instance(bit_generator, backend):
    """A ``RandomState`` passed in is drawn from exactly as scikit-learn draws from it and
    left in the same state. The numba backend shuffles on MT19937 in a kernel; on any
    other bit generator, and on the NumPy backend, through ``RandomState.shuffle``."""
    X, y, _ = _task("multiclass-iris")

    def generator():
        return np.random.RandomState(getattr(np.random, bit_generator)(5))

    theirs, ours = generator(), generator()
    params = dict(hidden_layer_sizes=(8,), batch_size=16, max_iter=7, tol=0.0,
                  n_iter_no_change=50)
    sk = SkMLPClassifier(random_state=theirs, **params)
    fa = MLPClassifier(random_state=ours, backend=backend, **params)
    assert _fit_recording(fa, X, y) == _fit_recording(sk, X, y)
    _assert_same_run(fa, sk, X)
    assert_array_equal(ours.randint(0, 2**31, 700), theirs.randint(0, 2**31, 700))


def test_parity_when_the_generator_layout_check_fails(monkeypatch):
    """Where the MT19937 state is not laid out as expected, the shuffles fall back to
    ``RandomState.shuffle``: the same run, and the state is never written."""
    import fastnn.estimators as fe

    monkeypatch.setattr(fe, "_MT19937_LAYOUT_OK", False)
    called = []
    monkeypatch.setattr(fe.K, "shuffled_orders", lambda *args: called.append(args))
    X, y, _ = _task("multiclass-iris")
    params = dict(hidden_layer_sizes=(8,), batch_size=16, max_iter=5, tol=0.0,
                  n_iter_no_change=50, random_state=2)
    sk, fa = SkMLPClassifier(**params), MLPClassifier(**params)
    assert _fit_recording(fa, X, y) == _fit_recording(sk, X, y)
    _assert_same_run(fa, sk, X)
    assert not called


@pytest.mark.parametrize("task", ["multiclass-iris", "multiclass-digits"])
def test_parity_default_parameters(task):
    """scikit-learn's defaults (100 hidden units, batch 200, 200 epochs, tol stop)."""
    X, y, _ = _task(task)
    sk, fa = SkMLPClassifier(random_state=0), MLPClassifier(random_state=0)
    assert _fit_recording(fa, X, y) == _fit_recording(sk, X, y)
    _assert_same_run(fa, sk, X)


@pytest.mark.parametrize("solver", ["adam", "sgd-nesterov"])
@pytest.mark.parametrize("task", ["multiclass", "binary", "multilabel", "regression"])
def test_early_stopping_restores_best_weights(task, solver):
    fa, sk = _run_pair(task, solver, "relu", early_stopping=True, weighted=False,
                       max_iter=40, n_iter_no_change=2, tol=1e-3)
    best = int(np.argmax(fa.validation_scores_))
    assert fa.best_validation_score_ == fa.validation_scores_[best]
    assert fa.n_iter_ < 40  # the stop rule fired, and the best epoch was not the last
    assert best < fa.n_iter_ - 1


def test_early_stopping_small_validation_set():
    X, Y, _ = _task("regression-multi")
    for est in (SkMLPRegressor(early_stopping=True, validation_fraction=0.05),
                MLPRegressor(early_stopping=True, validation_fraction=0.05)):
        with pytest.raises(ValueError, match="The validation set is too small"):
            est.fit(X, Y)


@pytest.mark.parametrize("solver", ["adam", "sgd-nesterov", "sgd-momentum-invscaling"])
@pytest.mark.parametrize("task", ["multiclass", "binary", "multilabel", "regression"])
def test_partial_fit_parity(task, solver):
    X, y, is_clf = _task(task)
    params = dict(hidden_layer_sizes=(10,), random_state=5, batch_size=40,
                  **SOLVERS[solver])
    Sk, Fa = (SkMLPClassifier, MLPClassifier) if is_clf else (SkMLPRegressor, MLPRegressor)
    sk, fa = Sk(**params), Fa(**params)
    sw = _weights(X.shape[0])
    for step in range(4):
        rows = slice(step * 30, step * 30 + 60)
        kwargs = {"sample_weight": sw[rows]}
        if is_clf and step == 0:
            kwargs["classes"] = np.arange(y.shape[1]) if y.ndim == 2 else np.unique(y)
        got = _fit_recording(fa, X[rows], y[rows], method="partial_fit", **kwargs)
        assert got == _fit_recording(sk, X[rows], y[rows], method="partial_fit", **kwargs)
        _assert_same_run(fa, sk, X)


@pytest.mark.parametrize("solver", ["adam", "sgd-adaptive", "lbfgs"])
@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_warm_start_parity(task, solver):
    X, y, is_clf = _task(task)
    params = dict(hidden_layer_sizes=(10,), random_state=2, warm_start=True, batch_size=50,
                  **SOLVERS[solver])
    params["max_iter"] = 5 if solver == "lbfgs" else 6
    Sk, Fa = (SkMLPClassifier, MLPClassifier) if is_clf else (SkMLPRegressor, MLPRegressor)
    sk, fa = Sk(**params), Fa(**params)
    for _ in range(3):
        assert _fit_recording(fa, X, y) == _fit_recording(sk, X, y)
        _assert_same_run(fa, sk, X)


def test_warm_start_with_early_stopping_parity():
    """scikit-learn's aliasing of the best weights after a warm start is matched."""
    X, y, _ = _task("multiclass")
    params = dict(hidden_layer_sizes=(10,), random_state=4, warm_start=True, max_iter=15,
                  early_stopping=True, n_iter_no_change=2, learning_rate_init=0.02)
    sk, fa = SkMLPClassifier(**params), MLPClassifier(**params)
    for _ in range(3):
        assert _fit_recording(fa, X, y) == _fit_recording(sk, X, y)
        _assert_same_run(fa, sk, X)


def test_regressor_partial_fit_with_lbfgs_matches_sklearn_quirk():
    """scikit-learn's MLPRegressor.partial_fit runs a whole L-BFGS fit; so does ours."""
    X, y, _ = _task("regression")
    params = dict(hidden_layer_sizes=(6,), solver="lbfgs", max_iter=6, random_state=0)
    sk, fa = SkMLPRegressor(**params), MLPRegressor(**params)
    for _ in range(2):
        got = _fit_recording(fa, X, y, method="partial_fit")
        assert got == _fit_recording(sk, X, y, method="partial_fit")
        _assert_same_run(fa, sk, X)


def test_partial_fit_then_fit_parity():
    X, y, _ = _task("multiclass-iris")
    sk = SkMLPClassifier(hidden_layer_sizes=(6,), random_state=0, max_iter=5)
    fa = MLPClassifier(hidden_layer_sizes=(6,), random_state=0, max_iter=5)
    for est in (sk, fa):
        est.partial_fit(X, y, classes=[0, 1, 2])
        est.partial_fit(X, y)
    _assert_same_run(fa, sk, X)
    assert _fit_recording(fa, X, y) == _fit_recording(sk, X, y)
    _assert_same_run(fa, sk, X)


def test_poisson_parity():
    X, y = _subsample(*load_diabetes(return_X_y=True), 150)
    counts = np.round(y / 40.0)  # nonnegative counts 0..9
    for solver in ("adam", "sgd-nesterov", "lbfgs"):
        params = dict(loss="poisson", hidden_layer_sizes=(8,), random_state=0,
                      **SOLVERS[solver])
        params["max_iter"] = 8 if solver == "lbfgs" else 10
        if solver == "sgd-nesterov":
            params["learning_rate_init"] = 0.005
        sk, fa = SkMLPRegressor(**params), MLPRegressor(**params)
        assert _fit_recording(fa, X, counts) == _fit_recording(sk, X, counts)
        _assert_same_run(fa, sk, X)
        assert fa.out_activation_ == "exp" and (fa.predict(X) > 0).all()
    with pytest.raises(ValueError, match="y >= 0"):
        MLPRegressor(loss="poisson").fit(X, y - 1000)


def test_verbose_output_matches(capsys):
    X, y, _ = _task("multiclass")
    params = dict(hidden_layer_sizes=(8,), random_state=1, max_iter=30, verbose=True,
                  solver="sgd", learning_rate="adaptive", learning_rate_init=0.05,
                  early_stopping=True, n_iter_no_change=2, tol=1e-2)
    _fit_recording(SkMLPClassifier(**params), X, y)
    expected = capsys.readouterr().out
    _fit_recording(MLPClassifier(**params), X, y)
    got = capsys.readouterr().out
    assert "Iteration 1, loss = " in got and "Setting learning rate to" in got
    assert got == expected


def test_convergence_warning_and_batch_size_warning():
    X, y, _ = _task("multiclass-iris")
    with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(3\) reached"):
        MLPClassifier(max_iter=3, random_state=0).fit(X, y)
    with pytest.warns(UserWarning, match="batch_size"):
        with pytest.warns(ConvergenceWarning):
            MLPClassifier(max_iter=2, batch_size=1000, random_state=0).fit(X, y)
    with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge"):
        MLPClassifier(solver="lbfgs", max_iter=2, random_state=0).fit(X, y)


# --- dtypes, sparse input, API --------------------------------------------------------------
@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_float32_stays_float32(backend):
    X, y, _ = _task("multiclass-iris")
    X32 = X.astype(np.float32)
    fa = MLPClassifier(hidden_layer_sizes=(8,), random_state=0, max_iter=20,
                       learning_rate_init=0.01, backend=backend)
    with pytest.warns(ConvergenceWarning):
        fa.fit(X32, y)
    assert all(c.dtype == np.float32 for c in fa.coefs_ + fa.intercepts_)
    assert fa.predict_proba(X32).dtype == np.float32
    sk = SkMLPClassifier(hidden_layer_sizes=(8,), random_state=0, max_iter=20,
                         learning_rate_init=0.01)
    with pytest.warns(ConvergenceWarning):
        sk.fit(X32, y)
    assert_allclose(fa.loss_curve_, sk.loss_curve_, rtol=1e-4)
    assert_allclose(fa.predict_proba(X32), sk.predict_proba(X32), rtol=1e-3, atol=1e-4)
    fa64 = clone(fa).set_params(dtype="float64")
    with pytest.warns(ConvergenceWarning):
        fa64.fit(X32, y)
    assert fa64.coefs_[0].dtype == np.float64


@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_sparse_input_matches_dense(fmt):
    X, y, _ = _task("multiclass-digits")
    Xs = sp.csr_matrix(X) if fmt == "csr" else sp.csc_matrix(X)
    params = dict(hidden_layer_sizes=(10,), random_state=0, max_iter=5)
    dense, sparse = MLPClassifier(**params), MLPClassifier(**params)
    assert _fit_recording(dense, X, y) == _fit_recording(sparse, Xs, y)
    assert_array_equal(dense.loss_curve_, sparse.loss_curve_)
    assert_array_equal(dense.predict_proba(X), sparse.predict_proba(Xs))


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("kw", [dict(solver="adam"), dict(solver="sgd"),
                                dict(solver="lbfgs", max_iter=30),
                                dict(early_stopping=True),
                                dict(activation="tanh", hidden_layer_sizes=(7, 5))],
                         ids=["adam", "sgd", "lbfgs", "early-stopping", "tanh-2-layers"])
def test_sparse_fit_matches_sklearn_sparse_fit(backend, kw):
    X, y, _ = _task("multiclass-digits")
    Xs = sp.csr_matrix(X / 16.0)
    sw = np.random.default_rng(0).uniform(0.5, 2.0, len(y))
    params = dict(hidden_layer_sizes=(10,), max_iter=8, random_state=0)
    params.update(kw)
    fast, sk = MLPClassifier(backend=backend, **params), SkMLPClassifier(**params)
    for est in (fast, sk):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(Xs, y, sample_weight=sw)
    assert fast.n_iter_ == sk.n_iter_
    assert fast.loss_ == pytest.approx(sk.loss_, rel=RTOL)
    for a, b in zip(fast.coefs_ + fast.intercepts_, sk.coefs_ + sk.intercepts_):
        _assert_close_to_scale(a, b)
    assert_array_equal(fast.predict(Xs), sk.predict(Xs))
    assert_allclose(fast.predict_proba(Xs.tocsc()), sk.predict_proba(Xs), rtol=RTOL)


def test_malformed_csr_is_refused_before_the_kernels():
    # SciPy builds a CSR matrix from arrays without checking their values; the CSR kernels
    # would read rows of w past the end for a column index out of range
    import fastnn

    X, y, _ = _task("multiclass-iris")
    fast = MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, random_state=0)
    with pytest.warns(ConvergenceWarning):
        fast.fit(sp.csr_matrix(X), y)
    bad = sp.csr_matrix((np.ones(3), np.array([0, 2, 99]), np.array([0, 2, 3])), shape=(2, 4))
    # the same defect in CSC form: SciPy's own tocsr() of it crashed the process (-11)
    bad_csc = sp.csc_matrix((np.ones(3), np.array([0, 1, 10**6]), np.array([0, 2, 3, 3, 3])),
                            shape=(2, 4))
    model = fastnn.Sequential([fastnn.Dense(2, "softmax")], seed=0)
    for rows, message in ((bad, r"X is not a valid CSR matrix: .*indices must be < 4"),
                          (bad_csc, r"X is not a valid CSC matrix: .*indices must be < 2")):
        for call in (lambda: fast.predict(rows), lambda: fast.fit(rows, [0, 1]),
                     lambda: model.fit(rows, [0, 1], epochs=1)):
            with pytest.raises(ValueError, match=message):
                call()


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_sparse_input_is_never_densified(solver):
    # 300 x 200000 with 60 stored values a row: 480 MB as a dense float64 array, 0.3 MB as
    # CSR. NumPy's allocations (a densified copy would be one) are traced by tracemalloc:
    # fit + predict_proba take about what scikit-learn's take (measured: adam 54 vs 23 MB,
    # the difference being the start-of-epoch copy that a diverging epoch restores;
    # lbfgs 144 vs 131 MB, mostly SciPy's L-BFGS history).
    import tracemalloc

    rng = np.random.default_rng(0)
    n, d, per_row = 300, 200_000, 60
    cols = rng.integers(0, d, (n, per_row))
    X = sp.csr_matrix((rng.random(n * per_row), cols.ravel(),
                       np.arange(0, n * per_row + 1, per_row)), shape=(n, d))
    y = rng.integers(0, 2, n)
    peaks = []
    for cls in (MLPClassifier, SkMLPClassifier):
        tracemalloc.start()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                est = cls(hidden_layer_sizes=(2,), solver=solver, max_iter=2,
                          random_state=0).fit(X, y)
            est.predict_proba(X)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    assert peaks[0] < peaks[1] + 60e6, f"{peaks[0] / 1e6:.0f} MB vs {peaks[1] / 1e6:.0f} MB"


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_string_labels_parity(task):
    X, y, _ = _task(task)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    params = dict(hidden_layer_sizes=(6,), random_state=0, max_iter=4)
    sk, fa = SkMLPClassifier(**params), MLPClassifier(**params)
    assert _fit_recording(fa, X, names) == _fit_recording(sk, X, names)
    _assert_same_run(fa, sk, X)


def test_dataframe_input_matches_sklearn():
    # Column names become feature_names_in_; later inputs are held to them as scikit-learn
    # holds its own: the same run, the same warning for an array, the same error for
    # other names. A Series target and a one-column frame for the regressor.
    import pandas as pd

    X, y, _ = _task("multiclass-iris")
    columns = ["sepal length", "sepal width", "petal length", "petal width"]
    frame = pd.DataFrame(X, columns=columns)
    params = dict(hidden_layer_sizes=(6,), random_state=0, max_iter=4)
    sk, fa = SkMLPClassifier(**params), MLPClassifier(**params)
    assert _fit_recording(fa, frame, pd.Series(y)) == _fit_recording(sk, frame, pd.Series(y))
    assert fa.feature_names_in_.dtype == object
    assert_array_equal(fa.feature_names_in_, sk.feature_names_in_)
    _assert_same_run(fa, sk, frame)
    for est in (fa, sk):
        with pytest.warns(UserWarning, match="X does not have valid feature names, but "
                                             "MLPClassifier was fitted with feature names"):
            est.predict(X)
        with pytest.raises(ValueError, match="The feature names should match those that "
                                             "were passed during fit"):
            est.predict(frame[columns[::-1]])
    Xr, yr, _ = _task("regression")
    frame = pd.DataFrame(Xr, columns=[f"f{i}" for i in range(Xr.shape[1])])
    sk, fa = SkMLPRegressor(**params), MLPRegressor(**params)
    target = pd.DataFrame({"target": yr})
    assert _fit_recording(fa, frame, target) == _fit_recording(sk, frame, target)
    _assert_same_run(fa, sk, frame)


def test_input_forms_match_and_bad_input_raises():
    X, y, _ = _task("multiclass-iris")
    fa = MLPClassifier(hidden_layer_sizes=(6,), random_state=0, max_iter=3)
    with pytest.warns(ConvergenceWarning):
        fa.fit(X, y)
    ref = fa.predict_proba(X)
    for form in (X.tolist(), np.asfortranarray(X), np.repeat(X, 2, axis=1)[:, ::2]):
        assert_array_equal(fa.predict_proba(form), ref)
    Xi = np.round(X * 10).astype(np.int64)
    assert_array_equal(fa.predict_proba(Xi), fa.predict_proba(Xi.astype(np.float64)))
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        fa.predict(bad)
    with pytest.raises(ValueError, match="X has 3 features, but MLPClassifier is expecting 4"):
        fa.predict_proba(X[:, :3])
    with pytest.raises(ValueError, match="0 sample"):
        fa.predict(X[:0])
    from sklearn.exceptions import NotFittedError
    with pytest.raises(NotFittedError):
        MLPClassifier().predict(X)


def test_pickle_clone_and_views():
    X, y, _ = _task("multiclass-iris")
    fa = MLPClassifier(hidden_layer_sizes=(8, 4), random_state=0, max_iter=30,
                       learning_rate_init=0.01)
    with pytest.warns(ConvergenceWarning):
        fa.fit(X, y)
    theta = fa._theta
    assert all(np.shares_memory(c, theta) for c in fa.coefs_ + fa.intercepts_)
    back = pickle.loads(pickle.dumps(fa))
    assert_array_equal(back.predict_proba(X), fa.predict_proba(X))
    assert all(np.shares_memory(c, back._theta) for c in back.coefs_ + back.intercepts_)
    # a user-assigned coefs_ list is what predict uses
    back.coefs_ = [np.zeros_like(c) for c in back.coefs_]
    assert_allclose(back.predict_proba(X), np.tile(back.predict_proba(X[:1]), (len(X), 1)))
    fresh = clone(fa)
    assert not hasattr(fresh, "coefs_")
    assert fresh.get_params() == fa.get_params()


def _fit_both(cls_pair, X, y, backend="numba", **kw):
    # (fastnn's, scikit-learn's) estimator fitted on the same data with the same kw
    fitted = []
    for cls, extra in zip(cls_pair, ({"backend": backend}, {})):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            fitted.append(cls(**kw, **extra).fit(X, y))
    return fitted


CLASSIFIERS = (MLPClassifier, SkMLPClassifier)
REGRESSORS = (MLPRegressor, SkMLPRegressor)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_weights_edited_after_fit_are_the_weights(backend):
    # coefs_ holds the weights predict uses, as in scikit-learn: in-place edits to an array
    # taken from an unpickled model (joblib.load) and to an array the user assigned,
    # before and after a predict
    X, y, _ = _task("multiclass-iris")
    kw = dict(hidden_layer_sizes=(5,), max_iter=30, random_state=0)
    fast, sk = _fit_both(CLASSIFIERS, X, y, backend=backend, **kw)
    back = [pickle.loads(pickle.dumps(m)) for m in (fast, sk)]
    held = [m.coefs_[0] for m in back]
    before = [m.predict_proba(X[:3]) for m in back]
    for w in held:
        w[:2] = 0.0  # pruning the first two inputs' weights in place
    after = [m.predict_proba(X[:3]) for m in back]
    assert_allclose(before[0], before[1], rtol=RTOL)
    assert_allclose(after[0], after[1], rtol=RTOL)
    assert np.abs(after[0] - before[0]).max() > 1e-3
    assert back[0].coefs_[0] is held[0]
    own = [m.coefs_[1].copy() for m in (fast, sk)]
    for m, w in zip((fast, sk), own):
        m.coefs_[1] = w
        m.predict(X[:3])
        w *= -1.0
    assert_allclose(fast.predict_proba(X), sk.predict_proba(X), rtol=RTOL)
    assert fast.coefs_[1] is own[0]
    # a warm-started fit trains from the assigned weights, like scikit-learn's
    for m in (fast, sk):
        m.set_params(warm_start=True, max_iter=3)
    refit = []
    for m in (fast, sk):
        with pytest.warns(ConvergenceWarning):
            refit.append(m.fit(X, y).loss_)
    assert refit[0] == pytest.approx(refit[1], rel=RTOL)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_activations_changed_after_fit_take_effect(backend):
    X, y, _ = _task("multiclass-iris")
    fast, sk = _fit_both(CLASSIFIERS, X, y, backend=backend, hidden_layer_sizes=(5,),
                         max_iter=30, random_state=0)
    for m in (fast, sk):
        m.set_params(activation="tanh")
    assert_allclose(fast.predict_proba(X), sk.predict_proba(X), rtol=RTOL)
    for m in (fast, sk):
        m.out_activation_ = "identity"  # raw outputs (logits), a known scikit-learn idiom
    logits = [m.predict_proba(X) for m in (fast, sk)]
    assert_allclose(logits[0], logits[1], rtol=RTOL)
    assert (logits[0] < 0).any()
    for m in (fast, sk):
        m.out_activation_ = "softmax"
        m.set_params(warm_start=True, max_iter=5)
    losses = []
    for m in (fast, sk):
        with pytest.warns(ConvergenceWarning):
            losses.append(m.fit(X, y).loss_)  # trains the tanh network
    assert losses[0] == pytest.approx(losses[1], rel=RTOL)
    assert_allclose(fast.coefs_[0], sk.coefs_[0], rtol=RTOL, atol=1e-12)


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_loss_attributes_are_numpy_floats_as_in_sklearn(solver):
    # their repr is part of what users see: np.float64(0.5), as scikit-learn's
    X, y, _ = _task("multiclass-iris")
    fast, sk = _fit_both(CLASSIFIERS, X, y, solver=solver, hidden_layer_sizes=(5,),
                         max_iter=3, random_state=0)
    for name in ("loss_", "best_loss_"):
        if hasattr(sk, name):
            assert type(getattr(fast, name)) is type(getattr(sk, name)), name
    if solver == "adam":
        assert [type(v) for v in fast.loss_curve_] == [type(v) for v in sk.loss_curve_]
        assert repr(fast.loss_curve_[:1])[:12] == repr(sk.loss_curve_[:1])[:12]


def test_float32_model_answers_float64_rows_in_float64():
    X, y, _ = _task("regression")
    kw = dict(hidden_layer_sizes=(5,), max_iter=20, random_state=0)
    fast, sk = _fit_both(REGRESSORS, X.astype(np.float32), y, **kw)
    assert fast.coefs_[0].dtype == sk.coefs_[0].dtype == np.float32
    # the same float32 weights in both (float32 training itself differs in the last bits)
    sk.coefs_ = [c.copy() for c in fast.coefs_]
    sk.intercepts_ = [b.copy() for b in fast.intercepts_]
    for rows in (X[:7], sp.csr_matrix(X[:7]), X[:7].astype(np.float32), X[:7].astype(int)):
        got, want = fast.predict(rows), sk.predict(rows)
        assert got.dtype == want.dtype
        tol = 1e-5 if want.dtype == np.float32 else 1e-12
        assert_allclose(got, want, rtol=tol)
    # the float64 answer uses the float32 weights exactly as they are
    exact = fast.predict(X[:7])
    fast.set_params(backend="numpy")
    assert_allclose(fast.predict(X[:7]), exact, rtol=1e-13)


def test_assume_finite_lets_nan_rows_through_as_sklearn_does():
    import sklearn

    X, y, _ = _task("multiclass-iris")
    fast, sk = _fit_both(CLASSIFIERS, X, y, hidden_layer_sizes=(5,), max_iter=5,
                         random_state=0)
    rows = X[:3].copy()
    rows[0, 0] = np.nan
    rows[1, 2] = np.inf
    with sklearn.config_context(assume_finite=True), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scikit-learn's matmul: inf * 0
        got, want = fast.predict_proba(rows), sk.predict_proba(rows)
        labels = fast.predict(rows[2:]), sk.predict(rows[2:])
    assert_array_equal(np.isnan(got), np.isnan(want))
    assert np.isnan(got[0]).all()
    assert_allclose(got[2], want[2], rtol=RTOL)
    assert_array_equal(*labels)
    with pytest.raises(ValueError, match="Input X contains NaN"):
        fast.predict_proba(rows)  # the check is back outside the context


def test_pipeline_grid_search_cross_val_score():
    X, y, _ = _task("multiclass-iris")
    pipe = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(8,), max_iter=300,
                                                         learning_rate_init=0.02,
                                                         random_state=0))
    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.mean() > 0.8
    grid = GridSearchCV(MLPRegressor(hidden_layer_sizes=(8,), solver="lbfgs", max_iter=200,
                                     random_state=0),
                        {"alpha": [1e-4, 1e-1]}, cv=3)
    Xr, yr, _ = _task("regression")
    with warnings.catch_warnings():
        # lbfgs may stop at max_iter in some folds; the search itself is under test here
        warnings.simplefilter("ignore", ConvergenceWarning)
        grid.fit(Xr, yr)
    assert grid.best_params_["alpha"] in (1e-4, 1e-1)


def test_digits_accuracy_floor():
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    fa = MLPClassifier(hidden_layer_sizes=(64,), random_state=0, max_iter=100,
                       early_stopping=True, learning_rate_init=0.01)
    fa.fit(X[:1200], y[:1200])
    assert fa.n_iter_ < 100  # stopped by the validation score
    assert fa.score(X[1200:], y[1200:]) > 0.9


def test_parameter_validation_messages():
    X, y, _ = _task("multiclass-iris")
    with pytest.raises(InvalidParameterError, match="'solver' parameter .* Got 'newton'"):
        MLPClassifier(solver="newton").fit(X, y)
    with pytest.raises(InvalidParameterError, match="'backend' parameter .* Got 'cuda'"):
        MLPClassifier(backend="cuda").fit(X, y)
    with pytest.raises(InvalidParameterError, match="'dtype' parameter .* Got 'float16'"):
        MLPRegressor(dtype="float16").fit(X, y)
    with pytest.raises(ValueError, match=r"hidden_layer_sizes must be > 0, got \[4, 0\]"):
        MLPClassifier(hidden_layer_sizes=(4, 0)).fit(X, y)
    for est in (MLPClassifier(solver="lbfgs"), SkMLPClassifier(solver="lbfgs")):
        with pytest.raises(AttributeError, match="has no attribute 'partial_fit'") as err:
            est.partial_fit(X, y, classes=[0, 1, 2])
        assert "lbfgs is not stochastic" in str(err.value.__cause__)
        assert not hasattr(est, "partial_fit")
    with pytest.raises(ValueError, match="does not support early_stopping"):
        MLPClassifier(early_stopping=True).partial_fit(X, y, classes=[0, 1, 2])
    fa = MLPClassifier(max_iter=1, warm_start=True)
    with pytest.warns(ConvergenceWarning):
        fa.fit(X, y)
    with pytest.raises(ValueError, match="warm_start can only be used"):
        fa.fit(X[y < 2], y[y < 2])


# --- scikit-learn's estimator checks ----------------------------------------------------------
# Each check trains on its own toy data, where max_iter=100 may or may not converge, so the
# ConvergenceWarning is ignored for these tests only (scikit-learn's own test_common does
# the same for its MLPs); every other warning still fails.
@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@parametrize_with_checks([
    MLPClassifier(max_iter=100, backend="numba"),
    MLPRegressor(max_iter=100, backend="numba"),
    MLPClassifier(max_iter=100, backend="numpy"),
    MLPRegressor(max_iter=100, backend="numpy"),
])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


# --- the label encoding's fast path --------------------------------------------------
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.int8])
@pytest.mark.parametrize("labels", [[3, 1, 3, 3], [2, 0, 1, 2, 5], [7, 7, 7]])
def test_integer_label_encoding_matches_label_binarizer(dtype, labels):
    from sklearn.preprocessing import LabelBinarizer

    from fastnn.estimators import _binarize, _fit_label_binarizer

    y = np.array(labels, dtype=dtype)
    ours, theirs = _fit_label_binarizer(y), LabelBinarizer().fit(y)
    assert ours.y_type_ == theirs.y_type_ and ours.sparse_input_ == theirs.sparse_input_
    assert ours.classes_.dtype == theirs.classes_.dtype
    assert_array_equal(ours.classes_, theirs.classes_)
    for part in (y, y[:2], y[::-1]):  # subsets too, as partial_fit batches see them
        got, want = _binarize(ours, part), theirs.transform(part).astype(bool)
        assert got.dtype == want.dtype and got.shape == want.shape
        assert_array_equal(got, want)
