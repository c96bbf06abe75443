"""Finite-difference check of ``Sequential.loss_and_gradients``.

For every hidden activation x every output/loss pair and both backends: build the model
with one epoch of ``fit``, then compare the analytic gradient against central
differences ``(L(theta + h e_p) - L(theta - h e_p)) / 2h`` over every entry ``p`` of the
flat parameter buffer ``model._net.theta``.

ReLU's kink: each hidden unit's bias is moved so that zero sits in the middle of the
widest gap between that unit's pre-activations over the batch; ``|z|`` then stays far
above ``h * max|x|`` (asserted), so no perturbation crosses the kink and the loss is
smooth along every probed direction.
"""

import numpy as np
import pytest

from fastnn import Dense, Sequential

N = 12  # samples
N_FEATURES = 4
N_HIDDEN = 5

HIDDEN = ["relu", "sigmoid", "tanh", "linear"]
# id -> (output activation, loss, units)
OUTPUTS = {
    "softmax-xent": ("softmax", "categorical_crossentropy", 3),
    "sigmoid-bce": ("sigmoid", "binary_crossentropy", 1),
    "sigmoid-bce-multilabel": ("sigmoid", "binary_crossentropy", 3),
    "linear-mse": ("linear", "mse", 1),
    "linear-mse-2": ("linear", "mse", 2),
}

# float64: h = 1e-6. Truncation error h^2 f''' / 6 ~ 1e-13; the rounding error of L is a
# few ulps of |L| ~ 1 (4e-16 each), i.e. ~1e-9 absolute in the quotient (measured <= 8e-10).
# An entry with |grad| below ~1e-3 cannot be resolved to 1e-6 relative, so the denominator
# has a floor: such entries are held to |a - n| < FLOOR * BOUND = 2e-9 instead.
F64 = dict(h=1e-6, floor=2e-3, bound=1e-6)
# float32: the loss itself carries ~1e-7 relative rounding (eps_f32 = 1.2e-7), so the
# quotient's noise is ~eps_f32 * |L| / h: 0.1 at h = 1e-6, useless. h = 1e-2 balances that
# noise (~1e-5) against truncation (h^2 f''' / 6 ~ 2e-5); measured errors stay below
# 3e-5 absolute and 2e-3 relative, hence the looser bound and floor.
F32 = dict(h=1e-2, floor=1e-2, bound=5e-3)


def _data(loss, units):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((N, N_FEATURES))
    if loss == "categorical_crossentropy":
        y = np.arange(N) % units  # every class present
    elif units == 1 and loss == "binary_crossentropy":
        y = np.arange(N) % 2
    elif loss == "binary_crossentropy":
        y = (rng.random((N, units)) < 0.5).astype(np.float64)  # multilabel indicator rows
        y[0], y[1] = 0, 1  # so every column holds both 0 and 1
    else:
        y = rng.standard_normal((N, units)) if units > 1 else rng.standard_normal(N)
    return X, y


def _center_hidden_biases(model, X):
    """Put zero mid-way in the widest gap of each hidden unit's pre-activations."""
    w1, b1, *rest = model.get_weights()
    s = X @ w1.astype(np.float64)
    for j in range(s.shape[1]):
        v = np.sort(s[:, j])
        k = np.diff(v).argmax()
        b1[j] = -(v[k] + v[k + 1]) / 2
    model.set_weights([w1, b1, *rest])
    w1, b1 = (a.astype(np.float64) for a in model.get_weights()[:2])
    return np.abs(X @ w1 + b1).min()


def _flat_gradient(model, grads):
    """The gradient list [dW1, db1, dW2, db2] laid out like the flat buffer theta."""
    net = model._net
    flat = np.full_like(net.theta, np.nan)
    views = [a for pair in zip(net.coefs(flat), net.intercepts(flat)) for a in pair]
    assert [v.shape for v in views] == [g.shape for g in grads]
    for dst, src in zip(views, grads):
        dst[...] = src
    assert np.isfinite(flat).all()  # every entry written
    return flat.astype(np.float64)


def _check(backend, dtype, hidden, output, h, floor, bound):
    activation, loss, units = OUTPUTS[output]
    X, y = _data(loss, units)
    model = Sequential([Dense(N_HIDDEN, hidden), Dense(units, activation)], loss=loss,
                       backend=backend, dtype=dtype, seed=0)
    model.fit(X, y, epochs=1, batch_size=4)
    margin = _center_hidden_biases(model, X)
    # A perturbation moves a hidden pre-activation by at most h * max|x| (W1) or h (b1).
    assert margin > 3 * h * max(1.0, np.abs(X).max())

    _, grads = model.loss_and_gradients(X, y)
    analytic = _flat_gradient(model, grads)
    theta = model._net.theta
    theta0 = theta.copy()
    numeric = np.empty_like(analytic)
    for p in range(theta.size):
        old = theta[p].copy()
        theta[p] = old + h
        up, t_up = model.loss_and_gradients(X, y)[0], float(theta[p])
        theta[p] = old - h
        down, t_down = model.loss_and_gradients(X, y)[0], float(theta[p])
        theta[p] = old
        # theta +- h is rounded to dtype: divide by the step actually taken (float32 matters)
        numeric[p] = (up - down) / (t_up - t_down)
    assert np.array_equal(theta, theta0)

    rel = np.abs(analytic - numeric) / np.maximum(np.abs(analytic) + np.abs(numeric), floor)
    worst = int(rel.argmax())
    assert rel.max() < bound, (
        f"entry {worst}: analytic {analytic[worst]:.6e}, numeric {numeric[worst]:.6e}, "
        f"relative error {rel[worst]:.2e}")
    # not vacuous: most entries are above the floor, i.e. held to the relative bound
    # not vacuous: a good share of the entries is above the floor (held to the relative bound)
    assert np.mean(np.abs(analytic) > floor) > 0.2


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize("output", sorted(OUTPUTS))
def test_gradient_matches_central_differences_float64(backend, hidden, output):
    _check(backend, "float64", hidden, output, **F64)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize("output", sorted(OUTPUTS))
def test_gradient_matches_central_differences_float32(backend, hidden, output):
    _check(backend, "float32", hidden, output, **F32)
