"""Model files for MLPClassifier / MLPRegressor: round trips and damaged or hostile files."""

import io
import json
import os
import time
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_array_equal
from sklearn.datasets import load_iris
from sklearn.exceptions import NotFittedError

import fastnn
from conftest import mutated
from fastnn import MLPClassifier, MLPRegressor, ModelFileError
from fastnn.io import read_model, write_model

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

X, Y = load_iris(return_X_y=True)
X = (X - X.mean(axis=0)) / X.std(axis=0)
NAMES = np.array(["setosa", "versicolor", "virginica"])[Y]
MULTILABEL = np.column_stack([Y == 0, X[:, 0] > 0, X[:, 1] > 0]).astype(int)
TARGETS = np.column_stack([X[:, 0] + X[:, 1], X[:, 2] * X[:, 3]])

CASES = {
    "binary": (MLPClassifier, Y == 1, {}),
    "multiclass-str": (MLPClassifier, NAMES, {}),
    "multilabel": (MLPClassifier, MULTILABEL, {}),
    "regression": (MLPRegressor, TARGETS, {}),
    "poisson": (MLPRegressor, np.exp(X[:, 0] / 2), {"loss": "poisson"}),
    "lbfgs": (MLPClassifier, NAMES, {"solver": "lbfgs"}),
    "lbfgs-reg": (MLPRegressor, TARGETS[:, 0], {"solver": "lbfgs"}),
    "sgd-adaptive": (MLPClassifier, Y, {"solver": "sgd", "learning_rate": "adaptive",
                                        "n_iter_no_change": 2}),
    "sgd-invscaling": (MLPRegressor, TARGETS, {"solver": "sgd", "learning_rate": "invscaling",
                                               "learning_rate_init": 0.05}),
    "early-stopping": (MLPClassifier, NAMES, {"early_stopping": True}),
    "float32": (MLPClassifier, NAMES, {"dtype": "float32"}),
}

_FITTED_ATTRS = ("classes_", "n_features_in_", "n_outputs_", "n_layers_", "n_iter_", "t_",
                 "out_activation_", "loss_", "best_loss_", "loss_curve_",
                 "validation_scores_", "best_validation_score_")


def _fit(name, backend="numba", **extra):
    cls, y, kw = CASES[name]
    est = cls(hidden_layer_sizes=(6, 4), max_iter=8, random_state=0, backend=backend,
              learning_rate_init=kw.get("learning_rate_init", 0.01),
              **{k: v for k, v in kw.items() if k != "learning_rate_init"}, **extra)
    return est.fit(X, y), y


def _assert_same_state(a, b):
    assert type(a) is type(b)
    for name in _FITTED_ATTRS:
        assert hasattr(a, name) == hasattr(b, name), name
        if hasattr(a, name):
            va, vb = getattr(a, name), getattr(b, name)
            if isinstance(va, np.ndarray):
                assert va.dtype == vb.dtype, name
            assert_array_equal(np.asarray(va, dtype=object), np.asarray(vb, dtype=object),
                               err_msg=name)
    for ca, cb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        assert ca.dtype == cb.dtype
        assert_array_equal(ca, cb)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("name", list(CASES))
def test_round_trip_identical_predictions(tmp_path, name, backend):
    est, _ = _fit(name, backend)
    est.save(tmp_path / "m.npz")
    back = fastnn.load(tmp_path / "m.npz")
    _assert_same_state(est, back)
    assert back.get_params() == est.get_params()
    assert_array_equal(back.predict(X), est.predict(X))
    if isinstance(est, MLPClassifier):
        assert_array_equal(back.predict_proba(X), est.predict_proba(X))
    assert back.score(X, CASES[name][1]) == est.score(X, CASES[name][1])


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("name", ["multiclass-str", "binary", "multilabel", "regression",
                                  "poisson", "sgd-adaptive", "sgd-invscaling", "float32"])
def test_partial_fit_after_load_continues_identically(tmp_path, name, backend):
    est, y = _fit(name, backend)
    est.save(tmp_path / "m.npz")
    back = fastnn.load(tmp_path / "m.npz")
    for _ in range(3):  # the optimizer state (moments, steps, learning rate) came along
        est.partial_fit(X, y)
        back.partial_fit(X, y)
    _assert_same_state(est, back)
    assert est._optimizer.learning_rate == back._optimizer.learning_rate
    assert est._optimizer.steps == back._optimizer.steps


@pytest.mark.parametrize("name", ["multiclass-str", "regression", "lbfgs", "early-stopping"])
def test_warm_start_after_load_continues_identically(tmp_path, name):
    est, y = _fit(name, warm_start=True)
    est.save(tmp_path / "m.npz")
    back = fastnn.load(tmp_path / "m.npz")
    est.fit(X, y)
    back.fit(X, y)
    _assert_same_state(est, back)


