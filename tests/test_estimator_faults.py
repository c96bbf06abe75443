"""MLPClassifier / MLPRegressor under bad input, odd array layouts, divergence and Ctrl-C.

Where scikit-learn defines the error for a bad input, fastnn must raise the same type
with the same message (the cases are run on both libraries side by side).
"""

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_array_equal
from sklearn.datasets import load_iris
from sklearn.exceptions import ConvergenceWarning, DataConversionWarning
from sklearn.neural_network import MLPClassifier as SkMLPClassifier
from sklearn.neural_network import MLPRegressor as SkMLPRegressor
from sklearn.utils._param_validation import InvalidParameterError

import fastnn
from fastnn import DivergenceWarning, MLPClassifier, MLPRegressor
from fastnn._network import Trainer

X, Y = load_iris(return_X_y=True)
X = (X - X.mean(axis=0)) / X.std(axis=0)
YR = X[:, 0] * 0.5 + X[:, 1]
FAST = {"C": MLPClassifier, "R": MLPRegressor}
SK = {"C": SkMLPClassifier, "R": SkMLPRegressor}
SMALL = dict(hidden_layer_sizes=(5,), max_iter=3, random_state=0)


def _with_nan(a, value=np.nan):
    a = np.array(a, dtype=np.float64)
    a.flat[7] = value
    return a


