"""Dense layer kernels: ``z = x @ w + b`` and its two backward products."""

import numpy as np

from ._jit import (
    BLAS_CORE,
    column_sums_into,
    dot_into,
    dot_nt_cols_into,
    dot_nt_into,
    dot_t_into,
    flat_view,
    greater,
    inline,
    inline_ir,
    kernel,
    lesser,
    require_length,
    require_shape,
    rows_view,
    tile_dot_bias_into,
    tile_dot_gate_into,
    tile_dot_t_into,
)
from .activations import _relu_derivative_inplace

# Products of at most TILE_MAX multiply-adds run in the kernels' register tiles
# (kernels/_jit.py), larger ones through BLAS (_jit.py's direct gemm calls, into
# preallocated buffers). Measured on an AMD EPYC (AVX2, OpenBLAS's Haswell kernels), ns
# per product in compiled loops, float64, tiles / BLAS (forward; x.T @ delta alike):
# iris' 16x4x16 142 / 374, 16x16x16 227 / 390, 16x16x3 111 / 261; W-small's 32x64x64
# 5.7 / 7.5 us, 32x64x128 14.7 / 15.3 us, 32x128x64 11.6 / 16.7 us; above 2**18, at
# 64x64x128, x.T @ delta takes 43 us vs 29 (b no longer fits in L1, and BLAS packs it).
# A W-small epoch with the limit at 2**18 took 0.91x the time it took at 2**17 (two
# alternations of the bench: 6.74-6.91 ms vs 7.38-7.58).
# Products of fewer than FEW_ROWS rows take the tiles at any size: one pass over
# w, which BLAS would pack first (784x512, us, tiles / BLAS, float64: 1 row 141 / 256,
# 2 rows 177 / 181, 3 rows 398 / 214; float32: 30 / 122, 39 / 113, 60 / 121).
# `python benchmarks/matmul_threshold.py` re-measures.
TILE_MAX = 262144
FEW_ROWS = 3
#
# delta @ w.T is a transposed-A gemm in BLAS's column-major terms, which OpenBLAS's
# small-matrix kernels refuse for short inner dimensions (n_out < 32 here) and run
# through its packing path instead. Up to TRANSPOSE_MAX weights, copying w.T and taking
# the plain product is faster: 16x16x16 237 ns vs 431, 16x16x3 86 vs 222, 128x256x10
# 14.5 us vs 22.6 (batch x n_in x n_out); at 32x128x64 it is slower (21.8 vs 14.3 us).
# Above that, OpenBLAS's small-matrix path does take the transposed form when the inner
# dimension is >= 32 and the output block is small (M * N <= 1200 in its terms): a
# product in its small-matrix range (<= 1e6 multiply-adds) goes in blocks of output
# columns that fit, 32x128x64 in four (16.8 us vs 21.4 as one call; W-small epoch 0.95x).
# (Measured on a Xeon, before the register tiles, through BLAS.) Only OpenBLAS's SkylakeX
# core has that path: with its Haswell core (AVX2 CPUs; an AMD EPYC here) the blocks are
# separate packed calls, and W-small's 32x128x64 took 26.0-27.6 us in four against
# 17.0-20.3 in one (compiled loops); a W-small epoch 6.57-6.69 ms in one call against
# 6.78-7.04 in blocks in two alternations of the bench, 6.60-6.87 vs 6.70-6.84 in two more.
TRANSPOSE_MAX = 4096
SMALL_GEMM_RANGE = 1000000  # OpenBLAS's small-matrix range, in multiply-adds
SMALL_GEMM_MAX = SMALL_GEMM_RANGE if BLAS_CORE == "skylakex" else 0
SMALL_GEMM_BLOCK = 1200


@inline_ir
def _tiled(a, b):
    # whether a @ b runs in the tiles, by the rule above
    return a.shape[0] < FEW_ROWS or a.shape[0] * a.shape[1] * b.shape[1] <= TILE_MAX


@inline
def _dot_t(a, b, out):
    # out = a.T @ b, likewise (a's rows are the inner dimension: no few-rows case)
    if a.shape[0] * a.shape[1] * b.shape[1] <= TILE_MAX:
        tile_dot_t_into(a, b, out)
    else:
        dot_t_into(a, b, out)


@inline
def _matmul_bias(x, w, b, relu, out):
    # out = x @ w + b, with ReLU applied in the same pass when relu: in the tiles as they
    # store each sum (the bits of the separate passes, without a second trip through
    # out), else after BLAS. Written back after the sum, ReLU's zeros are plain stores;
    # in place on its own (z = z if z > 0 else 0) it compiled to masked stores of the
    # zeros, which AMD's Zen 3 runs slowly: 256 elements in 174-206 ns against 44-56 for
    # the same select into a second array.
    if _tiled(x, w):
        tile_dot_bias_into(x, w, b, relu, out)
        return
    dot_into(x, w, out)
    zero = out.dtype.type(0)
    for i in range(x.shape[0]):
        if relu:
            for j in range(w.shape[1]):
                z = out[i, j] + b[j]
                out[i, j] = z if z > zero else zero
        else:
            for j in range(w.shape[1]):
                out[i, j] += b[j]