def test_partial_fit_stream_with_classes_round_trip(tmp_path):
    est = MLPClassifier(hidden_layer_sizes=(5,), random_state=0)
    est.partial_fit(X[:50], NAMES[:50], classes=np.unique(NAMES))  # one class seen so far
    est.save(tmp_path / "m.npz")
    back = fastnn.load(tmp_path / "m.npz")
    for part in (slice(50, 100), slice(100, 150)):
        est.partial_fit(X[part], NAMES[part])
        back.partial_fit(X[part], NAMES[part])
    _assert_same_state(est, back)
    with pytest.raises(ValueError, match="`y` has classes not in `self.classes_`"):
        back.partial_fit(X[:2], ["setosa", "rose"])


def test_random_state_instance_round_trip(tmp_path):
    est = MLPClassifier(hidden_layer_sizes=(5,), max_iter=3,
                        random_state=np.random.RandomState(7)).fit(X, Y)
    est.save(tmp_path / "m.npz")
    back = fastnn.load(tmp_path / "m.npz")
    assert isinstance(back.random_state, np.random.RandomState)
    est.fit(X, Y)  # both generators continue from the state at save time
    back.fit(X, Y)
    _assert_same_state(est, back)


def test_feature_names_round_trip(tmp_path):
    # No data-frame library is installed here: set the attribute a frame would have set.
    est = MLPRegressor(hidden_layer_sizes=(4,), max_iter=3, random_state=0).fit(X, Y)
    est.feature_names_in_ = np.array(["sepal length", "sepal width", "petal length",
                                      "petal width"], dtype=object)
    est.save(tmp_path / "m.npz")
    back = fastnn.load(tmp_path / "m.npz")
    assert back.feature_names_in_.dtype == object
    assert_array_equal(back.feature_names_in_, est.feature_names_in_)
    for model in (est, back):  # the saved names are checked at predict, as before saving
        with pytest.warns(UserWarning, match="X does not have valid feature names"):
            model.predict(X)


@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
def test_weights_and_state_start_on_cache_lines(tmp_path, solver):
    # The kernels stream theta and the optimizer state: 64-byte aligned after a fit, a
    # load, and the repacking that follows unpickling (see fastnn/_network.py).
    import pickle

    def aligned(est):
        arrays = [est._theta]
        if solver != "lbfgs":
            arrays += [est._optimizer.m, est._optimizer.v]
        return all(a.ctypes.data % 64 == 0 for a in arrays)

    est = MLPClassifier(hidden_layer_sizes=(7,), solver=solver, max_iter=3,
                        random_state=0).fit(X, Y)
    assert aligned(est)
    est.save(tmp_path / "m.npz")
    assert aligned(fastnn.load(tmp_path / "m.npz"))
    back = pickle.loads(pickle.dumps(est))
    back.predict(X)
    assert aligned(back)
    assert_array_equal(back.predict_proba(X), est.predict_proba(X))


def test_save_refuses_what_it_cannot_store(tmp_path):
    with pytest.raises(NotFittedError):
        MLPClassifier().save(tmp_path / "never.npz")
    labels = np.array(["a", "b", "c"], dtype=object)[Y]
    est = MLPClassifier(hidden_layer_sizes=(3,), max_iter=2, random_state=0).fit(X, labels)
    assert est.classes_.dtype.kind == "U"  # scikit-learn turns str objects into unicode
    est.save(tmp_path / "ok.npz")
    (tmp_path / "ok.npz").unlink()
    # object-dtype classes (set by hand: fit never makes them) cannot be stored safely
    est.classes_ = est.classes_.astype(object)
    with pytest.raises(TypeError, match="classes_ has dtype object.*numeric or str labels"):
        est.save(tmp_path / "obj.npz")
    est._label_binarizer.classes_ = est.classes_
    with pytest.raises(TypeError, match="classes_ has dtype object"):
        est.save(tmp_path / "obj.npz")
    est.fit(X, labels.astype(str))
    est.set_params(tol=float("inf"))
    with pytest.raises(TypeError, match="cannot save tol=inf"):
        est.save(tmp_path / "inf.npz")
    est.set_params(tol=1e-4, momentum=object())
    with pytest.raises(TypeError, match="cannot save momentum=.*JSON-able"):
        est.save(tmp_path / "obj.npz")
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_params_are_plain_json(tmp_path):
    est = MLPClassifier(hidden_layer_sizes=np.array([4, 3]), alpha=np.float64(1e-3),
                        max_iter=np.int64(2), dtype=np.float64, random_state=0).fit(X, Y)
    est.save(tmp_path / "m.npz")
    header, _ = read_model(tmp_path / "m.npz")
    params = header["params"]
    assert params["hidden_layer_sizes"] == [4, 3] and params["dtype"] == "float64"
    assert type(params["alpha"]) is float and type(params["max_iter"]) is int
    back = fastnn.load(tmp_path / "m.npz")
    assert back.hidden_layer_sizes == (4, 3) and back.dtype == "float64"
    assert_array_equal(back.predict_proba(X), est.predict_proba(X))