# (estimator kind, constructor kwargs, call(est)) -> must raise the same as scikit-learn
SAME_AS_SKLEARN = {
    "X has NaN": ("C", SMALL, lambda e: e.fit(_with_nan(X), Y),
                  ValueError, "Input X contains NaN"),
    "X has inf": ("R", SMALL, lambda e: e.fit(_with_nan(X, np.inf), YR),
                  ValueError, "Input X contains infinity"),
    "y has NaN (classifier)": ("C", SMALL, lambda e: e.fit(X, _with_nan(Y)),
                               ValueError, "Input y contains NaN"),
    "y has NaN (regressor)": ("R", SMALL, lambda e: e.fit(X, _with_nan(YR)),
                              ValueError, "Input y contains NaN"),
    "y has inf": ("R", SMALL, lambda e: e.fit(X, _with_nan(YR, -np.inf)),
                  ValueError, "Input y contains infinity"),
    "X is 1-D": ("C", SMALL, lambda e: e.fit(X[:, 0], Y),
                 ValueError, "Expected 2D array, got 1D array instead"),
    "X is 3-D": ("C", SMALL, lambda e: e.fit(X.reshape(150, 2, 2), Y),
                 ValueError, "Found array with dim 3, while dim <= 2 is required"),
    "X is a scalar": ("R", SMALL, lambda e: e.fit(3.0, [1.0]),
                      ValueError, "Expected 2D array, got scalar array instead"),
    "y shorter than X": ("C", SMALL, lambda e: e.fit(X, Y[:-1]),
                         ValueError, r"inconsistent numbers of samples: \[150, 149\]"),
    "y is 3-D": ("R", SMALL, lambda e: e.fit(X, YR.reshape(150, 1, 1)),
                 ValueError, "Found array with dim 3"),
    "zero samples": ("C", SMALL, lambda e: e.fit(X[:0], Y[:0]),
                     ValueError, r"Found array with 0 sample\(s\) \(shape=\(0, 4\)\)"),
    "zero features": ("R", SMALL, lambda e: e.fit(X[:, :0], YR),
                      ValueError, r"Found array with 0 feature\(s\) \(shape=\(150, 0\)\)"),
    "y continuous for a classifier": ("C", SMALL, lambda e: e.fit(X, YR),
                                      ValueError, "Unknown label type"),
    "X of words": ("C", SMALL, lambda e: e.fit(np.full((150, 4), "abc"), Y),
                   ValueError, "could not convert string to float"),
    "X of mixed objects": ("C", SMALL,
                           lambda e: e.fit(np.array([[1.0, "x"]] * 150, dtype=object), Y),
                           ValueError, "could not convert string to float: 'x'"),
    "X of dicts": ("R", SMALL, lambda e: e.fit(np.array([[{}]] * 150, dtype=object), YR),
                   TypeError, "float.. argument must be"),
    "X complex": ("C", SMALL, lambda e: e.fit(X + 1j, Y),
                  ValueError, "Complex data not supported"),
    "sample_weight wrong length": ("C", SMALL, lambda e: e.fit(X, Y, sample_weight=np.ones(3)),
                                   ValueError, r"sample_weight.shape == \(3,\), expected"),
    "sample_weight NaN": ("R", SMALL, lambda e: e.fit(X, YR, sample_weight=_with_nan(X[:, 0])),
                          ValueError, "Input sample_weight contains NaN"),
    "partial_fit without classes": ("C", SMALL, lambda e: e.partial_fit(X, Y),
                                    ValueError, "classes must be passed on the first call"),
    "partial_fit labels outside classes": (
        "C", SMALL, lambda e: e.partial_fit(X, Y, classes=[0, 1]),
        ValueError, r"`y` has classes not in `self.classes_`. `self.classes_` has \[0 1\]"),
    "later partial_fit with an unseen label": (
        "C", SMALL, lambda e: e.partial_fit(X, Y, classes=[0, 1, 2]).partial_fit(X[:3], [0, 1, 7]),
        ValueError, r"'y' has \[0 1 7\]"),
    "warm_start with other classes": (
        "C", dict(SMALL, warm_start=True), lambda e: e.fit(X, Y).fit(X[Y < 2], Y[Y < 2]),
        ValueError, "warm_start can only be used where `y` has the same classes"),
    "predict with 3 of 4 features": (
        "C", SMALL, lambda e: e.fit(X, Y).predict(X[:, :3]),
        ValueError, "X has 3 features, but MLPClassifier is expecting 4 features as input"),
    "predict with 5 features": (
        "R", SMALL, lambda e: e.fit(X, YR).predict(np.c_[X, X[:, 0]]),
        ValueError, "X has 5 features, but MLPRegressor is expecting 4 features as input"),
    "predict 1-D": ("C", SMALL, lambda e: e.fit(X, Y).predict(X[0]),
                    ValueError, "Expected 2D array, got 1D array instead"),
    "predict NaN": ("R", SMALL, lambda e: e.fit(X, YR).predict(_with_nan(X)),
                    ValueError, "Input X contains NaN"),
    # one plain row, the path that skips validate_data: the predict kernel finds the bad
    # value, and scikit-learn's validation then names it
    "predict_proba one row with inf": (
        "C", SMALL, lambda e: e.fit(X, Y).predict_proba(_with_nan(X[:2], np.inf)[1:]),
        ValueError, "Input X contains infinity"),
    "predict one float32 row with NaN": (
        "R", SMALL, lambda e: e.fit(X, YR).predict(_with_nan(X[:2])[1:].astype(np.float32)),
        ValueError, "Input X contains NaN"),
    "predict zero rows": ("C", SMALL, lambda e: e.fit(X, Y).predict_proba(X[:0]),
                          ValueError, r"0 sample\(s\)"),
    "negative learning_rate_init": (
        "C", dict(learning_rate_init=-0.1), lambda e: e.fit(X, Y), InvalidParameterError,
        r"'learning_rate_init' parameter of MLPClassifier must be a float in the range "
        r"\(0.0, inf\). Got -0.1 instead"),
    "batch_size 0": ("R", dict(batch_size=0), lambda e: e.fit(X, YR), InvalidParameterError,
                     r"'batch_size' parameter of MLPRegressor .* Got 0 instead"),
    "unknown solver": ("C", dict(solver="rmsprop"), lambda e: e.fit(X, Y),
                       InvalidParameterError, r"'solver' parameter .* Got 'rmsprop' instead"),
    "unknown activation": ("R", dict(activation="swish"), lambda e: e.fit(X, YR),
                           InvalidParameterError, r"'activation' parameter .* Got 'swish'"),
    "unknown learning_rate schedule": (
        "C", dict(learning_rate="fast"), lambda e: e.fit(X, Y),
        InvalidParameterError, r"'learning_rate' parameter .* Got 'fast'"),
    "unknown loss": ("R", dict(loss="huber"), lambda e: e.fit(X, YR),
                     InvalidParameterError, r"'loss' parameter .* Got 'huber'"),
    "negative alpha": ("C", dict(alpha=-1.0), lambda e: e.fit(X, Y),
                       InvalidParameterError, r"'alpha' parameter .* Got -1.0"),
    "momentum above 1": ("C", dict(solver="sgd", momentum=1.5), lambda e: e.fit(X, Y),
                         InvalidParameterError, r"'momentum' parameter .* Got 1.5"),
    "beta_1 of 1": ("C", dict(beta_1=1.0), lambda e: e.fit(X, Y),
                    InvalidParameterError, r"'beta_1' parameter .* Got 1.0"),
    "max_iter 0": ("R", dict(max_iter=0), lambda e: e.fit(X, YR),
                   InvalidParameterError, r"'max_iter' parameter .* Got 0"),
    "validation_fraction 1": ("C", dict(validation_fraction=1.0), lambda e: e.fit(X, Y),
                              InvalidParameterError, r"'validation_fraction' parameter"),
    "hidden layer of 0 units": ("C", dict(hidden_layer_sizes=(4, 0)), lambda e: e.fit(X, Y),
                                ValueError, r"hidden_layer_sizes must be > 0, got \[4, 0\]"),
    "negative hidden layer": ("R", dict(hidden_layer_sizes=(3, -1)), lambda e: e.fit(X, YR),
                              ValueError, r"hidden_layer_sizes must be > 0, got \[3, -1\]"),
    "float hidden layer size": ("C", dict(hidden_layer_sizes=(5, 2.5)), lambda e: e.fit(X, Y),
                                TypeError, "'float' object cannot be interpreted as an integer"),
    "negative hidden size as int": ("R", dict(hidden_layer_sizes=-3), lambda e: e.fit(X, YR),
                                    InvalidParameterError, r"'hidden_layer_sizes' parameter "
                                    r"of MLPRegressor must be an array-like or an int in the "
                                    r"range \[1, inf\). Got -3 instead"),
    "early stopping with a tiny validation set": (
        "R", dict(early_stopping=True, max_iter=2), lambda e: e.fit(X[:9], YR[:9]),
        ValueError, "The validation set is too small"),
    "partial_fit with early stopping": (
        "C", dict(early_stopping=True), lambda e: e.partial_fit(X, Y, classes=[0, 1, 2]),
        ValueError, "partial_fit does not support early_stopping=True"),
}


