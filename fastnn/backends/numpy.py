"""Plain vectorized NumPy engine: the reference for tests and the speed baseline.

The small functions are the note's formulas one by one, named like their kernels in
``fastnn.kernels`` and returning their result instead of writing into ``out``. The
engine functions at the bottom (``run_epochs``, ``loss_grad``, ``predict_forward``,
``workspace_size``) take exactly the kernels' arguments, so a model switches engines by
switching modules. Samples are rows: the note's ``W X^T + b`` is ``x @ w + b`` here.
"""

import numpy as np

from fastnn.kernels import (
    EXP,
    HYPER_ALPHA,
    HYPER_BETA_1,
    HYPER_BETA_2,
    HYPER_CLIP_EPS,
    HYPER_EPSILON,
    HYPER_GSCALE,
    HYPER_LR,
    HYPER_MOMENTUM,
    IDENTITY,
    LOGISTIC,
    OPT_ADAM,
    OPT_NESTEROV,
    RELU,
    SOFTMAX,
    TANH,
)

__all__ = [
    "adam_update", "bce_loss", "dense_backward", "dense_backward_input", "dense_forward",
    "exp_forward", "exp_poisson_grad", "identity_backward", "identity_forward",
    "log_softmax_forward", "loss_grad", "mse_grad", "poisson_loss",
    "mse_loss", "nesterov_update", "predict_forward", "relu_backward", "relu_forward",
    "run_epochs", "sgd_update", "sigmoid_backward", "sigmoid_bce_grad", "sigmoid_forward",
    "softmax_forward", "softmax_xent_grad", "tanh_backward", "tanh_forward",
    "workspace_size", "xent_loss",
]


# --- layers and activations -------------------------------------------------------
def dense_forward(x, w, b):
    """``z = x @ w + b``."""
    return x @ w + b


def dense_backward(x, delta, w, alpha, denom):
    """``((x.T @ delta + alpha * w) / denom, delta.sum(0) / denom)``."""
    grad_w = x.T @ delta
    grad_w += alpha * w
    grad_w /= denom
    return grad_w, delta.sum(axis=0) / denom


def dense_backward_input(delta, w):
    """dL/da of the layer input: ``delta @ w.T`` (the chain rule through ``z = a w + b``)."""
    return delta @ w.T


def identity_forward(z):
    return z.copy()


def relu_forward(z):
    return np.maximum(z, 0)


def sigmoid_forward(z):
    one = z.dtype.type(1)
    # exp(-z) overflows to inf for z < -88 (float32) / -709 (float64); 1 / inf = 0 is the
    # right answer, so the overflow warning is noise (and an error under -W error).
    with np.errstate(over="ignore"):
        return one / (one + np.exp(-z))


def tanh_forward(z):
    return np.tanh(z)


def exp_forward(z):
    """The Poisson regressor's log-link output ``exp(z)``."""
    return np.exp(z)


def softmax_forward(z):
    """Exponentiate and normalize each row; the row max is subtracted first."""
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def log_softmax_forward(z):
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def identity_backward(a, grad):
    return grad.copy()


def relu_backward(a, grad):
    return np.where(a > 0, grad, 0).astype(grad.dtype)


def sigmoid_backward(a, grad):
    return grad * a * (1 - a)


def tanh_backward(a, grad):
    return grad * (1 - a * a)


_FORWARD = {IDENTITY: identity_forward, RELU: relu_forward, LOGISTIC: sigmoid_forward,
            TANH: tanh_forward, SOFTMAX: softmax_forward, EXP: exp_forward}
_BACKWARD = {IDENTITY: identity_backward, RELU: relu_backward, LOGISTIC: sigmoid_backward,
             TANH: tanh_backward}


# --- losses ---------------------------------------------------------------------
def _clip(p, eps):
    return np.clip(p, eps, 1 - eps)