# --- damaged and hostile files ----------------------------------------------------------
@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("est") / "m.npz"
    _fit("multiclass-str")[0].save(path)
    return path


@pytest.fixture(scope="module")
def saved_reg(tmp_path_factory):
    path = tmp_path_factory.mktemp("est") / "r.npz"
    _fit("regression")[0].save(path)
    return path


def _edited(saved, tmp_path, edit):
    header, arrays = read_model(saved)
    edit(header, arrays)
    bad = tmp_path / "bad.npz"
    write_model(bad, header, arrays)
    return bad


def _set(mapping, key, value):
    mapping[key] = value


def _params(**kw):
    return lambda h, a: h["params"].update(kw)


def _wider(sizes, width=7):
    # the saved layer widths with every hidden layer claimed `width` units wide
    return np.array([sizes[0]] + [width] * (len(sizes) - 2) + [sizes[-1]], dtype=sizes.dtype)


DAMAGE = {
    # name: (edit, message the ModelFileError must carry)
    "theta too short": (lambda h, a: _set(a, "theta", a["theta"][:-1]), "theta has shape"),
    "theta 2-D": (lambda h, a: _set(a, "theta", a["theta"].reshape(1, -1)), "theta has shape"),
    "theta int": (lambda h, a: _set(a, "theta", a["theta"].astype(np.int64)), "dtype int64"),
    "theta NaN": (lambda h, a: a["theta"].__setitem__(0, np.nan), "NaN or infinity"),
    "theta vs dtype param": (_params(dtype="float32"), "dtype parameter"),
    "wider net claimed": (lambda h, a: _set(a, "layer_sizes", _wider(a["layer_sizes"])),
                          "the architecture"),
    "huge net claimed": (lambda h, a: _set(a, "layer_sizes", _wider(a["layer_sizes"], 10**9)),
                         "the architecture"),
    "layer_sizes 2-D": (lambda h, a: _set(a, "layer_sizes", a["layer_sizes"].reshape(1, -1)),
                        "layer_sizes"),
    "layer_sizes float": (lambda h, a: _set(a, "layer_sizes", a["layer_sizes"] * 1.0),
                          "layer_sizes"),
    "layer_sizes zero": (lambda h, a: _set(a, "layer_sizes", _wider(a["layer_sizes"], 0)),
                         "layer_sizes"),
    "layer_sizes vs n_features": (lambda h, a: _set(a, "n_features_in_", np.array([5])),
                                  "from n_features_in_ \\(5\\)"),
    "huge n_features": (lambda h, a: _set(a, "n_features_in_", np.array([10**15])),
                        "layer_sizes .* from n_features_in_"),
    "n_features 0": (lambda h, a: _set(a, "n_features_in_", np.array([0])),
                     "n_features_in_ must be one integer >= 1"),
    "n_features float": (lambda h, a: _set(a, "n_features_in_", np.array([4.0])),
                         "n_features_in_ must be one integer"),
    "n_iter negative": (lambda h, a: _set(a, "n_iter_", np.array([-1])), "n_iter_ must be"),
    "missing theta": (lambda h, a: a.pop("theta"), "KeyError"),
    "missing n_outputs": (lambda h, a: a.pop("n_outputs_"), "n_outputs_"),
    "unknown solver": (_params(solver="newton"), "'solver' parameter"),
    "unknown activation": (_params(activation="swish"), "'activation' parameter"),
    "negative learning rate": (_params(learning_rate_init=-1.0), "'learning_rate_init'"),
    "unknown parameter": (_params(evil="os.system"), "unexpected keyword argument 'evil'"),
    "params not a dict": (lambda h, a: _set(h, "params", [1, 2]), "params must be"),
    "unknown backend": (_params(backend="cuda"), "'backend' parameter"),
    "classes too few": (lambda h, a: _set(a, "lb_classes_", a["lb_classes_"][:2]),
                        "do not match 3 network outputs"),
    "classes 2-D": (lambda h, a: _set(a, "classes_", a["classes_"].reshape(1, -1)),
                    "classes_ must be 1-D"),
    "unknown target type": (lambda h, a: h["label_binarizer"].update(y_type="continuous"),
                            "target type 'continuous'"),
    "out activation": (lambda h, a: _set(a, "out_activation_", np.array(["swish"])),
                       "'swish'.* is not one of"),
    "out activation of a regressor": (
        lambda h, a: _set(a, "out_activation_", np.array(["exp"])),
        r"'exp'.* is not one of \['identity', 'relu', 'softmax', 'tanh'\]"),
    "loss curve 2-D": (lambda h, a: _set(a, "loss_curve_", np.zeros((2, 2))),
                       "loss_curve_ must be a 1-D float array"),
    "loss scalar of strings": (lambda h, a: _set(a, "loss_", np.array(["x"])),
                               "loss_ must be one float"),
    "hostile none_attrs": (lambda h, a: _set(h, "none_attrs", ["__class__"]),
                           "unexpected none_attrs"),
    "optimizer moments wrong shape": (lambda h, a: _set(a, "opt_m", a["opt_m"][:3]),
                                      "opt_m has shape"),
    "optimizer unknown": (lambda h, a: h["optimizer"].update(solver="rmsprop"),
                          "unknown optimizer"),
    "optimizer steps negative": (lambda h, a: h["optimizer"].update(steps=-3),
                                 "must be a non-negative integer"),
    "optimizer rate a string": (lambda h, a: h["optimizer"].update(learning_rate="0.1"),
                                "must be a number"),
    "optimizer missing": (lambda h, a: h["optimizer"].pop("beta_1"), "beta_1"),
    "random state keys wrong": (
        lambda h, a: (_set(h, "random_state", {"name": "MT19937", "pos": 1, "has_gauss": 0,
                                               "cached": 0.0}),
                      _set(a, "random_state_keys", np.zeros(3, np.uint32))),
        "random_state_keys has shape"),
    "random state pos overflow": (
        lambda h, a: (_set(h, "random_state", {"name": "MT19937", "pos": 10**30,
                                               "has_gauss": 0, "cached": 0.0}),
                      _set(a, "random_state_keys", np.zeros(624, np.uint32))),
        "OverflowError"),
    "feature names wrong count": (lambda h, a: _set(a, "feature_names_in_", np.array(["a"])),
                                  "feature_names_in_ has shape"),
}


