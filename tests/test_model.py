"""The Sequential model API: training quality, backend agreement, input handling."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.datasets import load_digits, load_iris
from sklearn.model_selection import train_test_split

import fastnn
from fastnn import Dense, Sequential


def iris_split():
    X, y = load_iris(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)
    mean, std = Xtr.mean(axis=0), Xtr.std(axis=0)
    return (Xtr - mean) / std, ytr, (Xte - mean) / std, yte


def digits_split():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X / 16.0, y, test_size=0.2, random_state=0, stratify=y)


def iris_model(backend="numba", **kw):
    kw.setdefault("optimizer", fastnn.optimizers.Adam(learning_rate=0.01))
    return Sequential([Dense(16, activation="relu"), Dense(16, activation="relu"),
                       Dense(3, activation="softmax")], backend=backend, seed=0, **kw)


def digits_model(backend="numba", dtype="float64"):
    return Sequential([Dense(64, activation="relu"), Dense(10, activation="softmax")],
                      optimizer="adam", backend=backend, dtype=dtype, seed=0)


@pytest.fixture(scope="module")
def iris():
    return iris_split()


@pytest.fixture(scope="module")
def digits():
    Xtr, Xte, ytr, yte = digits_split()
    return Xtr, ytr, Xte, yte


@pytest.fixture(scope="module")
def fitted(iris):
    Xtr, ytr, _, _ = iris
    model = iris_model()
    model.fit(Xtr, ytr, epochs=5, batch_size=16)
    return model


# --- quality and agreement ------------------------------------------------------
@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_iris_test_accuracy(iris, backend):
    Xtr, ytr, Xte, yte = iris
    model = iris_model(backend)
    history = model.fit(Xtr, ytr, epochs=200, batch_size=16, validation_data=(Xte, yte))
    assert model.evaluate(Xte, yte)["accuracy"] >= 0.93
    assert history["loss"][-1] < history["loss"][0] / 10
    assert len(history["val_loss"]) == len(history["val_accuracy"]) == 200


def test_digits_test_accuracy(digits):
    Xtr, ytr, Xte, yte = digits
    model = digits_model()
    model.fit(Xtr, ytr, epochs=20, batch_size=32)
    assert model.evaluate(Xte, yte)["accuracy"] >= 0.95


@pytest.mark.parametrize("dataset", ["iris", "digits"])
def test_backends_same_parameters_after_20_epochs(dataset, iris, digits):
    Xtr, ytr, _, _ = iris if dataset == "iris" else digits
    make = iris_model if dataset == "iris" else digits_model
    fast, slow = make("numba"), make("numpy")
    h_fast = fast.fit(Xtr, ytr, epochs=20, batch_size=16)
    h_slow = slow.fit(Xtr, ytr, epochs=20, batch_size=16)
    for a, b in zip(fast.get_weights(), slow.get_weights()):
        assert_allclose(a, b, rtol=1e-8, atol=1e-12)
    assert_allclose(h_fast["loss"], h_slow["loss"], rtol=1e-9)


@pytest.mark.parametrize("optimizer", [fastnn.optimizers.SGD(learning_rate=0.1),
                                       fastnn.optimizers.SGD(0.05, momentum=0.9),
                                       fastnn.optimizers.SGD(0.05, momentum=0.9, nesterov=True)])
def test_backends_agree_for_sgd(iris, optimizer):
    Xtr, ytr, Xte, yte = iris
    fast, slow = iris_model("numba", optimizer=optimizer), iris_model("numpy", optimizer=optimizer)
    fast.fit(Xtr, ytr, epochs=20, batch_size=10)
    slow.fit(Xtr, ytr, epochs=20, batch_size=10)
    for a, b in zip(fast.get_weights(), slow.get_weights()):
        assert_allclose(a, b, rtol=1e-8, atol=1e-12)
    assert fast.evaluate(Xte, yte)["accuracy"] >= 0.9


def test_same_seed_same_numbers_run_after_run(iris):
    Xtr, ytr, _, _ = iris
    runs = []
    for _ in range(2):
        model = iris_model()
        history = model.fit(Xtr, ytr, epochs=10, batch_size=16)
        runs.append((model.get_weights(), history["loss"]))
    for a, b in zip(runs[0][0], runs[1][0]):
        assert_array_equal(a, b)
    assert runs[0][1] == runs[1][1]


def test_different_seed_different_init(iris):
    Xtr, ytr, _, _ = iris
    a, b = iris_model(), Sequential([Dense(16, "relu"), Dense(16, "relu"), Dense(3, "softmax")],
                                    seed=1)
    a.fit(Xtr, ytr, epochs=1)
    b.fit(Xtr, ytr, epochs=1)
    assert not np.array_equal(a.get_weights()[0], b.get_weights()[0])


def test_float32_trains_and_stays_float32(iris):
    Xtr, ytr, Xte, yte = iris
    model = iris_model(dtype="float32")
    model.fit(Xtr, ytr, epochs=100, batch_size=16)
    assert all(w.dtype == np.float32 for w in model.get_weights())
    assert model.predict_proba(Xte).dtype == np.float32
    assert model.evaluate(Xte, yte)["accuracy"] >= 0.9


# --- targets ------------------------------------------------------------------------
def test_string_labels_and_one_hot_rows_give_the_same_model(iris):
    Xtr, ytr, Xte, yte = iris
    names = np.array(["setosa", "versicolor", "virginica"])
    by_int, by_str, by_onehot = iris_model(), iris_model(), iris_model()
    by_int.fit(Xtr, ytr, epochs=10)
    by_str.fit(Xtr, names[ytr], epochs=10)
    by_onehot.fit(Xtr, np.eye(3)[ytr], epochs=10)
    for a, b, c in zip(by_int.get_weights(), by_str.get_weights(), by_onehot.get_weights()):
        assert_array_equal(a, b)
        assert_array_equal(a, c)
    assert_array_equal(by_str.predict(Xte), names[by_int.predict(Xte)])
    assert by_str.evaluate(Xte, names[yte]) == by_int.evaluate(Xte, yte)


def test_predict_proba_rows_are_distributions(fitted, iris):
    p = fitted.predict_proba(iris[2])
    assert p.shape == (len(iris[2]), 3)
    assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)
    assert_array_equal(fitted.predict(iris[2]), p.argmax(axis=1))


def test_binary_sigmoid_classifier():
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    model = Sequential([Dense(16, "tanh"), Dense(1, "sigmoid")], loss="binary_crossentropy",
                       seed=0)
    model.fit(Xtr, ytr, epochs=30, batch_size=32)
    assert model.evaluate(Xte, yte)["accuracy"] >= 0.95
    assert set(np.unique(model.predict(Xte))) <= {0, 1}


def test_regression_identity_mse():
    from sklearn.datasets import load_diabetes

    X, y = load_diabetes(return_X_y=True)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    y = (y - y.mean()) / y.std()
    model = Sequential([Dense(32, "relu"), Dense(1, "linear")], loss="mse",
                       optimizer=fastnn.optimizers.Adam(0.01), seed=0)
    history = model.fit(X, y, epochs=50, batch_size=32)
    pred = model.predict(X)
    r2 = 1 - ((pred[:, 0] - y) ** 2).sum() / ((y - y.mean()) ** 2).sum()
    assert r2 > 0.5
    assert "accuracy" not in model.evaluate(X, y)
    assert_allclose(model.evaluate(X, y)["loss"], 0.5 * ((pred[:, 0] - y) ** 2).mean())
    assert history["loss"][-1] < history["loss"][0]


def test_fit_continues_training(iris):
    Xtr, ytr, _, _ = iris
    once, twice = iris_model(), iris_model()
    once.fit(Xtr, ytr, epochs=10)
    twice.fit(Xtr, ytr, epochs=5)
    twice.fit(Xtr, ytr, epochs=5)
    for a, b in zip(once.get_weights(), twice.get_weights()):
        assert_array_equal(a, b)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_fit_groups_epochs_into_calls_without_changing_the_numbers(iris, monkeypatch, backend):
    # A silent fit runs many epochs per engine call; validation data forces one per call.
    # Same seed, same draws: the weights and the loss curve must be identical.
    from fastnn._network import Trainer

    Xtr, ytr, Xte, yte = iris
    real_epochs = Trainer.epochs
    calls = []

    def counting(self, x, y, sw, orders, *args):
        calls.append(len(orders))
        return real_epochs(self, x, y, sw, orders, *args)

    monkeypatch.setattr(Trainer, "epochs", counting)
    grouped, single = iris_model(backend=backend), iris_model(backend=backend)
    h_grouped = grouped.fit(Xtr, ytr, epochs=30, batch_size=16)
    assert sum(calls) == 30 and len(calls) < 30
    calls.clear()
    h_single = single.fit(Xtr, ytr, epochs=30, batch_size=16, validation_data=(Xte, yte))
    assert calls == [1] * 30
    for a, b in zip(grouped.get_weights(), single.get_weights()):
        assert_array_equal(a, b)
    assert h_grouped["loss"] == h_single["loss"]
    assert h_grouped.epoch == h_single.epoch == list(range(30))
    assert len(h_grouped.seconds) == 30 and min(h_grouped.seconds) > 0


def test_get_set_weights_round_trip(fitted, iris):
    weights = fitted.get_weights()
    assert [w.shape for w in weights] == [(4, 16), (16,), (16, 16), (16,), (16, 3), (3,)]
    other = iris_model()
    other.fit(iris[0], iris[1], epochs=1)
    other.set_weights(weights)
    assert_array_equal(other.predict_proba(iris[2]), fitted.predict_proba(iris[2]))
    weights[0][0, 0] += 1.0  # get_weights hands out copies
    assert fitted.get_weights()[0][0, 0] != weights[0][0, 0]


def test_loss_and_gradients_layout_and_loss(fitted, iris):
    loss, grads = fitted.loss_and_gradients(iris[0], iris[1])
    assert [g.shape for g in grads] == [w.shape for w in fitted.get_weights()]
    assert_allclose(loss, fitted.evaluate(iris[0], iris[1])["loss"], rtol=1e-12)


# --- inputs that must work the same as clean C arrays ----------------------------------------
def _readonly(X):
    X = X.copy()
    X.flags.writeable = False
    return X


@pytest.mark.parametrize("transform", [
    lambda X: X.tolist(),
    lambda X: np.asfortranarray(X),
    lambda X: np.repeat(X, 2, axis=1)[:, ::2],
    lambda X: _readonly(X),
])
def test_array_likes_match_c_arrays(iris, transform):
    Xtr, ytr, Xte, _ = iris
    ref, other = iris_model(), iris_model()
    ref.fit(Xtr, ytr, epochs=3)
    other.fit(transform(Xtr), list(ytr), epochs=3)
    for a, b in zip(ref.get_weights(), other.get_weights()):
        assert_array_equal(a, b)
    assert_array_equal(ref.predict_proba(Xte), other.predict_proba(transform(Xte)))


def test_memory_mapped_input_matches_c_arrays(iris, tmp_path):
    Xtr, ytr, Xte, _ = iris
    mapped = np.lib.format.open_memmap(tmp_path / "X.npy", mode="w+", dtype=np.float64,
                                       shape=Xtr.shape)
    mapped[...] = Xtr
    mapped.flush()
    readonly = np.load(tmp_path / "X.npy", mmap_mode="r")
    ref, other = iris_model(), iris_model()
    ref.fit(Xtr, ytr, epochs=3)
    other.fit(readonly, ytr, epochs=3)
    for a, b in zip(ref.get_weights(), other.get_weights()):
        assert_array_equal(a, b)
    assert_array_equal(other.predict_proba(readonly), ref.predict_proba(Xtr))


def test_integer_input_is_converted():
    X = np.array([[0, 1], [1, 0], [1, 1], [0, 0]] * 10)
    y = np.array([1, 1, 0, 0] * 10)
    model = Sequential([Dense(8, "tanh"), Dense(2, "softmax")], seed=0)
    model.fit(X, y, epochs=2)
    assert model.predict(X).shape == (40,)


# --- bad input --------------------------------------------------------------------------
@pytest.mark.parametrize("X, y, exc, match", [
    (np.zeros((10, 4)), np.zeros(9), ValueError, "different numbers of samples: 10 and 9"),
    (np.zeros(10), np.zeros(10), ValueError, r"X must be 2-D .* shape \(10,\)"),
    (np.zeros((2, 3, 4)), np.zeros(2), ValueError, "X must be 2-D"),
    (np.full((4, 2), np.nan), [0, 1, 0, 1], ValueError, "X contains NaN"),
    (np.full((4, 2), np.inf), [0, 1, 0, 1], ValueError, "X contains infinity"),
    (np.zeros((0, 2)), [], ValueError, "X has 0 samples"),
    (np.zeros((4, 0)), [0, 1, 0, 1], ValueError, "X has 0 features"),
    (np.zeros((4, 2)), [1, 1, 1, 1], ValueError, "y has 1 class"),
    (np.array([["a", "b"]] * 4), [0, 1, 0, 1], TypeError, "X must hold numbers"),
    (np.zeros((4, 2), dtype=complex), [0, 1, 0, 1], TypeError, "complex"),
    (np.zeros((4, 2)), [0, 1, 2, 3], ValueError, "y has 4 classes but the output layer has 3"),
])
def test_bad_fit_input(X, y, exc, match):
    with pytest.raises(exc, match=match):
        iris_model().fit(X, y)


@pytest.mark.parametrize("values, what", [
    ([np.inf, -np.inf], "infinity"),   # their sum is NaN, the element test names them
    ([np.nan, np.inf], "NaN"),
    ([1.0, -np.inf], "infinity"),
    ([np.finfo(np.float32).max] * 2, None),  # finite, though their sum overflows
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_finite_check_tells_overflowing_sums_from_non_finite_values(values, what, dtype):
    # check_finite first tests the sum (no array-sized mask); a sum that is not finite
    # only sends it to the element-wise test, which decides and names the value.
    from fastnn._validation import check_finite

    X = np.ones((4, 2), dtype=dtype)
    X[1, 0], X[3, 1] = values
    if dtype == np.float64 and what is None:
        X[1, 0] = X[3, 1] = np.finfo(np.float64).max
    if what is None:
        check_finite(X, "X")  # no error: the values are finite
    else:
        with pytest.raises(ValueError, match=f"X contains {what}"):
            check_finite(X, "X")


def test_unknown_names():
    with pytest.raises(ValueError, match="unknown activation 'relux'"):
        Dense(3, activation="relux")
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        Sequential([Dense(3, "softmax")], loss="hinge")
    with pytest.raises(ValueError, match="optimizer must be one of .* got 'adamw'"):
        Sequential([Dense(3, "softmax")], optimizer="adamw")
    with pytest.raises(ValueError, match="backend must be one of .* got 'torch'"):
        Sequential([Dense(3, "softmax")], backend="torch")
    with pytest.raises(ValueError, match="dtype must be 'float32' or 'float64', got 'float16'"):
        Sequential([Dense(3, "softmax")], dtype="float16")


def test_inconsistent_architecture():
    with pytest.raises(ValueError, match="needs a 'softmax' output layer, got activation 'relu'"):
        Sequential([Dense(3, "relu")], loss="categorical_crossentropy")
    with pytest.raises(ValueError, match="softmax is only supported on the output layer"):
        Sequential([Dense(3, "softmax"), Dense(3, "softmax")])
    # the layer below the APIs: the numba kernels apply only hidden activations there
    from fastnn import kernels as K
    from fastnn._network import Network

    for code in (K.SOFTMAX, K.EXP):
        with pytest.raises(ValueError, match=r"hidden layers take identity, relu, sigmoid or "
                                             rf"tanh, got codes \[{K.RELU}, {code}\]"):
            Network([4, 3, 3, 2], [K.RELU, code, K.SOFTMAX], np.float64, "numpy")
    net = Network([4, 3, 3, 2], [K.RELU, K.TANH, K.SOFTMAX], np.float64, "numpy")
    state = net.__getstate__()
    state["acts"] = np.array([K.RELU, K.SOFTMAX, K.SOFTMAX])  # a pickle edited by hand
    with pytest.raises(ValueError, match="hidden layers take identity, relu, sigmoid"):
        Network.__new__(Network).__setstate__(state)
    with pytest.raises(ValueError, match="units must be >= 1, got 0"):
        Dense(0)
    with pytest.raises(TypeError, match="layers\\[0\\] must be a fastnn.Dense"):
        Sequential(["relu"])


@pytest.mark.parametrize("kw, exc, match", [
    (dict(epochs=0), ValueError, "epochs must be >= 1, got 0"),
    (dict(batch_size=0), ValueError, "batch_size must be >= 1, got 0"),
    (dict(batch_size=2.5), TypeError, "batch_size must be an integer, got 2.5"),
    (dict(validation_data=np.zeros(3)), ValueError, "validation_data must be a tuple"),
])
def test_bad_fit_options(iris, kw, exc, match):
    with pytest.raises(exc, match=match):
        iris_model().fit(iris[0], iris[1], **kw)


def test_bad_optimizer_hyperparameters():
    with pytest.raises(ValueError, match="learning_rate must be in \\(0.0, inf\\), got -0.1"):
        fastnn.optimizers.Adam(learning_rate=-0.1)
    with pytest.raises(ValueError, match="beta_1 must be in \\[0.0, 1.0\\), got 1.0"):
        fastnn.optimizers.Adam(beta_1=1.0)
    with pytest.raises(TypeError, match="momentum must be a real number, got 'x'"):
        fastnn.optimizers.SGD(momentum="x")


@pytest.mark.parametrize("method", ["predict", "predict_proba"])
def test_predict_before_fit(method):
    with pytest.raises(ValueError, match=f"not fitted yet; call fit before {method}"):
        getattr(iris_model(), method)(np.zeros((2, 4)))


def test_wrong_feature_count_at_predict(fitted):
    with pytest.raises(ValueError, match="X has 5 features, but the model was fitted with 4"):
        fitted.predict(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="X contains NaN"):
        fitted.predict(np.full((3, 4), np.nan))


def test_unseen_labels_at_evaluate(fitted, iris):
    with pytest.raises(ValueError, match="labels the model was not fitted with: \\[7\\]"):
        fitted.evaluate(iris[2][:3], [0, 1, 7])


def test_set_weights_checks_shapes(fitted):
    weights = fitted.get_weights()
    with pytest.raises(ValueError, match="weights\\[0\\] has shape \\(3, 16\\), expected \\(4, 16\\)"):
        fitted.set_weights([weights[0][:3]] + weights[1:])
    with pytest.raises(ValueError, match="expects a list of 6 arrays"):
        fitted.set_weights(weights[:2])
    with pytest.raises(ValueError, match="weights\\[1\\] contains NaN"):
        fitted.set_weights([weights[0], weights[1] * np.nan] + weights[2:])


def test_divergence_keeps_last_finite_weights(iris):
    Xtr, ytr, _, _ = iris
    model = Sequential([Dense(16, "relu"), Dense(1, "linear")], loss="mse",
                       optimizer=fastnn.optimizers.SGD(learning_rate=1e3), seed=0)
    with pytest.warns(fastnn.DivergenceWarning, match="training diverged at epoch"):
        history = model.fit(Xtr * 1e3, ytr * 1e3, epochs=50)
    assert all(np.isfinite(w).all() for w in model.get_weights())
    assert all(np.isfinite(history["loss"]))
    assert len(history["loss"]) < 50


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_an_overflowed_adam_moment_is_divergence_and_the_model_still_saves(tmp_path, backend):
    # Inputs large but finite for float32 (1e18, timestamps in ns): v = g * g overflows
    # to inf while loss and weights stay finite. Before, that froze the weights (m /
    # sqrt(inf) = 0) with no warning, and save() then wrote a file that load() refused.
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(32, 2)) * 1e18).astype(np.float32)
    y = rng.normal(size=32)
    model = Sequential([Dense(1, "linear")], loss="mse", dtype="float32", backend=backend,
                       seed=0)
    with np.errstate(over="ignore"), pytest.warns(
            fastnn.DivergenceWarning, match=r"at epoch 1 \(loss = [0-9.e+]+, weights or "
                                            r"optimizer state became non-finite\)"):
        model.fit(X, y, epochs=5, batch_size=32)
    state = model._trainer
    assert all(np.isfinite(a).all() for a in [*model.get_weights(), state.m, state.v])
    model.save(tmp_path / "m.npz")
    back = fastnn.load(tmp_path / "m.npz")
    assert all(np.array_equal(a, b) for a, b in zip(back.get_weights(), model.get_weights()))


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("loss, units", [("mse", 1), ("categorical_crossentropy", 3),
                                         ("binary_crossentropy", 1)])
def test_overflowing_outputs_are_refused_by_every_call(iris, backend, loss, units):
    # finite inputs that overflow the network (hidden units of +-inf meet at the output):
    # predict_proba refused them; evaluate, loss_and_gradients and the validation loss
    # returned NaN (and an accuracy of NaN probabilities) without a word
    Xtr, ytr, _, _ = iris
    y = {"mse": Xtr[:, 0], "categorical_crossentropy": ytr, "binary_crossentropy": ytr > 0}[loss]
    model = Sequential([Dense(2, "relu"), Dense(units, {"mse": "linear", "binary_crossentropy":
                        "sigmoid"}.get(loss, "softmax"))], loss=loss, backend=backend, seed=0)
    model.fit(Xtr, y, epochs=1)
    w1, b1, w2, b2 = model.get_weights()
    w1[:], w2[0], w2[1] = 1e10, 1.0, -1.0
    model.set_weights([w1, b1, w2, b2])
    big, y_big = np.full((2, 4), 1e300), y[:2]
    message = r"overflowed to a non-finite value; {} holds values up to 1e\+300: scale"
    with np.errstate(all="ignore"):
        for call in [lambda: model.predict_proba(big), lambda: model.evaluate(big, y_big),
                     lambda: model.loss_and_gradients(big, y_big)]:
            with pytest.raises(ValueError, match=message.format("X")):
                call()
        # a fit's validation data: training (finite) goes on, the metric is NaN, and said
        with pytest.warns(RuntimeWarning, match=r"output overflowed to a non-finite value; "
                                                r"validation_data holds values up to 1e\+300: "
                                                r"scale the inputs \(val_loss is nan\)"):
            history = model.fit(Xtr, y, epochs=2, validation_data=(big, y_big))
    assert len(history["loss"]) == 2 and np.isnan(history["val_loss"]).all()
    assert np.isfinite(history["loss"]).all()


def test_integers_past_float64_are_a_value_error_naming_the_argument(fitted):
    # 10**400 in a list: NumPy's cast raised OverflowError ("int too large to convert to
    # float"), naming nothing
    row = [[10**400, 0, 0, 0]]
    with pytest.raises(ValueError, match="X holds an integer too large for float64"):
        fitted.predict(row)
    with pytest.raises(ValueError, match="X holds an integer too large for float64"):
        fitted.compile_predictor()(row)
    reg = Sequential([Dense(1, "linear")], loss="mse")
    with pytest.raises(ValueError, match="y holds an integer too large for float64"):
        reg.fit(np.zeros((3, 2)), [10**400, 0, 0])


def test_sizes_past_what_the_machine_can_index_are_value_errors(iris, monkeypatch):
    Xtr, ytr, _, _ = iris
    with pytest.raises(ValueError, match="n_threads must be <= 2147483647, got 2147483648"):
        Sequential([Dense(3, "softmax")], n_threads=2**31)  # threadpoolctl's C int
    with pytest.raises(ValueError, match=r"units must be <= 4611686018427387904"):
        Dense(2**63)
    model = Sequential([Dense(2**62, "relu"), Dense(3, "softmax")])
    with pytest.raises(ValueError, match=r"make \d+ parameters, more than 4611686018427387904"):
        model.fit(Xtr, ytr)  # an OverflowError from the int64 offsets before
    # epochs: memory per engine call, not per epoch asked for (an array of 2**40 floats
    # was allocated up front: MemoryError); here the first epoch diverges at once
    from fastnn._network import Trainer

    def diverging(self, x, y, sw, orders, hyper, t, totals):
        totals[:] = np.nan
        return 0

    monkeypatch.setattr(Trainer, "epochs", diverging)
    with pytest.warns(fastnn.DivergenceWarning):
        history = iris_model().fit(Xtr, ytr, epochs=2**40)
    assert history["loss"] == []


# --- compiled predictor ---------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_compiled_predictor_matches_predict_proba(iris, backend):
    Xtr, ytr, Xte, _ = iris
    model = iris_model(backend)
    model.fit(Xtr, ytr, epochs=5)
    predict = model.compile_predictor()
    for rows in (Xte[:1], Xte[:7], Xte, Xte.tolist(), np.asfortranarray(Xte)):
        assert_array_equal(predict(rows), model.predict_proba(rows))
    frozen = predict(Xte)
    model.fit(Xtr, ytr, epochs=1)  # the predictor keeps the weights it was made with
    assert_array_equal(predict(Xte), frozen)


def test_compiled_predictor_refuses_bad_rows(fitted):
    predict = fitted.compile_predictor()
    with pytest.raises(ValueError, match="X contains NaN"):
        predict(np.full((1, 4), np.nan))
    with pytest.raises(ValueError, match="X contains infinity"):
        predict(np.array([[0.0, np.inf, 0.0, 0.0]]))
    with pytest.raises(ValueError, match="X has 3 features, but the model was fitted with 4"):
        predict(np.zeros((2, 3)))
    # Same row stride as a clean 4-wide array, but only 3 columns: must not be read as 4.
    wide = np.zeros((5, 4))
    with pytest.raises(ValueError, match="X has 3 features"):
        predict(wide[:, :3])
    with pytest.raises(ValueError, match="X has 0 samples; at least 1 is required"):
        predict(np.zeros((0, 4)))


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_compiled_predictor_is_safe_to_share_between_threads(backend):
    # Two threads call one predictor at once with different rows; each must get its own
    # rows' outputs. (An earlier predictor kept one scratch buffer for all its one-row
    # calls: at 20000 calls a thread it returned the other thread's activations 5 and 1
    # times.)
    import threading

    X, y = load_digits(return_X_y=True)
    model = Sequential([Dense(128, activation="relu"), Dense(64, activation="relu"),
                        Dense(10, activation="softmax")], backend=backend, seed=0)
    model.fit(X / 16, y, epochs=1, batch_size=64)
    predict = model.compile_predictor()
    batches = [np.ascontiguousarray(X[i : i + 1] / 16) for i in range(2)]
    want = [model.predict_proba(b) for b in batches]
    wrong = [0, 0]

    def hammer(i):
        for _ in range(50000):
            wrong[i] += not np.array_equal(predict(batches[i]), want[i])

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == [0, 0]


def test_warmup_compiles_both_dtypes_for_every_entry_point():
    import fastnn.kernels as K

    spent = fastnn.warmup()
    assert set(spent) == {"float64", "float32"} and all(s > 0 for s in spent.values())
    for kernel in (K.run_epochs, K.loss_grad, K.predict_forward, K.all_finite, K.xent_loss,
                   K.bce_loss, K.mse_loss):
        dtypes = {str(sig[0].dtype) for sig in kernel.signatures}
        assert {"float32", "float64"} <= dtypes, (kernel.__name__, dtypes)
    assert K.shuffled_orders.signatures
    from fastnn import _split

    if _split.two_threads():  # the two-thread epoch: its arrays start at argument 1
        assert {str(sig[1].dtype) for sig in K.run_epochs_split.signatures} == {
            "float32", "float64"}
    assert set(fastnn.warmup("float32")) == {"float32"}  # one dtype named as a string
    assert set(fastnn.warmup(np.float32)) == {"float32"}  # or as NumPy's type
    assert set(fastnn.warmup([np.dtype("float64")])) == {"float64"}
    with pytest.raises(ValueError, match="dtype must be 'float32' or 'float64', got 'int8'"):
        fastnn.warmup("int8")
    fastnn.warmup("float64", sparse=True)
    for kernel in (K.run_epochs_csr, K.loss_grad_csr, K.predict_forward_csr):
        assert "float64" in {str(sig[0].dtype) for sig in kernel.signatures}, kernel.__name__


def test_values_past_float32_name_the_range_in_a_float32_model(iris):
    # 1e39 is finite as given; a float32 model's copy of it is infinity
    Xtr, ytr, _, _ = iris
    model = iris_model(dtype="float32")
    model.fit(Xtr, ytr, epochs=1)
    with pytest.raises(ValueError, match=r"X contains infinity \(or values past float32's "
                                         r"range, 3.4e38, which become infinity\)"):
        model.predict(np.full((1, 4), 1e39))


def test_unclear_inputs_get_errors_that_name_them(iris):
    Xtr, ytr, _, _ = iris
    with pytest.raises(ValueError, match="seed must be >= 0, got -1"):
        Sequential([Dense(2, "softmax")], seed=-1)
    model = iris_model()
    with pytest.raises(TypeError, match=r"y holds labels of types \['NoneType', 'str'\], which "
                                        r"cannot be sorted"):
        model.fit(Xtr, np.array(["a", None] * len(Xtr), dtype=object)[:len(Xtr)], epochs=1)
    model.fit(Xtr, ytr, epochs=1)
    with pytest.raises(TypeError, match=r"y holds labels of types \['int', 'str'\]"):
        model.evaluate(Xtr[:2], np.array(["a", 1], dtype=object))
    weights = model.get_weights()
    model.set_weights(np.array(weights, dtype=object))  # an object array of the arrays
    assert_array_equal(model.get_weights()[0], weights[0])
    with pytest.raises(ValueError, match=r"weights\[0\] is not a rectangular array"):
        model.set_weights([[[1.0, 2.0], [3.0]]] + weights[1:])


def test_n_threads_limits_blas_inside_fit_and_keeps_the_numbers(iris, monkeypatch):
    from threadpoolctl import threadpool_info

    from fastnn._network import Trainer

    seen = []
    real_epochs = Trainer.epochs

    def recording(self, *args):
        seen.append({p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"})
        return real_epochs(self, *args)

    monkeypatch.setattr(Trainer, "epochs", recording)
    Xtr, ytr, Xte, _ = iris
    limited, free = iris_model(n_threads=1), iris_model()
    limited.fit(Xtr, ytr, epochs=3)
    assert seen and all(counts == {1} for counts in seen)
    free.fit(Xtr, ytr, epochs=3)
    for a, b in zip(limited.get_weights(), free.get_weights()):
        assert_array_equal(a, b)
    with pytest.raises(ValueError, match="n_threads must be >= 1, got 0"):
        iris_model(n_threads=0)
    # evaluate and loss_and_gradients run inside the limit too
    from fastnn._network import Network

    labels = limited.predict(Xte)
    calls = []
    for name in ("predict", "loss_grad"):
        real = getattr(Network, name)

        def recording_call(self, *args, _real=real, **kwargs):
            calls.append({p["num_threads"] for p in threadpool_info()
                          if p["user_api"] == "blas"})
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(Network, name, recording_call)
    limited.evaluate(Xte, labels)
    limited.loss_and_gradients(Xte, labels)
    assert len(calls) == 2 and all(counts == {1} for counts in calls)


def test_estimator_n_threads_is_a_parameter():
    from sklearn.base import clone
    from sklearn.exceptions import ConvergenceWarning

    clf = fastnn.MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, n_threads=1, random_state=0)
    assert clone(clf).get_params()["n_threads"] == 1
    X, y = load_iris(return_X_y=True)
    with pytest.warns(ConvergenceWarning):  # 5 iterations, as scikit-learn would warn
        clf.fit(X, y)
    assert clf.predict(X).shape == (150,)
    with pytest.raises(ValueError, match="'n_threads' parameter"):
        fastnn.MLPClassifier(n_threads=0).fit(X, y)


def _line_aligned(a):
    return a.ctypes.data % 64 == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [0, 1, 3, 17, 1000])
def test_aligned_buffers(dtype, n):
    from fastnn._network import aligned_copy, aligned_empty, aligned_zeros

    for a in (aligned_empty(n, dtype), aligned_zeros(n, dtype),
              aligned_copy(np.arange(n, dtype=dtype)[::-1])):
        assert a.shape == (n,) and a.dtype == dtype and a.flags.c_contiguous
        assert n == 0 or _line_aligned(a)
    assert not aligned_zeros(n, dtype).any()
    assert_array_equal(aligned_copy(np.arange(n, dtype=dtype)[::-1]),
                       np.arange(n, dtype=dtype)[::-1])


def test_engine_buffers_start_on_cache_lines(iris, tmp_path):
    # Every buffer the kernels stream: the weights, the gradient, the optimizer state and
    # the work buffer of a fit, a loaded model's, and a compiled predictor's weights.
    Xtr, ytr, _, _ = iris
    model = iris_model()
    model.fit(Xtr, ytr, epochs=2, batch_size=16)
    trainer = model._trainer
    for a in (model._net.theta, trainer.grad, trainer.work, trainer.m, trainer.v):
        assert _line_aligned(a)
    predictor = model.compile_predictor()
    assert _line_aligned(predictor._net.theta)
    model.save(tmp_path / "m.npz")
    back = fastnn.load(tmp_path / "m.npz")
    for a in (back._net.theta, back._trainer.m, back._trainer.v):
        assert _line_aligned(a)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_fitted_model_and_predictor_pickle(iris, backend):
    # pickle and deepcopy (joblib, multiprocessing, checkpoints): the same predictions, and
    # training on continues exactly as in the original, from realigned buffers
    import copy
    import pickle

    Xtr, ytr, Xte, _ = iris
    model = iris_model(backend)
    model.fit(Xtr, ytr, epochs=3, batch_size=16)
    predictor = model.compile_predictor()
    for back in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
        assert_array_equal(back.predict_proba(Xte), model.predict_proba(Xte))
        assert all(_line_aligned(a) for a in (back._net.theta, back._trainer.grad,
                                              back._trainer.work, back._trainer.m) if a.size)
        assert back._trainer.net is back._net
        back.fit(Xtr, ytr, epochs=2, batch_size=16)
    model.fit(Xtr, ytr, epochs=2, batch_size=16)
    assert_array_equal(back.get_weights()[0], model.get_weights()[0])
    again = pickle.loads(pickle.dumps(predictor))
    assert_array_equal(again(Xte), predictor(Xte))
    assert _line_aligned(again._net.theta)


def test_multilabel_and_one_unit_targets_are_shape_checked():
    # a 3-unit sigmoid model takes 0/1 rows of 3 columns only: 1-D labels would reach the
    # kernels as one column and be read as three; a 1-unit model takes an (n, 1) column
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 3))
    Y3 = (X > 0).astype(int)
    model = Sequential([Dense(4, "relu"), Dense(3, "sigmoid")], loss="binary_crossentropy",
                       seed=0)
    model.fit(X, Y3, epochs=1)
    for call in (lambda: model.fit(X, Y3[:, 0], epochs=1),
                 lambda: model.loss_and_gradients(X, Y3[:, 0]),
                 lambda: model.evaluate(X, Y3[:, 0])):
        with pytest.raises(ValueError, match=r"y must be 0/1 indicator rows with 3 columns for "
                                             r"this 3-unit sigmoid output \(multilabel\), got "
                                             r"shape \(40,\)"):
            call()
    one = Sequential([Dense(4, "relu"), Dense(1, "sigmoid")], loss="binary_crossentropy", seed=0)
    column = Sequential([Dense(4, "relu"), Dense(1, "sigmoid")], loss="binary_crossentropy",
                        seed=0)
    one.fit(X, Y3[:, 0], epochs=2)
    column.fit(X, Y3[:, :1], epochs=2, validation_data=(X, Y3[:, :1]))
    assert_array_equal(one.get_weights()[0], column.get_weights()[0])
    assert one.evaluate(X, Y3[:, :1]) == one.evaluate(X, Y3[:, 0])


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_sparse_rows_train_and_predict_as_their_dense_rows(backend):
    import pickle

    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    X = np.where(rng.random((60, 30)) < 0.8, 0.0, rng.standard_normal((60, 30)))
    y = np.arange(60) % 3
    Xs = sp.csr_matrix(X)

    def model():
        return Sequential([Dense(6, "tanh"), Dense(3, "softmax")], seed=0, backend=backend)

    sparse, dense = model(), model()
    hs = sparse.fit(Xs, y, epochs=3, batch_size=8, validation_data=(Xs.tocsc(), y))
    hd = dense.fit(X, y, epochs=3, batch_size=8, validation_data=(X, y))
    assert_allclose(hs["loss"], hd["loss"], rtol=1e-13)
    assert_allclose(hs["val_loss"], hd["val_loss"], rtol=1e-13)
    for a, b in zip(sparse.get_weights(), dense.get_weights()):
        assert_allclose(a, b, rtol=1e-13, atol=1e-15)
    assert_allclose(sparse.predict_proba(Xs), dense.predict_proba(X), rtol=1e-13)
    assert sparse.evaluate(Xs, y) == pytest.approx(dense.evaluate(X, y), rel=1e-13)
    assert sparse.loss_and_gradients(Xs, y)[0] == pytest.approx(
        dense.loss_and_gradients(X, y)[0], rel=1e-13)
    predictor = pickle.loads(pickle.dumps(sparse.compile_predictor()))
    assert_allclose(predictor(Xs[:5]), dense.predict_proba(X[:5]), rtol=1e-13)
    sparse.fit(X, y, epochs=1, batch_size=8)  # dense rows again: the trainer follows
    dense.fit(X, y, epochs=1, batch_size=8)
    assert_allclose(sparse.get_weights()[0], dense.get_weights()[0], rtol=1e-12, atol=1e-15)
    bad = Xs.copy()
    bad.data[3] = np.nan
    for call in (lambda: sparse.predict_proba(bad), lambda: predictor(bad),
                 lambda: sparse.fit(bad, y, epochs=1)):
        with pytest.raises(ValueError, match="X contains NaN"):
            call()
    with pytest.raises(TypeError, match="y is a sparse matrix"):
        sparse.fit(Xs, sp.csr_matrix(np.eye(3)[y]), epochs=1)
    # a Trainer's work buffer fits one input kind: the other is refused, never run in it
    from fastnn._network import Trainer

    trainer = Trainer(sparse._net, 8, fastnn.kernels.OPT_ADAM, sparse=True)
    with pytest.raises(ValueError, match="this Trainer's workspace is for CSR rows"):
        trainer.epochs(X, np.eye(3)[y], np.ones(60), np.arange(60)[None], sparse._hyper(), 0,
                       np.empty(1))
