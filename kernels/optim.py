"""Parameter updates over the flat parameter buffer (one fused loop each)."""

import numpy as np

from ._codes import (
    ADAM_EPS_FLOOR_F32,
    ADAM_EPS_FLOOR_F64,
    OPT_ADAM,
    SMALLEST_NORMAL_F32,
    SMALLEST_NORMAL_F64,
)
from ._jit import (
    ADAM_AVX512,
    adam_avx512,
    inline,
    inline_ir,
    kernel,
    opaque_float,
    require_shape,
)


@inline_ir
def _batch_grad(grad, theta, p, n_weights, alpha, denom):
    # The gradient from the raw sums that _grad_params(scale=False) leaves: weights first
    # in theta, then biases; the same expression _grad_params(scale=True) evaluates.
    if p < n_weights:
        return (grad[p] + alpha * theta[p]) / denom
    return grad[p] / denom


@inline
def _sgd(theta, grad, velocity, lr, momentum, n_weights, alpha, denom):
    mu = theta.dtype.type(momentum)
    eta = theta.dtype.type(lr)
    a = theta.dtype.type(alpha)
    d = theta.dtype.type(denom)
    for p in range(theta.shape[0]):
        u = mu * velocity[p] - eta * _batch_grad(grad, theta, p, n_weights, a, d)
        velocity[p] = u
        theta[p] += u


@inline
def _nesterov(theta, grad, velocity, lr, momentum, n_weights, alpha, denom):
    mu = theta.dtype.type(momentum)
    eta = theta.dtype.type(lr)
    a = theta.dtype.type(alpha)
    d = theta.dtype.type(denom)
    for p in range(theta.shape[0]):
        g = _batch_grad(grad, theta, p, n_weights, a, d)
        u = mu * velocity[p] - eta * g
        velocity[p] = u
        theta[p] += mu * u - eta * g


@inline
def _adam(theta, grad, m, v, lr, beta_1, beta_2, epsilon, t, n_weights, alpha, denom):
    # Kingma & Ba's "efficient" form: the bias corrections fold into the step size.
    step = lr * np.sqrt(1.0 - beta_2 ** float(t)) / (1.0 - beta_1 ** float(t))
    b1 = theta.dtype.type(beta_1)
    b2 = theta.dtype.type(beta_2)
    # opaque: with 1 - beta in sight the optimizer factors the moments (kernels/_jit.py)
    c1 = opaque_float(theta.dtype.type(1.0 - beta_1))
    c2 = opaque_float(theta.dtype.type(1.0 - beta_2))
    neg_step = theta.dtype.type(-step)
    eps = theta.dtype.type(epsilon)
    a = theta.dtype.type(alpha)
    d = theta.dtype.type(denom)
    if ADAM_AVX512:  # a compile-time constant: AVX-512 (kernels/_jit.py)
        adam_avx512(theta, grad, m, v, n_weights, b1, c1, b2, c2, neg_step, eps, a,
                    theta.dtype.type(1) / d)
    else:
        for p in range(theta.shape[0]):
            g = _batch_grad(grad, theta, p, n_weights, a, d)
            mp = b1 * m[p] + c1 * g
            vp = b2 * v[p] + c2 * (g * g)
            m[p] = mp
            v[p] = vp
            theta[p] += neg_step * mp / (np.sqrt(vp) + eps)


@inline
def _flush_subnormal_state(opt, m, v, epsilon):
    # Optimizer state below the smallest normal number becomes 0; the epoch kernel calls
    # this at the end of every epoch (kernels/_codes.py says why). Adam's only where
    # epsilon is at least ADAM_EPS_FLOOR, which leaves its steps as they were.
    if m.itemsize == 4:
        tiny, eps_floor = m.dtype.type(SMALLEST_NORMAL_F32), ADAM_EPS_FLOOR_F32
    else:
        tiny, eps_floor = m.dtype.type(SMALLEST_NORMAL_F64), ADAM_EPS_FLOOR_F64
    if opt == OPT_ADAM and not (eps_floor <= epsilon < np.inf):
        return
    zero = m.dtype.type(0)
    for p in range(m.shape[0]):
        m[p] = zero if abs(m[p]) < tiny else m[p]
        v[p] = zero if abs(v[p]) < tiny else v[p]


@kernel
def sgd_update(theta, grad, velocity, lr, momentum):
    """Gradient descent with heavy-ball momentum, in place.

    ``velocity = momentum * velocity - lr * grad``; ``theta += velocity``. With
    ``momentum = 0`` this is the note's plain ``theta -= lr * grad``.

    Parameters
    ----------
    theta, grad, velocity : ndarray of shape (n_params,)
        ``theta`` and ``velocity`` are updated in place.
    lr, momentum : float
    """
    require_shape(grad, theta.shape, "grad must have the shape of theta")
    require_shape(velocity, theta.shape, "velocity must have the shape of theta")
    _sgd(theta, grad, velocity, lr, momentum, 0, 0.0, 1.0)


@kernel
def nesterov_update(theta, grad, velocity, lr, momentum):
    """Nesterov momentum (Sutskever et al., 2013), in place.

    ``velocity = momentum * velocity - lr * grad``;
    ``theta += momentum * velocity - lr * grad``.
    """
    require_shape(grad, theta.shape, "grad must have the shape of theta")
    require_shape(velocity, theta.shape, "velocity must have the shape of theta")
    _nesterov(theta, grad, velocity, lr, momentum, 0, 0.0, 1.0)


@kernel
def adam_update(theta, grad, m, v, lr, beta_1, beta_2, epsilon, t):
    """One Adam step over the flat buffer, in place.

    ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g**2``,
    ``theta += -lr * sqrt(1 - b2**t) / (1 - b1**t) * m / (sqrt(v) + eps)``.

    Parameters
    ----------
    theta, grad, m, v : ndarray of shape (n_params,)
        ``theta``, ``m`` and ``v`` are updated in place.
    lr, beta_1, beta_2, epsilon : float
    t : int
        The step number, starting at 1 for the first update.

    References
    ----------
    Kingma & Ba, "Adam: A Method for Stochastic Optimization", arXiv:1412.6980.
    """
    require_shape(grad, theta.shape, "grad must have the shape of theta")
    require_shape(m, theta.shape, "m must have the shape of theta")
    require_shape(v, theta.shape, "v must have the shape of theta")
    _adam(theta, grad, m, v, lr, beta_1, beta_2, epsilon, t, 0, 0.0, 1.0)