@pytest.mark.parametrize("name", list(DAMAGE))
def test_damaged_classifier_file_raises_model_file_error(tmp_path, saved, name):
    edit, message = DAMAGE[name]
    bad = _edited(saved, tmp_path, edit)
    start = time.perf_counter()
    with pytest.raises(ModelFileError, match=message):
        fastnn.load(bad)
    assert time.perf_counter() - start < 5  # no absurd allocation or loop


@pytest.mark.parametrize("edit,message", [
    (lambda h, a: _set(a, "n_outputs_", np.array([3])), "to n_outputs_ \\(3\\)"),
    (lambda h, a: (a.pop("layer_sizes"), _set(a, "n_outputs_", np.array([3]))),
     "the architecture"),
    (lambda h, a: _set(h, "kind", "MLPClassifier"), "unexpected keyword argument 'loss'"),
])
def test_damaged_regressor_file_raises_model_file_error(tmp_path, saved_reg, edit, message):
    with pytest.raises(ModelFileError, match=message):
        fastnn.load(_edited(saved_reg, tmp_path, edit))


def test_files_without_layer_sizes_load_by_the_parameters(tmp_path, saved):
    # files written before the layer widths were stored: the layout of the parameters
    back = fastnn.load(_edited(saved, tmp_path, lambda h, a: a.pop("layer_sizes")))
    assert_array_equal(back.predict_proba(X), fastnn.load(saved).predict_proba(X))