@inline
def _grad_params(x, delta, w, alpha, denom, scale, grad_w, grad_b):
    # grad_w = (x.T @ delta + alpha * w) / denom ; grad_b = delta.sum(0) / denom; with
    # scale False only the sums: the epoch kernel's optimizer step applies the rest as
    # it streams the parameters anyway (optim._batch_grad), saving a pass over grad.
    # The column sums in registers, in the order (and rounding) of the plain
    # grad_b[j] += delta[i, j] loop, which waited on its own store at every row.
    _dot_t(x, delta, grad_w)
    _finish_grad_params(delta, w, alpha, denom, scale, grad_w, grad_b)


@inline_ir
def _finish_grad_params(delta, w, alpha, denom, scale, grad_w, grad_b):
    # what _grad_params and _csr_grad_params do after grad_w = x.T @ delta
    n_in, n_out = w.shape
    if scale:
        for k in range(n_in):
            for j in range(n_out):
                grad_w[k, j] = (grad_w[k, j] + alpha * w[k, j]) / denom
    column_sums_into(delta, grad_b)
    if scale:
        for j in range(n_out):
            grad_b[j] /= denom


# Sparse input: rows of a CSR matrix (data, indices, indptr), batch row r being matrix row
# rows[r]. Each stored value adds its row of w (forward) or of delta (weight gradient):
# the work follows the stored values, not the width, and entries within a row add up in
# their stored order, as SciPy's CSR products add them.
@inline
def _csr_matmul_bias(data, indices, indptr, rows, w, b, relu, out):
    # out = x[rows] @ w + b, ReLU applied when relu (as _matmul_bias)
    zero = out.dtype.type(0)
    n_out = w.shape[1]
    for r in range(rows.shape[0]):
        for j in range(n_out):
            out[r, j] = zero
        src = rows[r]
        for p in range(indptr[src], indptr[src + 1]):
            value = data[p]
            k = indices[p]
            for j in range(n_out):
                out[r, j] += value * w[k, j]
        if relu:
            for j in range(n_out):
                z = out[r, j] + b[j]
                out[r, j] = z if z > zero else zero
        else:
            for j in range(n_out):
                out[r, j] += b[j]


@inline
def _csr_grad_params(data, indices, indptr, rows, delta, w, alpha, denom, scale, grad_w,
                     grad_b):
    # _grad_params with x = the CSR rows: grad_w = x[rows].T @ delta, row after row
    zero = grad_w.dtype.type(0)
    n_in, n_out = w.shape
    for k in range(n_in):
        for j in range(n_out):
            grad_w[k, j] = zero
    for r in range(rows.shape[0]):
        src = rows[r]
        for p in range(indptr[src], indptr[src + 1]):
            value = data[p]
            k = indices[p]
            for j in range(n_out):
                grad_w[k, j] += value * delta[r, j]
    _finish_grad_params(delta, w, alpha, denom, scale, grad_w, grad_b)


@inline
def _grad_input(delta, w, scratch, gate, gated, out):
    # out = delta @ w.T, times ReLU's derivative (0 where not gate > 0) when gated, gate
    # being the ReLU layer's output (of out's shape); scratch: TRANSPOSE_MAX elements for
    # the transposed copy. In the tiles the derivative is applied as each sum is stored.
    n_in, n_out = w.shape
    if n_in * n_out <= TRANSPOSE_MAX:
        w_t = rows_view(scratch, 0, n_out, n_in)
        for j in range(n_out):
            for k in range(n_in):
                w_t[j, k] = w[k, j]
        if _tiled(delta, w_t):
            tile_dot_gate_into(delta, w_t, gate, gated, out)
            return
        dot_into(delta, w_t, out)
    elif n_out >= 32 and delta.shape[0] * n_in * n_out <= SMALL_GEMM_MAX:
        step = greater(1, SMALL_GEMM_BLOCK // delta.shape[0])
        for start in range(0, n_in, step):
            dot_nt_cols_into(delta, w, out, start, lesser(start + step, n_in))
    else:
        dot_nt_into(delta, w, out)
    if gated:
        _relu_derivative_inplace(flat_view(gate), flat_view(out))


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
    require_length(w, x.shape[1], "w must have one row per column of x")
    require_shape(b, (w.shape[1],), "b must have one entry per column of w")
    require_shape(out, (x.shape[0], w.shape[1]), "out must have the shape of x @ w")
    _matmul_bias(x, w, b, False, out)


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
    require_shape(w, (x.shape[1], delta.shape[1]), "w must have the shape of x.T @ delta")
    require_length(delta, x.shape[0], "delta must have one row per row of x")
    require_shape(grad_w, w.shape, "grad_w must have the shape of w")
    require_shape(grad_b, (w.shape[1],), "grad_b must have one entry per column of w")
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
    require_shape(w, (w.shape[0], delta.shape[1]), "w must have one column per column of delta")
    require_shape(out, (delta.shape[0], w.shape[0]), "out must have the shape of delta @ w.T")
    _grad_input(delta, w, np.empty(w.size if w.size <= TRANSPOSE_MAX else 0, w.dtype), out,
                False, out)