@pytest.mark.parametrize("name", list(SAME_AS_SKLEARN))
def test_bad_input_raises_as_sklearn_does(name):
    kind, kw, call, exc_type, message = SAME_AS_SKLEARN[name]
    raised = []
    for lib in (FAST, SK):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            with pytest.raises(exc_type, match=message) as info:
                call(lib[kind](**kw))
        raised.append((type(info.value), str(info.value)))
    assert raised[0] == raised[1]


def test_fastnn_only_checks():
    # scikit-learn trains a Poisson model on negative targets to a NaN loss
    with pytest.raises(ValueError, match=r"loss='poisson' needs y >= 0, got a minimum of"):
        MLPRegressor(loss="poisson", **SMALL).fit(X, YR)
    # scikit-learn raises numpy's UFuncTypeError (a TypeError) from deep inside
    with pytest.raises(ValueError, match="could not convert string to float"):
        MLPRegressor(**SMALL).fit(X, np.array(["a", "b", "c"])[Y])
    with pytest.raises(InvalidParameterError, match=r"'backend' parameter .* Got 'cuda'"):
        MLPClassifier(backend="cuda").fit(X, Y)
    with pytest.raises(InvalidParameterError, match=r"'dtype' parameter .* Got 'float16'"):
        MLPClassifier(dtype="float16").fit(X, Y)


def test_predict_output_overflow_is_refused_not_nan():
    est = MLPRegressor(loss="poisson", **SMALL)
    with pytest.warns(ConvergenceWarning):
        est.fit(X, np.exp(X[:, 0]))
    with pytest.raises(ValueError, match=r"output overflowed to a non-finite value; X holds "
                                         r"values up to 3.09e\+300: scale the inputs"):
        est.predict(X * 1e300)
    clf = MLPClassifier(**SMALL)
    with pytest.warns(ConvergenceWarning):
        clf.fit(X, Y)
    # softmax and the logistic output saturate instead of overflowing
    proba = clf.predict_proba(X * 1e305)
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_one_class_fits_and_predicts_that_class():
    # as scikit-learn: a single class trains a constant model (no error)
    y = np.full(150, "only")
    for cls in (MLPClassifier, SkMLPClassifier):
        est = cls(**SMALL)
        with pytest.warns(ConvergenceWarning):
            est.fit(X, y)
        assert_array_equal(est.classes_, ["only"])
        assert_array_equal(est.predict(X), y)


def test_column_vector_y_warns_as_sklearn():
    for cls in (MLPRegressor, SkMLPRegressor):
        with pytest.warns(DataConversionWarning, match="A column-vector y was passed"):
            with pytest.warns(ConvergenceWarning):
                cls(**SMALL).fit(X, YR[:, None])


# --- dtypes and array layouts ----------------------------------------------------------
def _fit_state(est, X_, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X_, y)
    return np.concatenate([a.ravel() for a in est.coefs_ + est.intercepts_]), est.loss_curve_


@pytest.mark.parametrize("source,expected", [
    (np.bool_, np.float64), (np.int64, np.float64), (np.int8, np.float64),
    (np.uint8, np.float64), (np.float16, np.float64), (np.float32, np.float32), (str, np.float64),
    (object, np.float64)])
def test_input_dtypes_convert_like_sklearn(source, expected):
    Xq = np.round(X * 4) / 4  # exactly representable in float16 and as short strings
    if source is np.bool_:
        Xs = Xq > 0
    elif source in (np.int64, np.int8, np.uint8):
        Xs = (np.round(X * 4) + (8 if source is np.uint8 else 0)).astype(source)
    else:
        Xs = Xq.astype(source)
    est = MLPClassifier(**SMALL)
    theta, curve = _fit_state(est, Xs, Y)
    assert est.coefs_[0].dtype == expected
    ref = MLPClassifier(**SMALL)
    ref_theta, ref_curve = _fit_state(ref, np.asarray(Xs).astype(np.float64).astype(expected), Y)
    assert_array_equal(theta, ref_theta)
    assert curve == ref_curve
    sk = SkMLPClassifier(**SMALL)
    sk_theta, _ = _fit_state(sk, Xs, Y)
    assert sk_theta.dtype == expected  # scikit-learn converts the same way
    if source is str:
        # fit converts numeric strings, predict refuses them: scikit-learn's validation
        for model in (est, sk):
            with pytest.raises(ValueError, match="dtype='numeric' is not compatible with "
                                                 "arrays of bytes/strings"):
                model.predict_proba(Xs)
    else:
        assert est.predict_proba(Xs).dtype == expected
        assert_array_equal(est.predict_proba(Xs), ref.predict_proba(Xs))


