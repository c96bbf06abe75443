"""Dense layer kernels: ``z = x @ w + b`` and its two backward products."""

import numpy as np

from ._jit import inline, kernel

# x @ w and x.T @ delta always go to BLAS (np.dot into preallocated buffers): OpenBLAS's
# small-matrix kernels beat our hand loops at every size we measured, even 16x4x16
# (155 ns vs 297 ns; `python benchmarks/matmul_threshold.py`, which keeps the loop
# versions it compares against). delta @ w.T is the exception: its hand loops win below
# BLAS_MIN_WORK multiply-adds (16x16x16: 381 ns loops vs 460 ns BLAS), as long as the
# dot products they run along n_out are LOOPS_MIN_DOT long. Shorter ones (iris' output
# layer, n_out = 3) lose from 32 rows on (150x16x3: 2101 ns loops, 1184 ns BLAS) and tie
# below that.
BLAS_MIN_WORK = 8192
LOOPS_MIN_DOT = 8


@inline
def _matmul_bias(x, w, b, out):
    np.dot(x, w, out)
    for i in range(x.shape[0]):
        for j in range(w.shape[1]):
            out[i, j] += b[j]


@inline
def _grad_params(x, delta, w, alpha, denom, scale, grad_w, grad_b):
    # grad_w = (x.T @ delta + alpha * w) / denom ; grad_b = delta.sum(0) / denom; with
    # scale False only the sums: the epoch kernel's optimizer step applies the rest as
    # it streams the parameters anyway (optim._batch_grad), saving a pass over grad.
    n, n_in = x.shape
    n_out = delta.shape[1]
    np.dot(x.T, delta, grad_w)
    if scale:
        for k in range(n_in):
            for j in range(n_out):
                grad_w[k, j] = (grad_w[k, j] + alpha * w[k, j]) / denom
    for j in range(n_out):
        grad_b[j] = 0
    for i in range(n):
        for j in range(n_out):
            grad_b[j] += delta[i, j]
    if scale:
        for j in range(n_out):
            grad_b[j] /= denom


@inline
def _grad_input(delta, w, out):
    # out = delta @ w.T
    work = delta.shape[0] * delta.shape[1] * w.shape[0]
    if work < BLAS_MIN_WORK and delta.shape[1] >= LOOPS_MIN_DOT:
        _grad_input_loops(delta, w, out)
    else:
        np.dot(delta, w.T, out)


@inline
def _grad_input_loops(delta, w, out):
    n, n_out = delta.shape
    n_in = w.shape[0]
    zero = out.dtype.type(0)
    i = 0
    while i + 4 <= n:  # four independent dot products share each w[k, j] load
        for k in range(n_in):
            a0 = zero
            a1 = zero
            a2 = zero
            a3 = zero
            for j in range(n_out):
                wkj = w[k, j]
                a0 += delta[i, j] * wkj
                a1 += delta[i + 1, j] * wkj
                a2 += delta[i + 2, j] * wkj
                a3 += delta[i + 3, j] * wkj
            out[i, k] = a0
            out[i + 1, k] = a1
            out[i + 2, k] = a2
            out[i + 3, k] = a3
        i += 4
    while i < n:
        for k in range(n_in):
            acc = zero
            for j in range(n_out):
                acc += delta[i, j] * w[k, j]
            out[i, k] = acc
        i += 1


@kernel
def dense_forward(x, w, b, out):
    """Affine map of a batch: ``out = x @ w + b``.

    Parameters
    ----------
    x : ndarray of shape (n_samples, n_in)
    w : ndarray of shape (n_in, n_out)
    b : ndarray of shape (n_out,)
    out : ndarray of shape (n_samples, n_out)
        Overwritten with the pre-activation ``z``.
    """
    _matmul_bias(x, w, b, out)


@kernel
def dense_backward(x, delta, w, alpha, denom, grad_w, grad_b):
    """Parameter gradients of a dense layer, with an L2 term.

    ``grad_w = (x.T @ delta + alpha * w) / denom`` and
    ``grad_b = delta.sum(axis=0) / denom``; ``denom`` is the batch's
    ``sum(sample_weight)``, so a mean loss gets a mean gradient.

    Parameters
    ----------
    x : ndarray of shape (n_samples, n_in)
        The layer's input (the previous layer's activation).
    delta : ndarray of shape (n_samples, n_out)
        dL/dz of this layer, unscaled (per-sample weights already applied).
    w : ndarray of shape (n_in, n_out)
    alpha, denom : float
    grad_w : ndarray of shape (n_in, n_out)
        Overwritten.
    grad_b : ndarray of shape (n_out,)
        Overwritten.
    """
    _grad_params(x, delta, w, alpha, denom, True, grad_w, grad_b)


@kernel
def dense_backward_input(delta, w, out):
    """Back-propagate ``delta`` through the weights: ``out = delta @ w.T``.

    Parameters
    ----------
    delta : ndarray of shape (n_samples, n_out)
    w : ndarray of shape (n_in, n_out)
    out : ndarray of shape (n_samples, n_in)
        Overwritten with dL/da of the layer's input.
    """
    _grad_input(delta, w, out)