def test_a_network_changed_after_fit_saves_and_loads_as_it_is(tmp_path):
    # set_params(hidden_layer_sizes=...) after a fit, out_activation_ set by hand: the
    # file holds the network the estimator predicts with (before, the first wrote a file
    # that load refused, and the second one that load refused as damaged)
    clf = MLPClassifier(hidden_layer_sizes=(5,), max_iter=3, random_state=0).fit(X, Y)
    clf.set_params(hidden_layer_sizes=(7,))
    clf.out_activation_ = "identity"
    reg = MLPRegressor(hidden_layer_sizes=(6, 4), max_iter=3, random_state=0).fit(X, X[:, 0])
    reg.out_activation_ = "relu"
    for name, est, method in (("c", clf, "predict_proba"), ("r", reg, "predict")):
        est.save(tmp_path / f"{name}.npz")
        back = fastnn.load(tmp_path / f"{name}.npz")
        assert back.hidden_layer_sizes == est.hidden_layer_sizes
        assert back.out_activation_ == est.out_activation_
        assert_array_equal(getattr(back, method)(X), getattr(est, method)(X))
    # hidden units pruned by hand from a fitted estimator, and weights set by hand on an
    # unfitted one: saved and loaded as they are (the fit's best weights and optimizer
    # state, of the old layout, stay behind; a hand-built one gets n_iter_ = t_ = 0)
    pruned = MLPRegressor(hidden_layer_sizes=(5,), max_iter=3, random_state=0).fit(X, X[:, 0])
    pruned.coefs_ = [pruned.coefs_[0][:, :3], pruned.coefs_[1][:3]]
    pruned.intercepts_ = [pruned.intercepts_[0][:3], pruned.intercepts_[1]]
    built = MLPRegressor()
    built.coefs_, built.intercepts_ = pruned.coefs_, pruned.intercepts_
    built.n_layers_, built.n_outputs_, built.out_activation_ = 3, 1, "identity"
    for name, est in (("pruned", pruned), ("built", built)):
        est.save(tmp_path / f"{name}.npz")
        back = fastnn.load(os.fsencode(tmp_path / f"{name}.npz"))  # a bytes path too
        assert_array_equal(back.predict(X), est.predict(X))
        assert [w.shape for w in back.coefs_] == [(4, 3), (3, 1)]
    assert back.n_iter_ == back.t_ == 0 and back.n_features_in_ == 4
    # a network whose outputs no longer match n_outputs_ is refused before writing
    reg.coefs_, reg.intercepts_, reg.n_layers_ = reg.coefs_[:-1], reg.intercepts_[:-1], 3
    with pytest.raises(ValueError, match="coefs_ describe a network of 4 outputs, but "
                                         "n_outputs_ is 1"):
        reg.save(tmp_path / "trimmed.npz")
    assert not (tmp_path / "trimmed.npz").exists()


def test_pickled_classes_are_refused_without_running_them(tmp_path, saved, monkeypatch):
    monkeypatch.chdir(tmp_path)

    class Boom:
        def __reduce__(self):
            return (eval, ("open('PWNED', 'w')",))

    bad = tmp_path / "evil.npz"
    with zipfile.ZipFile(saved) as zin, zipfile.ZipFile(bad, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == "classes_.npy":
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.array([Boom()] * 3, dtype=object),
                                          allow_pickle=True)
                data = buf.getvalue()
            zout.writestr(info.filename, data)
    with pytest.raises(ModelFileError, match="dtype object"):
        fastnn.load(bad)
    assert not (tmp_path / "PWNED").exists()


def test_deeply_nested_header_is_refused(tmp_path, saved):
    bad = tmp_path / "deep.npz"
    with zipfile.ZipFile(saved) as zin, zipfile.ZipFile(bad, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == "__header__.npy":
                buf = io.BytesIO()
                text = "[" * 200_000 + "]" * 200_000
                np.lib.format.write_array(buf, np.frombuffer(text.encode(), dtype=np.uint8))
                data = buf.getvalue()
            zout.writestr(info.filename, data)
    with pytest.raises(ModelFileError, match="corrupted header"):
        fastnn.load(bad)


def test_header_is_json_with_version(saved):
    with zipfile.ZipFile(saved) as zf, zf.open("__header__.npy") as fh:
        header = json.loads(np.lib.format.read_array(fh).tobytes())
    assert header["kind"] == "MLPClassifier" and header["format_version"] == 1
    assert header["params"]["hidden_layer_sizes"] == [6, 4]


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_estimator_files_load_or_fail_cleanly(tmp_path, saved, data):
    path = tmp_path / "fuzz.npz"
    path.write_bytes(mutated(saved.read_bytes(), data))
    try:
        est = fastnn.load(path)
    except ModelFileError:
        return
    proba = est.predict_proba(X)  # a file that loads must give a working model
    assert np.isfinite(proba).all()



def test_predict_from_many_threads_right_after_load(tmp_path, saved):
    from concurrent.futures import ThreadPoolExecutor

    serial_model = fastnn.load(saved)
    chunks = [X[i : i + 13] for i in range(0, len(X), 13)]
    serial = [serial_model.predict_proba(c) for c in chunks]
    for _ in range(3):
        model = fastnn.load(saved)  # cold: views and network are bound on first use
        with ThreadPoolExecutor(max_workers=8) as pool:
            threaded = list(pool.map(model.predict_proba, chunks))
        for a, b in zip(serial, threaded):
            assert_array_equal(a, b)