def _layouts(base, tmp_path):
    fortran = np.asfortranarray(base)
    strided = np.repeat(base, 2, axis=1)[:, ::2]
    readonly = base.copy()
    readonly.setflags(write=False)
    path = tmp_path / f"x{base.dtype}.dat"
    mm = np.memmap(path, dtype=base.dtype, mode="w+", shape=base.shape)
    mm[:] = base
    mm.flush()
    mm_r = np.memmap(path, dtype=base.dtype, mode="r", shape=base.shape)
    mm_f = np.memmap(tmp_path / "f.dat", dtype=base.dtype, mode="w+", shape=base.shape,
                     order="F")
    mm_f[:] = base
    return {"fortran": fortran, "strided": strided, "read-only": readonly, "memmap": mm,
            "memmap read-only": mm_r, "memmap fortran": mm_f}


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_array_layouts_give_identical_numbers(tmp_path, backend, dtype, solver):
    base = np.ascontiguousarray(X, dtype=dtype)
    params = dict(SMALL, backend=backend, solver=solver)
    ref = MLPClassifier(**params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref.fit(base, Y)
    ref_proba = ref.predict_proba(base)
    for name, arr in _layouts(base, tmp_path).items():
        est = MLPClassifier(**params)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(arr, Y)
        assert est._theta.dtype == dtype, name
        assert_array_equal(est._theta, ref._theta, err_msg=name)
        assert_array_equal(est.predict_proba(arr), ref_proba, err_msg=name)
        assert_array_equal(ref.predict_proba(arr), ref_proba, err_msg=name)
        if solver == "adam":
            est.partial_fit(arr, Y)
            again = MLPClassifier(**params)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                again.fit(base, Y)
            again.partial_fit(base, Y)
            assert_array_equal(est._theta, again._theta, err_msg=name)


def test_read_only_targets_and_weights():
    y = Y.copy()
    y.setflags(write=False)
    sw = np.linspace(0.5, 1.5, 150)
    sw.setflags(write=False)
    a, b = MLPClassifier(**SMALL), MLPClassifier(**SMALL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a.fit(X, y, sample_weight=sw)
        b.fit(X, Y.copy(), sample_weight=sw.copy())
    assert_array_equal(a._theta, b._theta)


# --- random input ------------------------------------------------------------------------
def _cast(values, dtype):
    with np.errstate(all="ignore"):  # nan/inf/1e300 into int, bool or float16 on purpose
        return values.astype(dtype)


_VALUES = st.sampled_from([0.0, 1.0, -2.5, 0.5, 1e300, -1e300, 1.7e308, np.nan, np.inf, 3.0,
                          1e-310])
_ARRAYS = st.one_of(
    st.tuples(st.integers(0, 7), st.integers(0, 4)).flatmap(
        lambda shape: st.sampled_from([np.float64, np.float32, np.float16, np.int64, np.int8,
                                       np.bool_, str, object])
        .flatmap(lambda dt: st.builds(
            lambda values, order: np.asarray(
                _cast(np.array(values, dtype=np.float64).reshape(shape), dt), order=order),
            st.lists(_VALUES, min_size=shape[0] * shape[1], max_size=shape[0] * shape[1]),
            st.sampled_from(["C", "F"])))),
    st.just(np.array(["a", "b"])), st.just(np.zeros(3)), st.just(np.zeros((2, 2, 2))),
    st.just([[1, "x"]]), st.just([[1.0, None]]), st.just(None), st.just(7.0),
    st.just(np.zeros((4, 2), dtype=complex)))
_TARGETS = st.one_of(
    st.lists(st.integers(0, 2), max_size=8), st.lists(st.sampled_from(["a", "b"]), max_size=8),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=8),
    st.integers(0, 8).map(lambda n: (np.arange(2 * n).reshape(n, 2) % 3 == 0).astype(int)),
    st.just(np.full(4, np.nan)), st.just(None), st.just("abc"))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(X_=_ARRAYS, y=_TARGETS, solver=st.sampled_from(["adam", "sgd", "lbfgs"]),
       X_pred=st.one_of(st.none(), _ARRAYS))
@example(X_=np.where(np.arange(18).reshape(6, 3) % 2, 1.7e308, 1.0), y=[0, 1, 2, 0, 1, 2],
         solver="adam", X_pred=None)  # overflows the forward pass: predict must refuse
@example(X_=np.array([[0, 0, 0], [0, -np.inf, np.inf]], dtype=np.float32), y=[np.nan] * 4,
         solver="adam", X_pred=None)  # scikit-learn's check warns on inf + -inf
@example(X_=np.array([[0.0]]), y=["a"], solver="adam", X_pred=None)  # one string class
def test_random_inputs_work_or_raise_clearly(X_, y, solver, X_pred):
    est = MLPClassifier(hidden_layer_sizes=(3,), max_iter=2, solver=solver, random_state=0,
                        batch_size=2)
    try:
        with warnings.catch_warnings():
            # allowed outcomes: stopping early, diverging (weights kept finite), batch clipped
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", DivergenceWarning)
            warnings.filterwarnings("ignore", message="Got `batch_size` less than 1")
            warnings.simplefilter("ignore", DataConversionWarning)
            est.fit(X_, y)
    except (ValueError, TypeError) as exc:
        assert str(exc)
        return
    assert np.isfinite(est._theta).all()
    for data in (X_, X_pred) if X_pred is not None else (X_,):
        try:
            proba = est.predict_proba(data)
            labels = est.predict(data)
        except (ValueError, TypeError) as exc:
            assert str(exc)
            continue
        assert np.isfinite(proba).all()
        assert len(labels) == len(proba)
        # classes_, or 0/1 indicators (multilabel); sets, since np.r_ cannot mix string
        # classes with the integers (hypothesis found y = ["a"])
        allowed = set(np.asarray(est.classes_).ravel().tolist()) | {0, 1}
        assert set(np.asarray(labels).ravel().tolist()) <= allowed


# --- divergence --------------------------------------------------------------------------
DIVERGING = {  # each diverges after a few finite epochs, on both engines
    "sgd regressor": (MLPRegressor, dict(solver="sgd", learning_rate_init=10.0, momentum=0.9),
                      X * 100, YR * 1e10),
    "sgd regressor, no momentum": (MLPRegressor, dict(solver="sgd", learning_rate_init=1.0,
                                                      momentum=0.0), X * 10, YR * 1e5),
    "sgd classifier": (MLPClassifier, dict(solver="sgd", learning_rate_init=1e3), X * 1e100, Y),
}


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("name", list(DIVERGING))
def test_divergence_keeps_the_last_finite_epoch(name, backend):
    cls, kw, X_, y = DIVERGING[name]
    params = dict(hidden_layer_sizes=(5,), max_iter=20, random_state=0, backend=backend, **kw)
    est = cls(**params)
    with pytest.warns(DivergenceWarning, match=r"training diverged at epoch \d+ \(loss = "
                                               r"(nan|inf)\); stopped and kept the weights of "
                                               r"the last finite epoch"):
        est.fit(X_, y)
    assert np.isfinite(est._theta).all()
    assert 0 < est.n_iter_ == len(est.loss_curve_) < 20
    assert np.isfinite(est.loss_curve_).all()
    try:  # the last finite weights can be huge: finite predictions, or a clear refusal
        assert np.isfinite(est.predict(X_)).all()
    except ValueError as exc:
        assert "output overflowed to a non-finite value" in str(exc)
    # exactly the model a run stopped before the diverging epoch ends with
    ref = cls(**dict(params, max_iter=est.n_iter_))
    with pytest.warns(ConvergenceWarning):
        ref.fit(X_, y)
    assert_array_equal(est._theta, ref._theta)
    assert est.loss_curve_ == ref.loss_curve_
    assert est._optimizer.steps == ref._optimizer.steps
    # scikit-learn runs on to NaN weights and raises (leaving them in the estimator)
    sk = (SkMLPClassifier if cls is MLPClassifier else SkMLPRegressor)(
        **{k: v for k, v in params.items() if k != "backend"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="Solver produced non-finite parameter weights"):
            sk.fit(X_, y)


def test_weights_overflowing_in_the_first_epoch_keep_the_initial_weights(monkeypatch):
    # One full-batch SGD step at learning rate 1e308 on gradients of ~100 overflows the
    # weights, while the epoch's loss (taken before the step) is still finite: caught all
    # the same.
    params = dict(hidden_layer_sizes=(5,), max_iter=20, random_state=0, solver="sgd",
                  batch_size=len(X), learning_rate_init=1e308)
    est = MLPClassifier(**params)
    with pytest.warns(DivergenceWarning, match=r"at epoch 1 \(loss = [0-9.]+, weights "
                                               r"or optimizer state became non-finite\)"):
        est.fit(X * 100, Y)
    assert est.n_iter_ == 0 and est.loss_curve_ == []
    assert np.isnan(est.loss_)  # no epoch finished (an AttributeError before)
    def idle(self, x, y, sw, orders, hyper, t, totals):  # epochs that do nothing
        totals[:] = 0.0
        return len(orders)

    monkeypatch.setattr(Trainer, "epochs", idle)
    ref = MLPClassifier(**dict(params, max_iter=1))
    with pytest.warns(ConvergenceWarning):
        ref.fit(X * 100, Y)
    assert_array_equal(est._theta, ref._theta)


def test_divergence_in_partial_fit_and_with_early_stopping():
    est = MLPRegressor(hidden_layer_sizes=(5,), solver="sgd", learning_rate_init=10.0,
                       random_state=0)
    with pytest.warns(DivergenceWarning):
        for _ in range(20):
            est.partial_fit(X * 100, YR * 1e10)
    assert np.isfinite(est._theta).all() and np.isfinite(est.predict(X)).all()
    es = MLPRegressor(hidden_layer_sizes=(5,), solver="sgd", learning_rate_init=10.0,
                      early_stopping=True, max_iter=20, random_state=0)
    with pytest.warns(DivergenceWarning):
        es.fit(X * 100, YR * 1e10)
    assert np.isfinite(es._theta).all()


def test_an_overflowed_adam_moment_stops_training_as_divergence():
    # float32 inputs of 1e18: Adam's v = g * g overflows, loss and weights stay finite;
    # before, the weights froze (m / sqrt(inf) = 0) silently and saving the estimator
    # wrote a file that fastnn.load refused
    rng = np.random.default_rng(0)
    X32 = (rng.normal(size=(40, 2)) * 1e18).astype(np.float32)
    y = rng.normal(size=40).astype(np.float32)
    est = MLPRegressor(hidden_layer_sizes=(3,), max_iter=5, random_state=0)
    with pytest.warns(DivergenceWarning, match="weights or optimizer state became non-"):
        est.fit(X32, y)
    assert est.n_iter_ == 0
    assert all(np.isfinite(a).all() for a in (est._theta, est._optimizer.m, est._optimizer.v))


def test_lbfgs_non_finite_loss_keeps_finite_weights():
    est = MLPClassifier(hidden_layer_sizes=(5,), solver="lbfgs", max_iter=20, random_state=0)
    with pytest.warns(DivergenceWarning, match="L-BFGS ended with loss = nan; kept the last "
                                               "iterate with a finite loss"):
        est.fit(X * 1e200, Y)
    assert np.isfinite(est._theta).all()
    assert np.isfinite(est.predict_proba(X)).all()
    # what scikit-learn issues there: code filtering ConvergenceWarning sees it too
    with pytest.warns(ConvergenceWarning, match="L-BFGS ended with loss = nan"):
        est.fit(X * 1e200, Y)
    assert issubclass(fastnn.estimators.SolverDivergenceWarning, DivergenceWarning)


# --- Ctrl-C ------------------------------------------------------------------------------
def _interrupt_epoch(monkeypatch, at_call):
    """Make engine call ``at_call`` do some damage, then raise KeyboardInterrupt.

    Returns the real ``Trainer.epochs`` and the list of epochs each call was asked for.
    """
    real = Trainer.epochs
    calls = []

    def interrupted(self, x, y, sw, orders, *args):
        calls.append(len(orders))
        if len(calls) == at_call:  # half an epoch's damage, then Ctrl-C
            self.net.theta[:5] += 1.0
            self.m[:5] = 7.0
            raise KeyboardInterrupt
        return real(self, x, y, sw, orders, *args)

    monkeypatch.setattr(Trainer, "epochs", interrupted)
    return real, calls


def _same_run(a, b):
    assert_array_equal(a._theta, b._theta)
    assert a.loss_curve_ == b.loss_curve_
    assert (a.n_iter_, a.t_, a.loss_) == (b.n_iter_, b.t_, b.loss_)
    assert (a.best_loss_, a.validation_scores_, a.best_validation_score_) == (
        b.best_loss_, b.validation_scores_, b.best_validation_score_)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("kind,kw", [("C", {}), ("R", {"solver": "sgd"}),
                                     ("C", {"early_stopping": True}),
                                     ("R", {"solver": "sgd", "learning_rate": "invscaling"})])
def test_keyboard_interrupt_keeps_the_epochs_of_completed_calls(monkeypatch, backend, kind,
                                                                 kw):
    y = Y if kind == "C" else YR
    params = dict(hidden_layer_sizes=(6,), random_state=0, backend=backend,
                  learning_rate_init=0.01, **kw)
    est = FAST[kind](max_iter=50, **params)
    real, calls = _interrupt_epoch(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        est.fit(X, y)
    completed = sum(calls[:2])  # epochs of the two calls before the interrupted one
    # epochs are grouped into calls unless early stopping or invscaling need Python
    grouped = not kw.get("early_stopping") and kw.get("learning_rate") != "invscaling"
    assert (completed > 2) == grouped
    monkeypatch.setattr(Trainer, "epochs", real)
    ref = FAST[kind](max_iter=completed, **params)
    with pytest.warns(ConvergenceWarning):
        ref.fit(X, y)
    _same_run(est, ref)
    assert np.isfinite(est.predict(X)).all()
    if not kw.get("early_stopping"):  # and it trains on from there, optimizer state intact
        est.partial_fit(X, y)
        ref.partial_fit(X, y)
        _same_run(est, ref)


def test_keyboard_interrupt_outside_the_epoch_kernel(monkeypatch):
    # Ctrl-C in the bookkeeping of the 3rd epoch: that is the 2nd epoch of the second
    # engine call (the first runs one epoch, the second several). The whole second call
    # is undone, bookkeeping included.
    real_epochs = Trainer.epochs
    epochs_asked = []

    def counting(self, x, y, sw, orders, *args):
        epochs_asked.append(len(orders))
        return real_epochs(self, x, y, sw, orders, *args)

    real = MLPClassifier._update_no_improvement_count
    calls = []

    def interrupted(self, *args):
        calls.append(1)
        if len(calls) == 3:  # after the epochs ran and two losses were recorded
            raise KeyboardInterrupt
        return real(self, *args)

    monkeypatch.setattr(Trainer, "epochs", counting)
    monkeypatch.setattr(MLPClassifier, "_update_no_improvement_count", interrupted)
    est = MLPClassifier(max_iter=50, hidden_layer_sizes=(5,), random_state=0)
    with pytest.raises(KeyboardInterrupt):
        est.fit(X, Y)
    assert epochs_asked[0] == 1 and epochs_asked[1] > 2
    monkeypatch.setattr(MLPClassifier, "_update_no_improvement_count", real)
    ref = MLPClassifier(max_iter=1, hidden_layer_sizes=(5,), random_state=0)
    with pytest.warns(ConvergenceWarning):
        ref.fit(X, Y)
    _same_run(est, ref)
    assert est._optimizer.steps == ref._optimizer.steps


def test_keyboard_interrupt_during_lbfgs(monkeypatch):
    from fastnn.backends import get_backend

    engine = get_backend("numba")
    real = engine.loss_grad
    calls = []

    def counting(*args):
        calls.append(1)
        if len(calls) == limit:
            args[3][:5] += 1.0  # theta: a trial point, then Ctrl-C
            raise KeyboardInterrupt
        return real(*args)

    limit = -1
    monkeypatch.setattr(engine, "loss_grad", counting)
    ref = MLPClassifier(solver="lbfgs", max_iter=4, hidden_layer_sizes=(5,), random_state=0)
    with pytest.warns(ConvergenceWarning):
        ref.fit(X, Y)
    limit = len(calls) + 1  # the first evaluation after the 4th accepted iterate
    calls.clear()
    est = MLPClassifier(solver="lbfgs", max_iter=50, hidden_layer_sizes=(5,), random_state=0)
    with pytest.raises(KeyboardInterrupt):
        est.fit(X, Y)
    assert_array_equal(est._theta, ref._theta)
    monkeypatch.setattr(engine, "loss_grad", real)
    assert np.isfinite(est.predict_proba(X)).all()


def test_divergence_warning_is_exported():
    assert fastnn.DivergenceWarning is DivergenceWarning
    assert issubclass(DivergenceWarning, RuntimeWarning)


# --- determinism --------------------------------------------------------------------------
_FIT_SCRIPT = """
import hashlib, warnings, numpy as np
from sklearn.datasets import load_digits
from fastnn import MLPClassifier
warnings.simplefilter("ignore")
X, y = load_digits(return_X_y=True)
for solver in ("adam", "sgd", "lbfgs"):
    est = MLPClassifier(hidden_layer_sizes=(128, 64), solver=solver, max_iter=3,
                        batch_size=32, random_state=0).fit(X / 16, y)
    print(solver, hashlib.sha256(est._theta.tobytes()).hexdigest())
"""


@pytest.mark.slow
def test_estimators_bitwise_same_across_runs_and_thread_counts():
    import os
    import subprocess
    import sys

    runs = []
    for threads in ("1", "2", "2"):
        env = dict(os.environ, OPENBLAS_NUM_THREADS=threads, NUMBA_NUM_THREADS=threads,
                   OMP_NUM_THREADS=threads)
        result = subprocess.run([sys.executable, "-c", _FIT_SCRIPT], capture_output=True,
                                text=True, env=env, timeout=900)
        assert result.returncode == 0, result.stderr[-3000:]
        runs.append(dict(line.split() for line in result.stdout.splitlines()))
    # mini-batches of 32: every product is small enough for OpenBLAS to run on one thread
    for solver in ("adam", "sgd"):
        assert runs[0][solver] == runs[1][solver] == runs[2][solver], solver
    # full-batch L-BFGS: OpenBLAS splits the big products over its threads, so the last
    # bits depend on OPENBLAS_NUM_THREADS (README, "Determinism"); a fixed count repeats
    assert runs[1]["lbfgs"] == runs[2]["lbfgs"]


# --- state left by earlier calls, weights assigned by hand --------------------------------
def test_n_threads_past_a_c_int_is_refused_at_fit():
    # threadpoolctl hands the limit to BLAS as a C int: a ctypes ArgumentError before
    with pytest.raises(InvalidParameterError, match="'n_threads' parameter"):
        MLPClassifier(n_threads=2**70).fit(X, Y)


def test_bool_hidden_layer_size_is_a_type_error_as_in_sklearn():
    for lib in (FAST, SK):
        with pytest.raises(TypeError):
            lib["R"](hidden_layer_sizes=(True,), max_iter=2).fit(X, YR)
    with pytest.raises(TypeError, match="hidden_layer_sizes must hold integers, got True"):
        MLPRegressor(hidden_layer_sizes=(3, True)).fit(X, YR)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("hidden", [(7,), (1,)])
def test_partial_fit_after_a_refit_of_another_size_raises(backend, hidden):
    # An Adam fit leaves its optimizer; an L-BFGS fit rebuilds the network and keeps it
    # (as scikit-learn's does); partial_fit then has moments of the old size. Before, the
    # kernel ran Adam over theta's length with the old moments: writes past their end
    # for a larger network, silently stale moments for a smaller one. scikit-learn fails
    # on the shapes (ValueError from broadcasting); so does fastnn, saying why.
    for lib in (FAST, SK):
        kw = {"backend": backend} if lib is FAST else {}
        est = lib["R"](hidden_layer_sizes=(2,), max_iter=3, random_state=0, **kw)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(X, YR)
            est.set_params(solver="lbfgs", hidden_layer_sizes=hidden).fit(X, YR)
            est.set_params(solver="adam")
            if lib is SK and hidden == (1,):
                continue  # scikit-learn broadcasts the old (4, 2) moments onto (4, 1)
            match = ("partial_fit cannot continue the optimizer state of an earlier fit: it "
                     r"holds 13 parameters, the network now has \d+" if lib is FAST else None)
            with pytest.raises(ValueError, match=match):
                est.partial_fit(X, YR)


def test_partial_fit_after_a_refit_in_another_dtype_continues():
    # scikit-learn continues there (its float64 moments meet float32 weights in NumPy's
    # arithmetic); fastnn continues with the moments rounded to the new dtype
    est = MLPRegressor(hidden_layer_sizes=(5,), max_iter=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, YR)
        m = est._optimizer.m.copy()
        est.set_params(solver="lbfgs").fit(X.astype(np.float32), YR.astype(np.float32))
    est.set_params(solver="adam").partial_fit(X.astype(np.float32), YR.astype(np.float32))
    assert est._optimizer.m.dtype == est._theta.dtype == np.float32
    assert est._optimizer.steps > 3 and not np.array_equal(est._optimizer.m, m)
    assert np.isfinite(est._theta).all()


def test_trainer_refuses_optimizer_state_of_another_shape_or_dtype():
    est = MLPRegressor(hidden_layer_sizes=(5,), max_iter=1, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        net = est.fit(X, YR)._network()
    n = net.theta.shape[0]
    for m, v in [(np.zeros(n - 1), np.zeros(n)), (np.zeros(n), np.zeros(n + 1)),
                 (np.zeros(n, np.float32), np.zeros(n)), (np.zeros(n), np.zeros((n, 1))),
                 (list(np.zeros(n)), np.zeros(n)), (np.zeros(2 * n)[::2], np.zeros(n))]:
        with pytest.raises(ValueError, match=f"optimizer state [mv] must be a C-contiguous "
                                             rf"float64 array of shape \({n},\)"):
            Trainer(net, 10, 0, state=(m, v))


def _sk_fitted(hidden, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return SkMLPRegressor(hidden_layer_sizes=hidden, max_iter=5, random_state=0,
                              **kw).fit(X, YR)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_weights_assigned_to_an_unfitted_estimator_predict_as_in_sklearn(backend):
    # weights trained elsewhere, set by hand with the attributes scikit-learn's predict
    # reads; before, fastnn raised AttributeError ('_theta')
    sk = _sk_fitted((5, 3))
    for dtype in (np.float64, np.float32):
        est, ref = MLPRegressor(backend=backend), SkMLPRegressor()
        for e in (est, ref):
            e.coefs_ = [w.astype(dtype) for w in sk.coefs_]
            e.intercepts_ = [b.astype(dtype) for b in sk.intercepts_]
            e.n_layers_, e.n_outputs_, e.out_activation_ = 4, 1, "identity"
            e.n_features_in_ = 4
        got, want = est.predict(X.astype(dtype)), ref.predict(X.astype(dtype))
        assert got.dtype == want.dtype == dtype
        np.testing.assert_allclose(got, want, rtol=1e-12 if dtype == np.float64 else 1e-5)
        del est.n_features_in_, ref.n_features_in_  # optional, as in scikit-learn
        np.testing.assert_array_equal(est.predict(X.astype(dtype)), got)
        with pytest.raises(ValueError, match=r"X has 3 features, but coefs_\[0\] has 4 rows"):
            est.predict(X[:, :3].astype(dtype))


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_trimmed_network_and_hidden_output_activations_predict_as_in_sklearn(backend):
    # the hidden representation: the output layer dropped, out_activation_ set to the
    # hidden activation (scikit-learn's forward pass takes any of its activations there)
    for out_act in ("identity", "relu", "tanh", "logistic"):
        est = MLPRegressor(hidden_layer_sizes=(6, 4), max_iter=5, random_state=0,
                           backend=backend)
        ref = _sk_fitted((6, 4))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(X, YR)
        for e in (est, ref):
            e.coefs_, e.intercepts_ = e.coefs_[:-1], e.intercepts_[:-1]
            e.n_layers_ -= 1
            e.out_activation_ = out_act
        got, want = est.predict(X), ref.predict(X)
        assert got.shape == want.shape == (150, 4)
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
        # training pairs each loss with its own output activation: refused, not garbled
        est.set_params(warm_start=True)
        if out_act in ("relu", "tanh"):
            with pytest.raises(ValueError, match=f"cannot train with out_activation_="
                                                 f"'{out_act}'"):
                est.fit(X, YR)


@pytest.mark.parametrize("edit, message", [
    (lambda e: setattr(e, "n_layers_", 4), "coefs_ and intercepts_ must hold n_layers_ - 1 "
                                           "= 3 arrays each, got 2 and 2"),
    (lambda e: e.coefs_.__setitem__(1, np.zeros((6, 1))),
     r"coefs_\[1\] has shape \(6, 1\), expected \(5, n_units\)"),
    (lambda e: e.intercepts_.__setitem__(0, np.zeros(4)),
     r"intercepts_\[0\] has shape \(4,\), expected \(5,\)"),
    (lambda e: setattr(e, "coefs_", [np.zeros((3, 5)), e.coefs_[1]]),
     "coefs_\\[0\\] has 3 rows, but n_features_in_ is 4"),
    (lambda e: setattr(e, "out_activation_", "swish"), "out_activation_ must be one of"),
])
def test_assigned_weights_of_wrong_shapes_are_named(edit, message):
    est = MLPRegressor(**SMALL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, YR)
    est.coefs_, est.intercepts_ = list(est.coefs_), list(est.intercepts_)
    edit(est)
    with pytest.raises(ValueError, match=message):
        est.predict(X)


def test_probabilities_in_exps_subnormal_range_are_scikit_learns():
    # Inputs that drive some class probabilities below 2^-1022: scikit-learn's exp gives
    # subnormals there, and predict_log_proba finite values (-709 to -745); the compiled
    # softmax gave 0 and -inf before.
    kw = dict(hidden_layer_sizes=(5,), max_iter=30, random_state=0, learning_rate_init=0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est, ref = MLPClassifier(**kw).fit(X, Y), SkMLPClassifier(**kw).fit(X, Y)
    big = np.vstack([X * scale for scale in np.linspace(100, 1000, 19)])
    got, want = est.predict_proba(big), ref.predict_proba(big)
    subnormal = (want > 0) & (want < np.finfo(np.float64).tiny)
    assert subnormal.sum() >= 20
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=0)
    with np.errstate(divide="ignore"):  # entries below the subnormals: log(0), as there
        assert np.isfinite(est.predict_log_proba(big)[subnormal]).all()
