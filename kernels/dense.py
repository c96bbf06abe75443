"""Dense layer kernels: ``z = x @ w + b`` and its two backward products."""

import numpy as np

from ._jit import inline, kernel

# Below this many multiply-adds a product runs in hand-written loops; above it, BLAS
# through np.dot. BLAS costs a fixed ~1 us per call (dispatch, packing), which the
# 4-16-16-3 iris net never earns back; digits' 32x64x128 products (262k) do.
# Measured with `python benchmarks/matmul_threshold.py`, see README "Kernel notes".
BLAS_MIN_WORK = 16384


@inline
def _matmul_bias(x, w, b, out):
    if x.shape[0] * x.shape[1] * w.shape[1] >= BLAS_MIN_WORK:
        _matmul_bias_blas(x, w, b, out)
    else:
        _matmul_bias_loops(x, w, b, out)


@inline
def _matmul_bias_blas(x, w, b, out):
    np.dot(x, w, out)
    for i in range(x.shape[0]):
        for j in range(w.shape[1]):
            out[i, j] += b[j]


@inline
def _matmul_bias_loops(x, w, b, out):
    n, n_in = x.shape
    n_out = w.shape[1]
    # Four rows at a time: each w[k, j] loaded once feeds four FMAs. Rows of 16 or 3
    # outputs are too short for LLVM's 4x-interleaved zmm loop (32 lanes), so the plain
    # i-k-j loop ran mostly scalar: 16x16x16 took ~1.1 us plain vs ~0.6 us blocked.
    i = 0
    while i + 4 <= n:
        for j in range(n_out):
            out[i, j] = b[j]
            out[i + 1, j] = b[j]
            out[i + 2, j] = b[j]
            out[i + 3, j] = b[j]
        for k in range(n_in):
            x0 = x[i, k]
            x1 = x[i + 1, k]
            x2 = x[i + 2, k]
            x3 = x[i + 3, k]
            for j in range(n_out):
                wkj = w[k, j]
                out[i, j] += x0 * wkj
                out[i + 1, j] += x1 * wkj
                out[i + 2, j] += x2 * wkj
                out[i + 3, j] += x3 * wkj
        i += 4
    while i < n:
        for j in range(n_out):
            out[i, j] = b[j]
        for k in range(n_in):
            xik = x[i, k]
            for j in range(n_out):
                out[i, j] += xik * w[k, j]
        i += 1


@inline
def _grad_params(x, delta, w, alpha, denom, grad_w, grad_b):
    # grad_w = (x.T @ delta + alpha * w) / denom ; grad_b = delta.sum(0) / denom
    n, n_in = x.shape
    n_out = delta.shape[1]
    if n * n_in * n_out >= BLAS_MIN_WORK:
        np.dot(x.T, delta, grad_w)
    else:
        _xt_delta_loops(x, delta, grad_w)
    for k in range(n_in):
        for j in range(n_out):
            grad_w[k, j] = (grad_w[k, j] + alpha * w[k, j]) / denom
    for j in range(n_out):
        grad_b[j] = 0
    for i in range(n):
        for j in range(n_out):
            grad_b[j] += delta[i, j]
    for j in range(n_out):
        grad_b[j] /= denom


@inline
def _xt_delta_loops(x, delta, grad_w):
    # grad_w = x.T @ delta
    n, n_in = x.shape
    n_out = delta.shape[1]
    for k in range(n_in):
        for j in range(n_out):
            grad_w[k, j] = 0
    i = 0
    while i + 4 <= n:  # four samples per pass over grad_w (see _matmul_bias_loops)
        for k in range(n_in):
            x0 = x[i, k]
            x1 = x[i + 1, k]
            x2 = x[i + 2, k]
            x3 = x[i + 3, k]
            for j in range(n_out):
                grad_w[k, j] += (x0 * delta[i, j] + x1 * delta[i + 1, j]) + (
                    x2 * delta[i + 2, j] + x3 * delta[i + 3, j])
        i += 4
    while i < n:
        for k in range(n_in):
            xik = x[i, k]
            for j in range(n_out):
                grad_w[k, j] += xik * delta[i, j]
        i += 1


@inline
def _grad_input(delta, w, out):
    # out = delta @ w.T
    if delta.shape[0] * delta.shape[1] * w.shape[0] >= BLAS_MIN_WORK:
        np.dot(delta, w.T, out)
    else:
        _grad_input_loops(delta, w, out)


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
    _grad_params(x, delta, w, alpha, denom, grad_w, grad_b)


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