def xent_loss(p, y1h, sw, eps):
    """``-sum_i sw_i sum_j y_ij log(clip(p_ij))`` (the note's categorical cross-entropy)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(y1h != 0, y1h * np.log(_clip(p, eps)), 0)
    return float(-(sw @ terms.sum(axis=1)))


def bce_loss(p, y, sw, eps):
    pc = _clip(p, eps)
    terms = np.where(y != 0, y * np.log(pc), 0) + np.where(y != 1, (1 - y) * np.log(1 - pc), 0)
    return float(-(sw @ terms.sum(axis=1)))


def mse_loss(p, y, sw):
    return float(sw @ (0.5 * ((p - y) ** 2).mean(axis=1)))


def poisson_loss(p, y, sw):
    """Half Poisson deviance sum ``sum_i sw_i sum_j [y log(y / p) - y + p]`` (0 log 0 = 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(y != 0, y * np.log(y / p), 0) + (p - y)
    return float(sw @ terms.sum(axis=1))


def softmax_xent_grad(z, y1h, sw, eps):
    """(loss sum, ``sw * (softmax(z) - y1h)``)."""
    p = softmax_forward(z)
    return xent_loss(p, y1h, sw, eps), sw[:, None] * (p - y1h)


def sigmoid_bce_grad(z, y, sw, eps):
    p = sigmoid_forward(z)
    return bce_loss(p, y, sw, eps), sw[:, None] * (p - y)


def exp_poisson_grad(z, y, sw):
    """(loss sum, ``sw * (exp(z) - y)``): the log link makes dL/dz = p - y."""
    p = exp_forward(z)
    return poisson_loss(p, y, sw), sw[:, None] * (p - y)


def mse_grad(z, y, sw, gscale):
    return mse_loss(z, y, sw), sw[:, None] * (z - y) * z.dtype.type(gscale)


# --- optimizers -------------------------------------------------------------------
def sgd_update(theta, grad, velocity, lr, momentum):
    """In place: ``velocity = momentum * velocity - lr * grad; theta += velocity``."""
    velocity *= momentum
    velocity -= lr * grad
    theta += velocity


def nesterov_update(theta, grad, velocity, lr, momentum):
    velocity *= momentum
    velocity -= lr * grad
    theta += momentum * velocity - lr * grad


def adam_update(theta, grad, m, v, lr, beta_1, beta_2, epsilon, t):
    """In place; Kingma & Ba (arXiv:1412.6980) with the bias correction in the step."""
    step = lr * np.sqrt(1.0 - beta_2 ** float(t)) / (1.0 - beta_1 ** float(t))
    m *= beta_1
    m += (1 - beta_1) * grad
    v *= beta_2
    v += (1 - beta_2) * (grad * grad)
    theta += (-step * m) / (np.sqrt(v) + epsilon)


# --- the engine -------------------------------------------------------------------
def _layers(theta, sizes, offsets):
    n_layers = len(sizes) - 1
    for layer in range(n_layers):
        n_in, n_out = int(sizes[layer]), int(sizes[layer + 1])
        w0, b0 = int(offsets[layer]), int(offsets[n_layers + layer])
        yield layer, theta[w0 : w0 + n_in * n_out].reshape(n_in, n_out), theta[b0 : b0 + n_out]


def _forward(x, theta, sizes, offsets, acts):
    """Hidden activations (input first) and the output pre-activation."""
    activations = [x]
    n_layers = len(sizes) - 1
    z = x
    for layer, w, b in _layers(theta, sizes, offsets):
        z = dense_forward(activations[-1], w, b)
        if layer < n_layers - 1:
            activations.append(_FORWARD[int(acts[layer])](z))
    return activations, z


def workspace_size(sizes, rows, sparse=False):
    """The NumPy engine allocates as it goes; it needs no scratch."""
    return 0


def _csr(data, indices, indptr, n_cols):
    # SciPy's CSR matrix over the engine's arrays: its products (x @ w, x.T @ delta) and
    # row selection (x[idx]) are what the functions below use
    import scipy.sparse

    return scipy.sparse.csr_matrix((data, indices, indptr),
                                   shape=(indptr.shape[0] - 1, int(n_cols)))


def loss_grad_csr(data, indices, indptr, y, sw, theta, sizes, offsets, acts, hyper, work, grad):
    """:func:`loss_grad` of the CSR matrix ``(data, indices, indptr)``."""
    return loss_grad(_csr(data, indices, indptr, sizes[0]), y, sw, theta, sizes, offsets, acts,
                     hyper, work, grad)


def run_epochs_csr(data, indices, indptr, y, sw, orders, batch_size, theta, grad, m, v, sizes,
                   offsets, acts, hyper, t, opt, work, totals):
    """:func:`run_epochs` of the CSR matrix ``(data, indices, indptr)``."""
    return run_epochs(_csr(data, indices, indptr, sizes[0]), y, sw, orders, batch_size, theta,
                      grad, m, v, sizes, offsets, acts, hyper, t, opt, work, totals)


def loss_grad(x, y, sw, theta, sizes, offsets, acts, hyper, work, grad):
    """Mean loss (+ L2) over ``x`` and its gradient into ``grad``: backprop by the chain rule."""
    n_layers = len(sizes) - 1
    activations, z = _forward(x, theta, sizes, offsets, acts)
    out_code = int(acts[-1])
    if out_code == SOFTMAX:
        loss, delta = softmax_xent_grad(z, y, sw, hyper[HYPER_CLIP_EPS])
    elif out_code == LOGISTIC:
        loss, delta = sigmoid_bce_grad(z, y, sw, hyper[HYPER_CLIP_EPS])
    elif out_code == EXP:
        loss, delta = exp_poisson_grad(z, y, sw)
    else:
        loss, delta = mse_grad(z, y, sw, hyper[HYPER_GSCALE])
    sw_sum = float(sw.sum(dtype=np.float64))
    alpha = float(hyper[HYPER_ALPHA])
    layers = list(_layers(theta, sizes, offsets))
    l2 = 0.0
    if alpha != 0.0:
        l2 = 0.5 * alpha * sum(float(np.dot(w.ravel(), w.ravel())) for _, w, _ in layers)
    grads = {layer: (gw, gb) for layer, gw, gb in _layers(grad, sizes, offsets)}
    dtype = theta.dtype.type
    for layer in range(n_layers - 1, -1, -1):
        _, w, _ = layers[layer]
        grad_w, grad_b = grads[layer]
        grad_w[...], grad_b[...] = dense_backward(activations[layer], delta, w, dtype(alpha),
                                                  dtype(sw_sum))
        if layer > 0:
            delta = _BACKWARD[int(acts[layer - 1])](activations[layer],
                                                    dense_backward_input(delta, w))
    return loss / sw_sum + l2 / sw_sum


def run_epochs(x, y, sw, orders, batch_size, theta, grad, m, v, sizes, offsets, acts, hyper,
               t, opt, work, totals):
    """Epochs of mini-batch training, one per row of ``orders``; a Python loop over
    batches, vectorized inside. An epoch that leaves the loss or the weights non-finite
    is undone and ends the run; returns the number of epochs completed."""
    lr = float(hyper[HYPER_LR])
    for epoch, order in enumerate(orders):
        saved = (theta.copy(), m.copy(), v.copy())
        total = 0.0
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            loss = loss_grad(x[idx], y[idx], sw[idx], theta, sizes, offsets, acts, hyper, None,
                             grad)
            total += loss * len(idx)
            t += 1
            if opt == OPT_ADAM:
                adam_update(theta, grad, m, v, lr, float(hyper[HYPER_BETA_1]),
                            float(hyper[HYPER_BETA_2]), float(hyper[HYPER_EPSILON]), t)
            elif opt == OPT_NESTEROV:
                nesterov_update(theta, grad, m, lr, float(hyper[HYPER_MOMENTUM]))
            else:
                sgd_update(theta, grad, m, lr, float(hyper[HYPER_MOMENTUM]))
        totals[epoch] = total
        if not (np.isfinite(total) and all(np.isfinite(a).all() for a in (theta, m, v))):
            for live, copy in zip((theta, m, v), saved):
                live[...] = copy
            return epoch
    return len(orders)


def forward_output(x, theta, sizes, offsets, acts):
    """Network output for every row of ``x``, unchecked: a NaN or an infinity in ``x``
    runs through the arithmetic as it will."""
    _, z = _forward(x, theta, sizes, offsets, acts)
    return _FORWARD[int(acts[-1])](z)


def predict_forward_csr(data, indices, indptr, theta, sizes, offsets, acts, out):
    """:func:`predict_forward` of the CSR matrix ``(data, indices, indptr)``."""
    if not np.isfinite(data).all():
        return False
    out[...] = forward_output(_csr(data, indices, indptr, sizes[0]), theta, sizes, offsets,
                              acts)
    return True


def predict_forward(x, theta, sizes, offsets, acts, out):
    """Network output for every row of ``x``, written into ``out``; False (and ``out``
    untouched) when ``x`` is not all finite."""
    if not np.isfinite(x).all():
        return False
    out[...] = forward_output(x, theta, sizes, offsets, acts)
    return True
