"""Every kernel in ``fastnn.kernels`` against its NumPy twin in ``fastnn.backends.numpy``.

The small kernels write into their ``out`` arguments while their twins return values;
the engine functions (``run_epochs``, ``loss_grad``, ``predict_forward``) share one
signature, so the same call runs on both (``all_finite``'s twin is ``np.isfinite``).
Then hand-checked cases: one Adam step, huge
logits, a worked 2-2-2 training step, kernels called from another ``@numba.njit``
function, and (``slow``) hypothesis invariants of softmax.
"""

import re

import numba
import numpy as np
import pytest
import scipy.sparse as sp
from conftest import DTYPES, TOL
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from numpy.testing import assert_allclose, assert_array_equal

from fastnn import kernels as K
from fastnn._network import Network, csr_arrays, layout, make_hyper
from fastnn.kernels import _jit
from fastnn.kernels._jit import TILE_ROWS, TILE_WIDTH, borrowed, rows_view
from fastnn.kernels.activations import _exp_nonpositive
from fastnn.kernels.dense import (
    SMALL_GEMM_BLOCK,
    FEW_ROWS,
    SMALL_GEMM_RANGE,
    TILE_MAX,
    TRANSPOSE_MAX,
)
from fastnn.kernels.epoch import PREDICT_BLOCK
from fastnn.backends import numpy as npb

# (n, n_in, n_out) for the matmul kernels: products of at most TILE_MAX multiply-adds
# (and forward products of fewer than FEW_ROWS rows) run in register tiles, the rest
# through BLAS. One row, iris' output layer over a batch and the whole set, odd sizes,
# W-small's 32x128x64 on the tiles' boundary and 33x128x64 just above it, and a
# W-large-sized first layer. delta @ w.T goes through a transposed copy of w up to
# TRANSPOSE_MAX weights (3x64x64 on the boundary; 65x64x64 takes BLAS on the copy, past
# TILE_MAX); above, in blocks of output columns for
# an inner dimension >= 32 in the small-matrix range (32x128x64: four blocks, the last
# short; 1x256x32: one), else in one call (5x204x8, 128x784x32).
SHAPES = [(1, 4, 3), (17, 64, 10), (5, 204, 8), (1, 256, 32), (128, 784, 32), (150, 16, 3),
          (16, 16, 16), (3, 64, 64), (65, 64, 64), (32, 128, 64), (33, 128, 64)]
assert 64 * 64 == TRANSPOSE_MAX and 128 % (SMALL_GEMM_BLOCK // 32) != 0
assert 128 * 784 * 32 > SMALL_GEMM_RANGE >= 33 * 128 * 64 > TILE_MAX == 32 * 128 * 64
assert 65 * 64 * 64 > TILE_MAX and 784 * 403 > TILE_MAX
# (n, k) for elementwise / row-wise kernels and losses; k = 1 is a binary output column.
ROWS = [(1, 3), (17, 1), (17, 10), (128, 32)]


# Every kernel this module tests; a kernel added to fastnn.kernels needs a test here.
TESTED = {
    "dense_forward", "dense_backward", "dense_backward_input",
    "identity_forward", "relu_forward", "sigmoid_forward", "tanh_forward", "softmax_forward",
    "log_softmax_forward", "identity_backward", "relu_backward", "sigmoid_backward",
    "tanh_backward",
    "softmax_xent_grad", "sigmoid_bce_grad", "mse_grad", "exp_poisson_grad",
    "xent_loss", "bce_loss", "mse_loss", "poisson_loss",
    "sgd_update", "nesterov_update", "adam_update",
    "run_epochs", "loss_grad", "predict_forward", "workspace_size", "all_finite",
    "run_epochs_csr", "loss_grad_csr", "predict_forward_csr",
    "shuffled_orders",
    "run_epochs_split",  # tests/test_split.py
}


def test_every_kernel_is_tested():
    assert {name for name in K.__all__ if name.islower()} == TESTED


def _normal(rng, shape, dtype, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


def _one_hot(rng, n, k, dtype):
    y = np.zeros((n, k), dtype)
    y[np.arange(n), rng.integers(0, k, n)] = 1
    return y


def _weights(rng, n, dtype):
    return rng.uniform(0.5, 2.0, n).astype(dtype)


# --- dense ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, n_in, n_out", SHAPES)
def test_dense_forward_matches_numpy(rng, dtype, n, n_in, n_out):
    x, w, b = (_normal(rng, s, dtype) for s in [(n, n_in), (n_in, n_out), (n_out,)])
    out = np.full((n, n_out), np.nan, dtype)
    K.dense_forward(x, w, b, out)
    assert_allclose(out, npb.dense_forward(x, w, b), **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, FEW_ROWS - 1, FEW_ROWS, TILE_ROWS - 1, TILE_ROWS])
@pytest.mark.parametrize("n_in", [1, 4, 7, 64, 784])
def test_dense_forward_of_a_few_rows_matches_numpy(rng, dtype, n, n_in):
    # Fewer than FEW_ROWS rows take the register tiles at any size (1x784x403 is past
    # TILE_MAX); from FEW_ROWS rows on, 3x784x403 goes through BLAS.
    n_out = 403 if n_in == 784 else 37
    x, w, b = (_normal(rng, s, dtype) for s in [(n, n_in), (n_in, n_out), (n_out,)])
    out = np.full((n, n_out), np.nan, dtype)
    K.dense_forward(x, w, b, out)
    # against float64 arithmetic, within the forward error bound of a sum of n_in + 1
    # products, (n_in + 1) * eps * (|x| @ |w| + |b|): a 784-term float32 sum that nearly
    # cancels is off by more than the table's atol in any summation order
    exact = x.astype(np.float64) @ w.astype(np.float64) + b
    x64, w64, b64 = (np.abs(v.astype(np.float64)) for v in (x, w, b))
    bound = (n_in + 1) * np.finfo(dtype).eps * (x64 @ w64 + b64)
    assert np.all(np.abs(out - exact) <= bound)
    if n_in < 784:  # short sums: within the table's tolerance of the NumPy twin too
        assert_allclose(out, npb.dense_forward(x, w, b), **TOL[dtype])


def _tile_products(width):
    # both tile intrinsics compiled afresh with width-byte vectors (the CPU's own width
    # where width is None); LLVM splits a 64-byte vector in two where the CPU has none
    saved = _jit.TILE_BYTES, _jit.TILE_MASKED_LOOP
    # each width with the leftover-column layout of the CPUs that use it: 32 bytes on
    # AVX2 (whole vectors, then a masked last one), 64 on AVX-512 (one masked loop)
    _jit.TILE_BYTES, _jit.TILE_MASKED_LOOP = width, (None if width is None else width == 64)
    try:
        tile_t = _jit._tile_t_intrinsic()
        column_sums = _jit._column_sums_intrinsic()
        tile_bias = _jit._tile_epilogue_intrinsic("bias")
        tile_gate = _jit._tile_epilogue_intrinsic("gate")

        @numba.njit(**_jit._OPTS)
        def products(a, a_t, b, out, out_t, sums, bias, relu, out_bias, gate, gated,
                     out_gate):
            tile_gate(a, b, out, False, out)  # the plain product, as dense_backward_input's
            tile_t(a_t, b, out_t)
            column_sums(b, sums)
            tile_bias(a, b, bias, relu, out_bias)
            tile_gate(a, b, gate, gated, out_gate)

        for dtype in DTYPES:  # compiled while the width is set
            square, row = np.zeros((1, 1), dtype), np.zeros(1, dtype)
            products(square, square, square, square, square, row, row, True, square,
                     square, True, square)
    finally:
        _jit.TILE_BYTES, _jit.TILE_MASKED_LOOP = saved
    return products


@pytest.mark.skipif(numba.config.DISABLE_JIT,
                    reason="NUMBA_DISABLE_JIT=1 (the coverage job): no machine code whose "
                           "multiply-adds could be counted; the main run checks")
def test_register_tile_loops_are_not_unrolled():
    # Each tile's multiply-adds appear once in the machine code: for every height r, a
    # tile of r rows and w vectors and one of r rows and a single vector (masked where
    # it is a row's last). LLVM unrolled the k loops about five times (310 for the 62 of
    # the tiles then, which had a third, masked, kind), at a cost in compile time and no
    # gain in speed.
    tile = _jit._tile_epilogue_intrinsic("gate")

    @numba.njit(**_jit._OPTS)
    def product(a, b, out):
        tile(a, b, out, False, out)

    square = np.zeros((1, 1))
    product(square, square, square)
    asm = product.inspect_asm(product.signatures[0])
    fmas = [line for line in asm.splitlines() if re.search(r"\bvfn?m(add|sub)\d", line)]
    from numba.core.registry import cpu_target

    # AVX2 CPUs keep a third kind: whole leftover vectors unmasked, then a masked last one
    kinds = 2 if _jit._has_avx512(cpu_target.target_context) else 3
    assert len(fmas) == sum(rows * (width + kinds - 1) for rows, width in TILE_WIDTH.items())


@pytest.mark.skipif(numba.config.DISABLE_JIT,
                    reason="NUMBA_DISABLE_JIT=1 (the coverage job): the tiles are LLVM IR "
                           "with no Python body; their JIT-off twins are np.dot")
def test_register_tiles_are_as_wide_as_the_cpus_vectors():
    from numba.core.registry import cpu_target

    features = cpu_target.target_context.codegen()._tm_features.split(",")
    assert _jit.tile_bytes(cpu_target.target_context) == (64 if "+avx512f" in features else 32)


@pytest.mark.skipif(numba.config.DISABLE_JIT,
                    reason="NUMBA_DISABLE_JIT=1 (the coverage job): the tiles are LLVM IR "
                           "with no Python body; their JIT-off twins are np.dot and a "
                           "row-by-row sum")
@pytest.mark.parametrize("width", [32, 64])
@pytest.mark.parametrize("dtype", DTYPES)
def test_register_tiles_match_numpy_at_every_edge(rng, dtype, width):
    # Every tile shape: rows 0 to 2 * TILE_ROWS + 3 (each number of leftover rows, whose
    # tiles are wider), columns up to past two of the widest tiles (whole tiles, whole
    # single vectors, a masked last vector), depth 0 (out becomes 0), 1 and odd. Each
    # element of out is written: it starts NaN. The column sums (the one-row tile) of b
    # have the bits of NumPy's, which adds row after row as they do. The epilogues give
    # the bits of the product followed by NumPy's bias add and ReLU (NaN to 0, as the
    # kernels' z if z > 0 else 0), or ReLU's derivative by its output gate.
    products = _tile_products(width)
    lanes = width // np.dtype(dtype).itemsize
    widest = lanes * max(TILE_WIDTH.values())
    for m in range(2 * TILE_ROWS + 4):
        for depth in (0, 1, 5):
            for n in sorted({1, lanes - 1, lanes, lanes + 1, 2 * lanes + 3, widest - 1,
                             widest, widest + lanes + 1, 2 * widest + 1} - {0}):
                a = _normal(rng, (m, depth), dtype)
                b = _normal(rng, (depth, n), dtype)
                out, out_t = np.full((m, n), np.nan, dtype), np.full((m, n), np.nan, dtype)
                sums = np.full(n, np.nan, dtype)
                bias = _normal(rng, n, dtype)
                bias[n // 2] = np.nan
                gate = np.maximum(_normal(rng, (m, n), dtype), 0)
                gate.flat[::5], gate.flat[1::7] = -0.0, np.nan  # neither is above 0
                relu, gated = bool(rng.integers(2)), bool(rng.integers(2))
                out_bias, out_gate = np.full((m, n), np.nan, dtype), np.full((m, n), np.nan, dtype)
                products(a, np.ascontiguousarray(a.T), b, out, out_t, sums, bias, relu,
                         out_bias, gate, gated, out_gate)
                z = out + bias
                assert_array_equal(out_bias, np.where(z > 0, z, 0) if relu else z,
                                   err_msg=f"{m}x{depth}x{n} bias, relu {relu}")
                assert_array_equal(out_gate, np.where(gate > 0, out, 0) if gated else out,
                                   err_msg=f"{m}x{depth}x{n} gate, gated {gated}")
                # NumPy's loops, not its BLAS: OpenBLAS's float32 gemm now and then raised
                # the invalid flag on these normal inputs (1 run in 10), which NumPy turns
                # into a RuntimeWarning, an error here
                want = np.einsum("ik,kj->ij", a, b)
                assert_allclose(out, want, **TOL[dtype], err_msg=f"{m}x{depth}x{n}")
                assert_allclose(out_t, want, **TOL[dtype], err_msg=f"{m}x{depth}x{n} (a.T)")
                assert_array_equal(sums, b.sum(axis=0), err_msg=f"{depth}x{n} sums")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows", [16, 33, 70])
def test_bias_gradients_add_row_after_row(rng, dtype, rows):
    # The bias gradients (each column's sum of delta) keep the order of adding row after
    # row, which NumPy's axis-0 sum and scikit-learn's use: the same bits. With the
    # tiles' k loops unrolled, LLVM (free to reassociate under the kernels' fastmath)
    # regrouped the sums of a row's leftover vectors once there were 16 rows or more:
    # 32 of 48 such shapes came out an ulp or a few off.
    for n in (3, 8, 15, 16, 17, 22, 63, 64, 65, 100, 150, 200):
        x, delta = _normal(rng, (rows, 4), dtype), _normal(rng, (rows, n), dtype)
        grad_w, grad_b = np.empty((4, n), dtype), np.full(n, np.nan, dtype)
        K.dense_backward(x, delta, np.zeros((4, n), dtype), 0.0, 1.0, grad_w, grad_b)
        want = np.zeros(n, dtype)
        for row in delta:
            want = want + row
        assert_array_equal(grad_b.view(f"u{grad_b.itemsize}"), want.view(f"u{want.itemsize}"),
                           err_msg=f"{rows} rows x {n}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, n_in, n_out", SHAPES)
def test_dense_backward_matches_numpy(rng, dtype, n, n_in, n_out):
    x, delta, w = (_normal(rng, s, dtype) for s in [(n, n_in), (n, n_out), (n_in, n_out)])
    alpha, denom = 0.3, 5.5
    grad_w = np.full((n_in, n_out), np.nan, dtype)
    grad_b = np.full(n_out, np.nan, dtype)
    K.dense_backward(x, delta, w, alpha, denom, grad_w, grad_b)
    want_w, want_b = npb.dense_backward(x, delta, w, dtype(alpha), dtype(denom))
    assert_allclose(grad_w, want_w, **TOL[dtype])
    assert_allclose(grad_b, want_b, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, n_in, n_out", SHAPES)
def test_dense_backward_input_matches_numpy(rng, dtype, n, n_in, n_out):
    delta, w = _normal(rng, (n, n_out), dtype), _normal(rng, (n_in, n_out), dtype)
    out = np.full((n, n_in), np.nan, dtype)
    K.dense_backward_input(delta, w, out)
    assert_allclose(out, npb.dense_backward_input(delta, w), **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("blocks", [True, False])
def test_dense_backward_input_in_column_blocks_or_one_call(rng, dtype, blocks, monkeypatch):
    # delta @ w.T past TRANSPOSE_MAX weights: in blocks of output columns where the core is
    # SkylakeX, in one call elsewhere. Both, on any CPU: _grad_input compiled afresh with
    # the compile-time limit patched (a fresh compile reads the module's global anew).
    # Gated, ReLU's derivative follows the BLAS call (in the tiles it rides in the store).
    from fastnn.kernels import dense

    monkeypatch.setattr(dense, "SMALL_GEMM_MAX", SMALL_GEMM_RANGE if blocks else 0)
    grad_input = numba.njit(**_jit._OPTS)(getattr(dense._grad_input, "py_func",
                                                  dense._grad_input))
    for n, n_in, n_out in [(32, 128, 64), (33, 128, 64), (1, 256, 32)]:
        assert n_in * n_out > TRANSPOSE_MAX and n * n_in * n_out <= SMALL_GEMM_RANGE
        delta, w = _normal(rng, (n, n_out), dtype), _normal(rng, (n_in, n_out), dtype)
        gate = np.maximum(_normal(rng, (n, n_in), dtype), 0)
        for gated in (False, True):
            out = np.full((n, n_in), np.nan, dtype)
            grad_input(delta, w, np.empty(0, dtype), gate, gated, out)
            want = delta @ w.T * (gate > 0) if gated else delta @ w.T
            assert_allclose(out, want, **TOL[dtype], err_msg=f"{n}x{n_in}x{n_out} {gated}")


# --- activations ---------------------------------------------------------------------
# fastmath "afn" lets LLVM (or SVML, where installed) use approximate exp/log/tanh; their
# float32 error is a few ulps (~5e-7 relative), well inside the table's rtol of 1e-4, so
# the activations and losses need no tolerance of their own.
FORWARD = ["identity_forward", "relu_forward", "sigmoid_forward", "tanh_forward",
           "softmax_forward", "log_softmax_forward"]
BACKWARD = {"identity_backward": "identity_forward", "relu_backward": "relu_forward",
            "sigmoid_backward": "sigmoid_forward", "tanh_backward": "tanh_forward"}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, k", ROWS)
@pytest.mark.parametrize("name", FORWARD)
@pytest.mark.parametrize("in_place", [False, True])
def test_activation_forward_matches_numpy(rng, dtype, n, k, name, in_place):
    # scale 4: sigmoid and tanh reach their flat tails, softmax rows get near one-hot
    z = _normal(rng, (n, k), dtype, scale=4.0)
    z[0, 0] = 0  # ReLU's kink and the identity's fixed point
    want = getattr(npb, name)(z)
    out = z if in_place else np.full_like(z, np.nan)
    getattr(K, name)(z, out)
    assert out.dtype == dtype
    assert_allclose(out, want, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, k", ROWS)
@pytest.mark.parametrize("name", sorted(BACKWARD))
@pytest.mark.parametrize("in_place", [False, True])
def test_activation_backward_matches_numpy(rng, dtype, n, k, name, in_place):
    z = _normal(rng, (n, k), dtype, scale=2.0)
    z[0, 0] = 0
    a = getattr(npb, BACKWARD[name])(z)  # backward kernels take the activation
    grad = _normal(rng, (n, k), dtype)
    want = getattr(npb, name)(a, grad)
    out = grad if in_place else np.full_like(grad, np.nan)
    getattr(K, name)(a, grad, out)
    assert_allclose(out, want, **TOL[dtype])


# --- losses --------------------------------------------------------------------------
def _eps(dtype):
    return float(np.finfo(dtype).eps)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, k", ROWS)
def test_softmax_xent_grad_matches_numpy(rng, dtype, n, k):
    z, y, sw = _normal(rng, (n, k), dtype, 3.0), _one_hot(rng, n, k, dtype), _weights(rng, n, dtype)
    delta = np.full_like(z, np.nan)
    loss = K.softmax_xent_grad(z, y, sw, _eps(dtype), delta)
    want_loss, want_delta = npb.softmax_xent_grad(z, y, sw, _eps(dtype))
    assert_allclose(loss, want_loss, **TOL[dtype])
    assert_allclose(delta, want_delta, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, k", ROWS)
def test_sigmoid_bce_grad_matches_numpy(rng, dtype, n, k):
    z, sw = _normal(rng, (n, k), dtype, 3.0), _weights(rng, n, dtype)
    y = (rng.random((n, k)) < 0.5).astype(dtype)
    y.flat[::3] = 0.25  # soft labels take both log terms
    delta = np.full_like(z, np.nan)
    loss = K.sigmoid_bce_grad(z, y, sw, _eps(dtype), delta)
    want_loss, want_delta = npb.sigmoid_bce_grad(z, y, sw, _eps(dtype))
    assert_allclose(loss, want_loss, **TOL[dtype])
    assert_allclose(delta, want_delta, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, k", ROWS)
@pytest.mark.parametrize("per_output", [False, True])
def test_mse_grad_matches_numpy(rng, dtype, n, k, per_output):
    z, y, sw = _normal(rng, (n, k), dtype), _normal(rng, (n, k), dtype), _weights(rng, n, dtype)
    gscale = 1.0 / k if per_output else 1.0
    delta = np.full_like(z, np.nan)
    loss = K.mse_grad(z, y, sw, gscale, delta)
    want_loss, want_delta = npb.mse_grad(z, y, sw, gscale)
    assert_allclose(loss, want_loss, **TOL[dtype])
    assert_allclose(delta, want_delta, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, k", ROWS)
def test_exp_poisson_grad_matches_numpy(rng, dtype, n, k):
    z, sw = _normal(rng, (n, k), dtype), _weights(rng, n, dtype)
    y = rng.poisson(1.5, (n, k)).astype(dtype)  # counts, zeros included
    y[0, 0] = 0
    delta = np.full_like(z, np.nan)
    loss = K.exp_poisson_grad(z, y, sw, delta)
    want_loss, want_delta = npb.exp_poisson_grad(z, y, sw)
    assert_allclose(loss, want_loss, **TOL[dtype])
    assert_allclose(delta, want_delta, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, k", ROWS)
def test_poisson_loss_matches_numpy(rng, dtype, n, k):
    p = np.exp(_normal(rng, (n, k), dtype))
    y = rng.poisson(1.5, (n, k)).astype(dtype)
    y[0, 0] = 0
    sw = _weights(rng, n, dtype)
    assert_allclose(K.poisson_loss(p, y, sw), npb.poisson_loss(p, y, sw), **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, k", ROWS)
def test_xent_loss_matches_numpy(rng, dtype, n, k):
    p = npb.softmax_forward(_normal(rng, (n, k), dtype, 3.0))
    y, sw = _one_hot(rng, n, k, dtype), _weights(rng, n, dtype)
    p[0] = 1 - y[0]  # a confident wrong row (or p = 0 when k = 1): the log's clip
    assert_allclose(K.xent_loss(p, y, sw, _eps(dtype)), npb.xent_loss(p, y, sw, _eps(dtype)),
                    **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, k", ROWS)
def test_bce_loss_matches_numpy(rng, dtype, n, k):
    p = rng.random((n, k)).astype(dtype)
    y = (rng.random((n, k)) < 0.5).astype(dtype)
    y.flat[::3] = 0.25
    p.flat[1::4] = 0  # p = 0 and p = 1 exercise both clips
    p.flat[2::4] = 1
    sw = _weights(rng, n, dtype)
    assert_allclose(K.bce_loss(p, y, sw, _eps(dtype)), npb.bce_loss(p, y, sw, _eps(dtype)),
                    **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, k", ROWS)
def test_mse_loss_matches_numpy(rng, dtype, n, k):
    p, y, sw = _normal(rng, (n, k), dtype), _normal(rng, (n, k), dtype), _weights(rng, n, dtype)
    assert_allclose(K.mse_loss(p, y, sw), npb.mse_loss(p, y, sw), **TOL[dtype])


# --- optimizers ----------------------------------------------------------------------
N_PARAMS = [1, 37, 4099]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_params", N_PARAMS)
@pytest.mark.parametrize("name", ["sgd_update", "nesterov_update"])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_momentum_update_matches_numpy(rng, dtype, n_params, name, momentum):
    theta, grad, vel = (_normal(rng, n_params, dtype) for _ in range(3))
    want_theta, want_vel = theta.copy(), vel.copy()
    getattr(npb, name)(want_theta, grad, want_vel, 0.1, momentum)
    getattr(K, name)(theta, grad, vel, 0.1, momentum)
    assert_allclose(theta, want_theta, **TOL[dtype])
    assert_allclose(vel, want_vel, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_params", N_PARAMS)
@pytest.mark.parametrize("t", [1, 10])
def test_adam_update_matches_numpy(rng, dtype, n_params, t):
    theta, grad, m = (_normal(rng, n_params, dtype) for _ in range(3))
    v = rng.uniform(0.0, 1.0, n_params).astype(dtype)
    want = [a.copy() for a in (theta, m, v)]
    npb.adam_update(want[0], grad, want[1], want[2], 1e-3, 0.9, 0.999, 1e-8, t)
    K.adam_update(theta, grad, m, v, 1e-3, 0.9, 0.999, 1e-8, t)
    for got, ref in zip((theta, m, v), want):
        assert_allclose(got, ref, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_step_by_hand(dtype):
    theta = np.array([1.0, -2.0, 0.5, 0.0], dtype)
    grad = np.array([0.1, -0.2, 0.0, 3.0], dtype)
    m = np.array([0.01, 0.02, -0.03, 0.0], dtype)
    v = np.array([1e-4, 4e-4, 9e-4, 0.0], dtype)
    lr, b1, b2, eps, t = 1e-2, 0.9, 0.999, 1e-8, 3
    # m' = b1 m + (1 - b1) g ; v' = b2 v + (1 - b2) g^2
    # theta' = theta - lr sqrt(1 - b2^t) / (1 - b1^t) * m' / (sqrt(v') + eps)
    g, m0, v0, th0 = (a.astype(np.float64) for a in (grad, m, v, theta))
    m1 = b1 * m0 + (1 - b1) * g
    v1 = b2 * v0 + (1 - b2) * g**2
    th1 = th0 - lr * np.sqrt(1 - b2**t) / (1 - b1**t) * m1 / (np.sqrt(v1) + eps)
    K.adam_update(theta, grad, m, v, lr, b1, b2, eps, t)
    assert_allclose(m, m1, **TOL[dtype])
    assert_allclose(v, v1, **TOL[dtype])
    assert_allclose(theta, th1, **TOL[dtype])
    # The steps themselves (~1e-3, small next to theta ~ 1): the only error beyond the
    # table is rounding theta' to dtype, up to one ulp of |theta| <= 2 (2.4e-7 in float32).
    ulp = float(np.spacing(dtype(2)))
    assert_allclose(theta.astype(np.float64) - th0, th1 - th0, rtol=TOL[dtype]["rtol"], atol=ulp)
    assert np.all(np.abs(th1 - th0) > 100 * ulp)  # so the step check means something



def _compiles_for_avx512():
    # llvmlite's own reading of the host (or the features NUMBA_CPU_FEATURES names), not
    # the check the kernels use (_jit.ADAM_AVX512, which a test below holds to this)
    import llvmlite.binding

    features = numba.config.CPU_FEATURES
    return ("+avx512f" in features.split(",") if features
            else bool(llvmlite.binding.get_host_cpu_features().get("avx512f")))


def _adam_step(avx512, monkeypatch):
    # The engine's Adam step (optim._adam) in AVX-512 vectors or as the exact loop that
    # CPUs without AVX-512 compile, whatever this CPU is; compiled afresh with the
    # kernels' own options (fastmath included: the loop's hazards come from it), so that
    # the patched compile-time constant is the one it reads. Called as
    # step(theta, grad, m, v, lr, beta_1, beta_2, epsilon, t, n_weights, alpha, denom).
    from fastnn.kernels import _jit, optim

    if avx512 and not _compiles_for_avx512():
        pytest.skip("this CPU has no AVX-512: its intrinsics cannot compile here, and the "
                    "kernels take the exact loop (that case runs)")
    monkeypatch.setattr(optim, "ADAM_AVX512", avx512)
    return numba.njit(**_jit._OPTS)(getattr(optim._adam, "py_func", optim._adam))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_params", [37, 64])
@pytest.mark.parametrize("epsilon", ["default", "tiny"])
@pytest.mark.parametrize("edge", ["small", "overflow"])
@pytest.mark.parametrize("path", ["kernel", "kernel-weights", "exact-loop"])
def test_adam_update_edge_values_match_numpy(rng, dtype, n_params, epsilon, edge, path,
                                             monkeypatch):
    # Second moments the AVX-512 estimates (kernels/_jit.py) cannot take as they are, in
    # whole vectors and the masked last one alike (8 or 16 lanes; 37 leaves a partial
    # vector). "small": v' = 0 and subnormal v', which stay on the estimates with the
    # default epsilon (sqrt(v') is far below an ulp of it: step m / eps) and take the
    # exact square root with an epsilon below that floor. "overflow": v' = inf (step 0,
    # theta unchanged, as in exact arithmetic) and NaN, whose vectors always take the
    # exact path; the other lanes there must not turn NaN. Each kind has vectors of its
    # own, so that the vector's path is the kind's. "kernel": the step this CPU compiles
    # (adam_update: all parameters biases); "kernel-weights": the same step with all of
    # them weights, which AVX-512 takes in groups of vectors on the estimates and on the
    # divider (float64: the kinds land in both); "exact-loop": the loop of CPUs without
    # AVX-512, on any CPU.
    eps = {"default": 1e-8, "tiny": {np.float64: 1e-300, np.float32: 1e-30}[dtype]}[epsilon]
    theta, m = _normal(rng, n_params, dtype), _normal(rng, n_params, dtype, 0.01)
    grad = _normal(rng, n_params, dtype)
    v = rng.uniform(0.0, 1.0, n_params).astype(dtype)
    if edge == "small":
        tiny = np.finfo(dtype).smallest_subnormal * 8
        for at in (1, 17, n_params - 3):
            grad[at], v[at] = 0, 0                                 # v' = 0
            grad[at + 1], m[at + 1], v[at + 1] = 0, 0.01, tiny     # v' subnormal
    else:
        big = np.sqrt(np.finfo(dtype).max) * 4  # its square overflows
        for at in (1, n_params - 2):
            grad[at], v[at] = big, 1                               # v' = inf
        grad[2] = np.nan                                           # v' = NaN
    want = [a.copy() for a in (theta, m, v)]
    with np.errstate(over="ignore", invalid="ignore"):  # the point here (JIT off: warns)
        npb.adam_update(want[0], grad, want[1], want[2], 1e-3, 0.9, 0.999, eps, 2)
        if path == "kernel":
            K.adam_update(theta, grad, m, v, 1e-3, 0.9, 0.999, eps, 2)
        elif path == "kernel-weights":
            _adam_step(_compiles_for_avx512(), monkeypatch)(
                theta, grad, m, v, 1e-3, 0.9, 0.999, eps, 2, n_params, 0.0, 1.0)
        else:
            _adam_step(False, monkeypatch)(theta, grad, m, v, 1e-3, 0.9, 0.999, eps, 2, 0,
                                           0.0, 1.0)
    if edge == "overflow":
        assert np.isinf(v[[1, n_params - 2]]).all()
        assert_array_equal(theta[[1, n_params - 2]], want[0][[1, n_params - 2]])  # step 0
        assert np.isnan(theta[2]) and np.isnan(theta).sum() == 1
    for got, ref in zip((theta, m, v), want):
        assert_allclose(got, ref, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("avx512", [True, False], ids=["avx512", "exact-loop"])
def test_adam_step_with_weight_decay_matches_numpy(rng, dtype, avx512, monkeypatch):
    # Both ways of the engine's Adam step: AVX-512 vectors (kernels/_jit.py; float64's
    # 29 weights: a pair of vectors, one on the estimates and one on the divider, then one
    # on the estimates) and the exact loop that CPUs without AVX-512 compile (with the JIT
    # off: the NumPy twin and the loop the coverage job counts). The first n_weights
    # parameters take the L2 term.
    step = _adam_step(avx512, monkeypatch)
    n, n_weights, alpha, denom = 45, 29, 1e-3, 24.0
    theta, grad, m = (_normal(rng, n, dtype) for _ in range(3))
    v = rng.uniform(0.0, 1.0, n).astype(dtype)
    g = grad.astype(np.float64)
    g[:n_weights] += alpha * theta[:n_weights]
    want = [a.copy() for a in (theta, m, v)]
    npb.adam_update(want[0], (g / denom).astype(dtype), want[1], want[2], 1e-3, 0.9, 0.999,
                    1e-8, 4)
    step(theta, grad, m, v, 1e-3, 0.9, 0.999, 1e-8, 4, n_weights, alpha, denom)
    for got, ref in zip((theta, m, v), want):
        assert_allclose(got, ref, **TOL[dtype])
    if not numba.config.DISABLE_JIT:  # and it is the code asked for
        asm = step.inspect_asm(step.signatures[0])
        # float64 on AVX-512: the estimates and the divider; float32: the divider only
        suffix = "pd" if dtype == np.float64 else "ps"
        assert ("vrsqrt14" in asm) == (avx512 and dtype == np.float64)
        if avx512:
            assert re.search(rf"vsqrt{suffix}\s+%zmm", asm)

def test_moment_floors_follow_the_types():
    from fastnn.kernels import _codes

    for name in ("float64", "float32"):
        info = np.finfo(name)
        assert _codes.SMALLEST_NORMAL[name] == float(info.smallest_normal)
        assert _codes.ADAM_EPS_FLOOR[name] == (float(np.sqrt(4.0 * float(info.smallest_normal)))
                                               * 2.0 ** (info.nmant + 2))


# --- the engine: run_epochs, loss_grad, predict_forward -------------------------------
HIDDEN = {"relu": K.RELU, "logistic": K.LOGISTIC, "tanh": K.TANH, "identity": K.IDENTITY}
OUTPUT = {"softmax": (K.SOFTMAX, 3), "logistic": (K.LOGISTIC, 2), "identity": (K.IDENTITY, 2),
          "exp": (K.EXP, 2)}
OPTS = {"sgd": K.OPT_SGD, "nesterov": K.OPT_NESTEROV, "adam": K.OPT_ADAM}


def _net(rng, sizes, acts, dtype):
    net = Network(sizes, acts, dtype, "numba")
    net.init_glorot(rng, [6.0] * len(acts))
    return net


def _data(rng, n, net):
    dtype, n_out, code = net.dtype, int(net.sizes[-1]), int(net.acts[-1])
    x = _normal(rng, (n, int(net.sizes[0])), dtype)
    if code == K.SOFTMAX:
        y = _one_hot(rng, n, n_out, dtype)
    elif code == K.LOGISTIC:
        y = (rng.random((n, n_out)) < 0.5).astype(dtype)
    elif code == K.EXP:
        y = rng.poisson(1.5, (n, n_out)).astype(dtype)
    else:
        y = _normal(rng, (n, n_out), dtype)
    return x, y, _weights(rng, n, dtype)


def _train(engine, net, x, y, sw, orders, batch_size, hyper, opt):
    """Run one epoch per row of ``orders``, in one engine call, on a copy of ``net.theta``."""
    theta = net.theta.copy()
    grad = np.empty_like(theta)
    m, v = np.zeros_like(theta), np.zeros_like(theta)
    work = np.empty(int(engine.workspace_size(net.sizes, batch_size)), net.dtype)
    totals = np.empty(len(orders))
    done = engine.run_epochs(x, y, sw, np.array(orders, np.int64), batch_size, theta, grad, m,
                             v, net.sizes, net.offsets, net.acts, hyper, 0, opt, work, totals)
    assert done == len(orders)
    return totals, theta, m, v


def _assert_engines_agree(net, x, y, sw, orders, batch_size, hyper, opt, tol):
    got = _train(K, net, x, y, sw, orders, batch_size, hyper, opt)
    want = _train(npb, net, x, y, sw, orders, batch_size, hyper, opt)
    assert np.isfinite(got[0]).all() and np.isfinite(got[1]).all()  # no silent divergence
    for name, a, b in zip(["loss", "theta", "m", "v"], got, want):
        assert_allclose(a, b, err_msg=name, **tol)
    assert not np.array_equal(got[1], net.theta)  # training moved the weights


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hidden", sorted(HIDDEN))
@pytest.mark.parametrize("output", sorted(OUTPUT))
@pytest.mark.parametrize("opt", sorted(OPTS))
def test_run_epochs_matches_numpy(rng, dtype, hidden, output, opt):
    # two hidden layers (so deltas ping-pong), n = 37 with batch 8 (a short last batch),
    # non-uniform sample weights, L2 alpha > 0, momentum, two epochs (t carries over)
    code, n_out = OUTPUT[output]
    net = _net(rng, [5, 7, 6, n_out], [HIDDEN[hidden], HIDDEN[hidden], code], dtype)
    x, y, sw = _data(rng, 37, net)
    hyper = make_hyper(dtype, lr=0.01, momentum=0.9, alpha=0.05, gscale=1.0 / n_out)
    orders = [rng.permutation(37), rng.permutation(37)]
    _assert_engines_agree(net, x, y, sw, orders, 8, hyper, OPTS[opt], TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch_size", [1, 8, 37, 50])
@pytest.mark.parametrize("opt", sorted(OPTS))
def test_run_epochs_batch_sizes(rng, dtype, batch_size, opt):
    # Mixed hidden activations; batch sizes that divide 37 and do not, down to one row.
    net = _net(rng, [64, 32, 16, 10], [K.RELU, K.TANH, K.SOFTMAX], dtype)
    x, y, sw = _data(rng, 37, net)
    hyper = make_hyper(dtype, lr=0.01, momentum=0.5, alpha=1e-3)
    orders = [rng.permutation(37), np.arange(37)]
    _assert_engines_agree(net, x, y, sw, orders, batch_size, hyper, OPTS[opt], TOL[dtype])


def test_run_epochs_returns_batch_mean_losses_times_lengths(rng):
    # total = sum over batches of (mean batch loss * batch length), with lr = 0 so theta
    # stays put and each batch's loss can be recomputed by loss_grad.
    net = _net(rng, [5, 7, 3], [K.TANH, K.SOFTMAX], np.float64)
    x, y, sw = _data(rng, 37, net)
    order = rng.permutation(37)
    hyper = make_hyper(np.float64, lr=0.0)
    total, theta, _, _ = _train(K, net, x, y, sw, [order], 8, hyper, K.OPT_SGD)
    assert_array_equal(theta, net.theta)
    want = 0.0
    for start in range(0, 37, 8):
        idx = order[start : start + 8]
        loss, _ = net.loss_grad(x[idx], y[idx], sw[idx], hyper)
        want += loss * len(idx)
    assert_allclose(total[0], want, **TOL[np.float64])


@pytest.mark.parametrize("rows, capacity", [(8, 16), (16, 16), (17, 32), (32, 32)])
def test_workspace_size_by_hand(rows, capacity):
    # hidden activations 7 + 6, output z 3, two delta buffers of the widest layer (7),
    # and the gathered batch: x (5), y (3) and sample weights (1), per row of capacity
    # (rows rounded up to a multiple of 16, so every block starts on a 64-byte line); the
    # scratch for a transposed weight matrix; then theta, m and v at the start of an
    # epoch (111 parameters each)
    sizes = np.array([5, 7, 6, 3], np.int64)
    n_params = 6 * 7 + 8 * 6 + 7 * 3
    assert K.workspace_size(sizes, rows) == (
        capacity * (7 + 6 + 3 + 2 * 7 + 5 + 3 + 1) + TRANSPOSE_MAX + 3 * n_params)


@pytest.mark.parametrize("engine", [K, npb], ids=["numba", "numpy"])
@pytest.mark.parametrize("opt", sorted(OPTS))
def test_run_epochs_in_one_call_equals_one_call_per_epoch(rng, engine, opt):
    # fit groups epochs into calls by timing; the numbers must not depend on the grouping
    net = _net(rng, [5, 7, 6, 3], [K.RELU, K.TANH, K.SOFTMAX], np.float64)
    x, y, sw = _data(rng, 37, net)
    hyper = make_hyper(np.float64, lr=0.01, momentum=0.9, alpha=0.01)
    orders = [rng.permutation(37) for _ in range(3)]
    together = _train(engine, net, x, y, sw, orders, 8, hyper, OPTS[opt])
    theta = net.theta.copy()
    grad, m, v = np.empty_like(theta), np.zeros_like(theta), np.zeros_like(theta)
    work = np.empty(int(engine.workspace_size(net.sizes, 8)))
    totals, t = np.empty(3), 0
    for e, order in enumerate(orders):
        assert engine.run_epochs(x, y, sw, order[None], 8, theta, grad, m, v, net.sizes,
                                 net.offsets, net.acts, hyper, t, OPTS[opt], work,
                                 totals[e : e + 1]) == 1
        t += 5
    for name, a, b in zip(["totals", "theta", "m", "v"], together, (totals, theta, m, v)):
        assert_array_equal(a, b, err_msg=name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opt", sorted(OPTS))
@pytest.mark.parametrize("epsilon", ["default", "tiny"])
def test_run_epochs_sets_subnormal_optimizer_state_to_zero(rng, dtype, opt, epsilon):
    # A dead hidden unit (its pre-activation always far below 0): the weights into and
    # out of it get gradients of exactly 0, and their moments, set to subnormals, stay
    # at fixed points of the decay in IEEE arithmetic (0.9 * 4 ulps rounds to 4 ulps), as
    # the NumPy engine shows. The kernels set them to 0 after each epoch (Adam's only
    # with a regular epsilon; with a tinier one, sqrt(v) still counts next to it), and
    # the weights come out as the NumPy engine's: those of the dead unit exactly.
    stuck = np.finfo(dtype).smallest_subnormal * 4
    assert dtype(0.9) * stuck == stuck and dtype(0.999) * stuck == stuck
    net = _net(rng, [4, 6, 3], [K.RELU, K.SOFTMAX], dtype)
    x, y, sw = _data(rng, 40, net)
    net.intercepts()[0][2] = -1e3
    n_layers = 2
    dead = np.concatenate([net.offsets[0] + np.arange(4) * 6 + 2,   # into unit 2
                           net.offsets[1] + 2 * 3 + np.arange(3),   # out of it
                           [net.offsets[n_layers] + 2]])            # its bias
    eps = {"default": 1e-8, "tiny": {np.float64: 1e-300, np.float32: 1e-30}[dtype]}[epsilon]
    hyper = make_hyper(dtype, lr=0.01, momentum=0.9, epsilon=eps)
    orders = [rng.permutation(40) for _ in range(2)]
    results = {}
    for name, engine in (("numba", K), ("numpy", npb)):
        theta = net.theta.copy()
        grad = np.empty_like(theta)
        m, v = np.zeros_like(theta), np.zeros_like(theta)
        m[dead], v[dead] = stuck * np.where(np.arange(dead.size) % 2, -1, 1), stuck
        work = np.empty(int(engine.workspace_size(net.sizes, 8)), dtype)
        assert engine.run_epochs(x, y, sw, np.array(orders, np.int64), 8, theta, grad, m, v,
                                 net.sizes, net.offsets, net.acts, hyper, 0, OPTS[opt], work,
                                 np.empty(2)) == 2
        results[name] = theta, m, v
    (theta, m, v), (want_theta, want_m, want_v) = results["numba"], results["numpy"]
    assert (np.abs(want_m[dead]) == stuck).all()  # IEEE arithmetic: stuck
    flushed = OPTS[opt] != K.OPT_ADAM or epsilon == "default"
    if flushed:
        assert (m[dead] == 0).all() and (v[dead] == 0).all()
    else:
        assert_array_equal(m[dead], want_m[dead])
        assert_array_equal(v[dead], want_v[dead])
    assert_array_equal(theta[dead], want_theta[dead])
    assert_allclose(theta, want_theta, **TOL[dtype])
    live = np.setdiff1d(np.arange(theta.size), dead)
    assert_allclose(m[live], want_m[live], **TOL[dtype])


@pytest.mark.parametrize("engine", [K, npb], ids=["numba", "numpy"])
@pytest.mark.parametrize("opt", sorted(OPTS))
def test_run_epochs_undoes_the_epoch_that_diverges(rng, engine, opt):
    # Rows 20-39 hold inf (the API would refuse them): epoch 0 trains on the finite rows,
    # epoch 1 turns the weights NaN (its loss may stay finite: the log is clipped).
    # Epoch 1 must be undone and epoch 2 skipped.
    net = _net(rng, [5, 7, 3], [K.RELU, K.SOFTMAX], np.float64)
    x, y, sw = _data(rng, 40, net)
    x[20:] = np.inf
    hyper = make_hyper(np.float64, lr=0.1, momentum=0.9)
    orders = np.array([np.arange(20), np.arange(20, 40), np.arange(20)], np.int64)
    theta = net.theta.copy()
    grad, m, v = np.empty_like(theta), np.zeros_like(theta), np.zeros_like(theta)
    work = np.empty(int(engine.workspace_size(net.sizes, 10)))
    totals = np.full(3, -1.0)
    with np.errstate(all="ignore"):
        done = engine.run_epochs(x, y, sw, orders, 10, theta, grad, m, v, net.sizes,
                                 net.offsets, net.acts, hyper, 0, OPTS[opt], work, totals)
    assert done == 1
    assert np.isfinite(totals[0]) and totals[1] != -1.0 and totals[2] == -1.0
    want = _train(engine, net, x, y, sw, orders[:1], 10, hyper, OPTS[opt])
    for name, a, b in zip(["theta", "m", "v"], (theta, m, v), want[1:]):
        assert_array_equal(a, b, err_msg=name)


@pytest.mark.parametrize("batch_size", [1, 8, 37])
def test_engine_kernels_stay_inside_work(rng, batch_size):
    # work is a view of a longer NaN-filled buffer: numba does not bounds-check, so a
    # kernel writing past its workspace would land in the tail.
    net = _net(rng, [5, 7, 6, 3], [K.RELU, K.TANH, K.SOFTMAX], np.float64)
    x, y, sw = _data(rng, 37, net)
    hyper = make_hyper(np.float64, lr=0.01, alpha=0.1)
    theta, grad = net.theta.copy(), np.empty_like(net.theta)
    m, v = np.zeros_like(theta), np.zeros_like(theta)
    size = int(K.workspace_size(net.sizes, batch_size))
    buf = np.full(size + 64, np.nan)
    K.run_epochs(x, y, sw, np.array([rng.permutation(37)] * 2), batch_size, theta, grad, m, v,
                 net.sizes, net.offsets, net.acts, hyper, 0, K.OPT_ADAM, buf[:size],
                 np.empty(2))
    assert np.isnan(buf[size:]).all()

    size = int(K.workspace_size(net.sizes, 37))
    buf = np.full(size + 64, np.nan)
    K.loss_grad(x, y, sw, theta, net.sizes, net.offsets, net.acts, hyper, buf[:size], grad)
    assert np.isnan(buf[size:]).all()
    # the CSR twins, in their smaller workspaces
    csr = _sparse_rows(rng, x)[1]
    size = int(K.workspace_size(net.sizes, batch_size, sparse=True))
    buf = np.full(size + 64, np.nan)
    K.run_epochs_csr(*csr, y, sw, np.array([rng.permutation(37)] * 2), batch_size, theta, grad,
                     m, v, net.sizes, net.offsets, net.acts, hyper, 0, K.OPT_ADAM, buf[:size],
                     np.empty(2))
    assert np.isnan(buf[size:]).all()
    size = int(K.workspace_size(net.sizes, 37, sparse=True))
    buf = np.full(size + 64, np.nan)
    K.loss_grad_csr(*csr, y, sw, theta, net.sizes, net.offsets, net.acts, hyper, buf[:size],
                    grad)
    assert np.isnan(buf[size:]).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, k", ROWS)
@pytest.mark.parametrize("bad", [None, np.nan, np.inf, -np.inf])
def test_all_finite_matches_numpy(rng, dtype, n, k, bad):
    x = _normal(rng, (n, k), dtype, 1e3)
    x[0, 0] = np.finfo(dtype).max  # the largest finite value is finite
    if bad is not None:
        x[-1, -1] = bad
    got = K.all_finite(x)
    assert got is bool(np.isfinite(x).all()) is (bad is None)


ARCHS = {
    "none": [],  # output layer only: no hidden activations, no work rows
    "relu": [K.RELU],
    "logistic-tanh": [K.LOGISTIC, K.TANH],
    "identity-relu": [K.IDENTITY, K.RELU],
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("output", sorted(OUTPUT))
def test_loss_grad_matches_numpy(rng, dtype, arch, output):
    code, n_out = OUTPUT[output]
    hidden = ARCHS[arch]
    net = _net(rng, [5] + [7, 6][: len(hidden)] + [n_out], hidden + [code], dtype)
    x, y, sw = _data(rng, 37, net)
    hyper = make_hyper(dtype, alpha=0.1, gscale=1.0 / n_out)
    results = {}
    for engine in (K, npb):
        grad = np.full_like(net.theta, np.nan)
        work = np.empty(int(engine.workspace_size(net.sizes, 37)), dtype)
        loss = engine.loss_grad(x, y, sw, net.theta, net.sizes, net.offsets, net.acts, hyper,
                                work, grad)
        results[engine] = loss, grad
    assert_allclose(results[K][0], results[npb][0], **TOL[dtype])
    assert_allclose(results[K][1], results[npb][1], **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hidden", [K.RELU, K.TANH], ids=["relu", "tanh"])
@pytest.mark.parametrize("rows, sizes", [(37, [64, 160, 40, 3]), (70, [64, 64, 64, 3])])
def test_loss_grad_and_predict_match_numpy_past_the_tiles(rng, dtype, hidden, rows, sizes):
    # The first layer's products go to BLAS (past TILE_MAX multiply-adds), and the bias,
    # ReLU and ReLU' follow as passes there, where the tiles apply them as they store
    # each sum. delta @ w.T of the second layer: past TRANSPOSE_MAX weights (160x40,
    # BLAS on w itself) or on the transposed copy (64x64) through BLAS.
    assert rows * sizes[0] * sizes[1] > TILE_MAX
    assert (sizes[1] * sizes[2] > TRANSPOSE_MAX) != (rows * sizes[1] * sizes[2] > TILE_MAX)
    net = _net(rng, sizes, [hidden, hidden, K.SOFTMAX], dtype)
    x, y, sw = _data(rng, rows, net)
    hyper = make_hyper(dtype, alpha=0.1)
    results = {}
    for engine in (K, npb):
        grad = np.full_like(net.theta, np.nan)
        work = np.empty(int(engine.workspace_size(net.sizes, rows)), dtype)
        loss = engine.loss_grad(x, y, sw, net.theta, net.sizes, net.offsets, net.acts, hyper,
                                work, grad)
        out = np.full((rows, 3), np.nan, dtype)
        assert engine.predict_forward(x, net.theta, net.sizes, net.offsets, net.acts, out)
        results[engine] = loss, grad, out
    for got, want in zip(results[K], results[npb]):
        assert_allclose(got, want, **TOL[dtype])


@pytest.mark.parametrize("engine", [K, npb], ids=["numba", "numpy"])
def test_sample_weight_two_equals_repeating_the_sample(rng, engine):
    net = _net(rng, [5, 7, 3], [K.RELU, K.SOFTMAX], np.float64)
    net.engine = engine
    x, y, _ = _data(rng, 10, net)
    sw = np.ones(10)
    sw[3] = 2.0
    rep = np.r_[np.arange(10), 3]
    hyper = make_hyper(np.float64, alpha=0.1)
    loss_w, grad_w = net.loss_grad(x, y, sw, hyper)
    loss_r, grad_r = net.loss_grad(x[rep], y[rep], np.ones(11), hyper)
    assert_allclose(loss_w, loss_r, **TOL[np.float64])
    assert_allclose(grad_w, grad_r, **TOL[np.float64])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("output", sorted(OUTPUT))
@pytest.mark.parametrize("rows", [1, 37])
def test_predict_forward_matches_numpy(rng, dtype, arch, output, rows):
    code, n_out = OUTPUT[output]
    hidden = ARCHS[arch]
    net = _net(rng, [5] + [7, 6][: len(hidden)] + [n_out], hidden + [code], dtype)
    x, _, _ = _data(rng, rows, net)
    out = np.full((rows, n_out), np.nan, dtype)
    assert K.predict_forward(x, net.theta, net.sizes, net.offsets, net.acts, out) is True
    want = np.full_like(out, np.nan)
    assert npb.predict_forward(x, net.theta, net.sizes, net.offsets, net.acts, want) is True
    assert_allclose(out, want, **TOL[dtype])


@pytest.mark.parametrize("rows", [PREDICT_BLOCK, PREDICT_BLOCK + 1, 2 * PREDICT_BLOCK + 37])
def test_predict_forward_runs_long_inputs_in_blocks(rng, rows):
    # the blocks' seams: each row's output is that row's predicted alone (to rounding:
    # BLAS, which runs these products with the JIT off, sums 1 row and 1024 differently)
    net = _net(rng, [5, 7, 6, 3], [K.RELU, K.TANH, K.SOFTMAX], np.float64)
    x, _, _ = _data(rng, rows, net)
    out = np.full((rows, 3), np.nan)
    assert K.predict_forward(x, net.theta, net.sizes, net.offsets, net.acts, out) is True
    want = np.full_like(out, np.nan)
    assert npb.predict_forward(x, net.theta, net.sizes, net.offsets, net.acts, want) is True
    assert_allclose(out, want, **TOL[np.float64])
    for r in (0, PREDICT_BLOCK - 1, rows - 1):
        one = np.empty((1, 3))
        K.predict_forward(x[r : r + 1], net.theta, net.sizes, net.offsets, net.acts, one)
        assert_allclose(one[0], out[r], rtol=1e-14, atol=0)


@pytest.mark.parametrize("engine", [K, npb], ids=["numba", "numpy"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("row", [0, 36])
def test_predict_forward_refuses_non_finite_rows(rng, engine, bad, row):
    # False before any work: out keeps what it held, whichever row is bad
    net = _net(rng, [5, 7, 3], [K.RELU, K.SOFTMAX], np.float64)
    x, _, _ = _data(rng, 37, net)
    x[row, 2] = bad
    out = np.full((37, 3), 7.0)
    done = engine.predict_forward(x, net.theta, net.sizes, net.offsets, net.acts, out)
    assert done is False
    assert_array_equal(out, 7.0)


# --- sparse input: the CSR twins -------------------------------------------------------
def _sparse_rows(rng, x):
    # x with ~70% of its entries and one whole row (an empty CSR row) set to 0, as CSR
    x = np.where(rng.random(x.shape) < 0.7, 0, x).astype(x.dtype)
    x[3] = 0
    return x, csr_arrays(sp.csr_matrix(x))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("output", sorted(OUTPUT))
def test_loss_grad_csr_matches_dense_and_numpy(rng, dtype, arch, output):
    # the stored values only: the same loss and gradient as the dense rows they stand for
    code, n_out = OUTPUT[output]
    hidden = ARCHS[arch]
    net = _net(rng, [9] + [7, 6][: len(hidden)] + [n_out], hidden + [code], dtype)
    x, y, sw = _data(rng, 37, net)
    x, csr = _sparse_rows(rng, x)
    hyper = make_hyper(dtype, alpha=0.1, gscale=1.0 / n_out)
    results = []
    for engine, rows, sparse in ((K, x, False), (K, csr, True), (npb, csr, True)):
        grad = np.full_like(net.theta, np.nan)
        work = np.full(int(engine.workspace_size(net.sizes, 37, sparse=sparse)), np.nan, dtype)
        if sparse:
            loss = engine.loss_grad_csr(*rows, y, sw, net.theta, net.sizes, net.offsets,
                                        net.acts, hyper, work, grad)
        else:
            loss = engine.loss_grad(rows, y, sw, net.theta, net.sizes, net.offsets, net.acts,
                                    hyper, work, grad)
        results.append((loss, grad))
    for loss, grad in results[1:]:
        assert_allclose(loss, results[0][0], **TOL[dtype])
        assert_allclose(grad, results[0][1], **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("arch", ["none", "relu", "logistic-tanh"])
@pytest.mark.parametrize("opt", sorted(OPTS))
@pytest.mark.parametrize("batch_size", [1, 8])
def test_run_epochs_csr_matches_dense_and_numpy(rng, dtype, arch, opt, batch_size):
    hidden = ARCHS[arch]
    net = _net(rng, [9] + [7, 6][: len(hidden)] + [3], hidden + [K.SOFTMAX], dtype)
    x, y, sw = _data(rng, 37, net)
    x, csr = _sparse_rows(rng, x)
    hyper = make_hyper(dtype, lr=0.01, momentum=0.9, alpha=0.05)
    orders = np.array([rng.permutation(37), rng.permutation(37)], np.int64)
    results = []
    for engine, rows, sparse in ((K, x, False), (K, csr, True), (npb, csr, True)):
        theta = net.theta.copy()
        grad = np.empty_like(theta)
        m, v = np.zeros_like(theta), np.zeros_like(theta)
        work = np.full(int(engine.workspace_size(net.sizes, batch_size, sparse=sparse)),
                       np.nan, dtype)
        totals = np.empty(2)
        args = (y, sw, orders, batch_size, theta, grad, m, v, net.sizes, net.offsets,
                net.acts, hyper, 0, OPTS[opt], work, totals)
        if sparse:
            done = engine.run_epochs_csr(*rows, *args)
        else:
            done = engine.run_epochs(rows, *args)
        assert done == 2
        results.append((totals, theta, m, v))
    assert not np.array_equal(results[0][1], net.theta)
    for got in results[1:]:
        for name, a, b in zip(["loss", "theta", "m", "v"], got, results[0]):
            assert_allclose(a, b, err_msg=name, **TOL[dtype])


@pytest.mark.parametrize("engine", [K, npb], ids=["numba", "numpy"])
def test_run_epochs_csr_undoes_the_epoch_that_diverges(rng, engine):
    # as the dense test above: stored values of rows 20-39 are inf; epoch 1 is undone
    net = _net(rng, [9, 7, 3], [K.RELU, K.SOFTMAX], np.float64)
    x, y, sw = _data(rng, 40, net)
    x, _ = _sparse_rows(rng, x)
    x[20:] = np.where(x[20:] != 0, np.inf, 0)
    csr = csr_arrays(sp.csr_matrix(x))
    hyper = make_hyper(np.float64, lr=0.1, momentum=0.9)
    orders = np.array([np.arange(20), np.arange(20, 40), np.arange(20)], np.int64)
    states = []
    for epochs in (orders, orders[:1]):
        theta = net.theta.copy()
        m, v = np.zeros_like(theta), np.zeros_like(theta)
        work = np.empty(int(engine.workspace_size(net.sizes, 10, sparse=True)))
        totals = np.full(3, -1.0)
        with np.errstate(all="ignore"):
            done = engine.run_epochs_csr(*csr, y, sw, epochs, 10, theta, np.empty_like(theta),
                                         m, v, net.sizes, net.offsets, net.acts, hyper, 0,
                                         K.OPT_SGD, work, totals)
        states.append((done, theta, m))
    assert states[0][0] == 1 and states[1][0] == 1
    assert_array_equal(states[0][1], states[1][1])
    assert_array_equal(states[0][2], states[1][2])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("output", sorted(OUTPUT))
@pytest.mark.parametrize("rows", [1, 37, PREDICT_BLOCK + 5])
def test_predict_forward_csr_matches_dense(rng, dtype, arch, output, rows):
    code, n_out = OUTPUT[output]
    hidden = ARCHS[arch]
    net = _net(rng, [9] + [7, 6][: len(hidden)] + [n_out], hidden + [code], dtype)
    x, _, _ = _data(rng, max(rows, 4), net)
    x, csr = _sparse_rows(rng, x)
    x = x[:rows]
    csr = csr_arrays(sp.csr_matrix(x))
    outs = []
    for engine, kind in ((K, "dense"), (K, "csr"), (npb, "csr")):
        out = np.full((rows, n_out), np.nan, dtype)
        if kind == "csr":
            done = engine.predict_forward_csr(*csr, net.theta, net.sizes, net.offsets,
                                              net.acts, out)
        else:
            done = engine.predict_forward(x, net.theta, net.sizes, net.offsets, net.acts, out)
        assert done is True
        outs.append(out)
    for out in outs[1:]:
        assert_allclose(out, outs[0], **TOL[dtype])


@pytest.mark.parametrize("engine", [K, npb], ids=["numba", "numpy"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_predict_forward_csr_refuses_non_finite_values(rng, engine, bad):
    net = _net(rng, [9, 7, 3], [K.RELU, K.SOFTMAX], np.float64)
    x, _, _ = _data(rng, 37, net)
    data, indices, indptr = _sparse_rows(rng, x)[1]
    data[-1] = bad
    out = np.full((37, 3), 7.0)
    assert engine.predict_forward_csr(data, indices, indptr, net.theta, net.sizes,
                                      net.offsets, net.acts, out) is False
    assert_array_equal(out, 7.0)


def test_workspace_size_sparse_gathers_no_input_rows():
    sizes = np.array([5000, 7, 6, 3], np.int64)
    assert (K.workspace_size(sizes, 16) - K.workspace_size(sizes, 16, sparse=True)
            == 16 * 5000)


# --- hand-checked cases ----------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_huge_logits_stay_finite(dtype):
    z = np.array([[1e4, -1e4], [-1e4, 1e4], [1e4, 1e4]], dtype)
    y = np.array([[0, 1], [0, 1], [1, 0]], dtype)  # row 0: confident and wrong
    sw = np.ones(3, dtype)
    eps = _eps(dtype)
    for engine_name in ("kernel", "numpy"):
        if engine_name == "kernel":
            p, logp, delta = np.empty_like(z), np.empty_like(z), np.empty_like(z)
            K.softmax_forward(z, p)
            K.log_softmax_forward(z, logp)
            loss = K.softmax_xent_grad(z, y, sw, eps, delta)
        else:
            p, logp = npb.softmax_forward(z), npb.log_softmax_forward(z)
            loss, delta = npb.softmax_xent_grad(z, y, sw, eps)
        assert_allclose(p, [[1, 0], [0, 1], [0.5, 0.5]], err_msg=engine_name)
        assert_allclose(logp, [[0, -2e4], [-2e4, 0], [-np.log(2), -np.log(2)]], rtol=1e-6,
                        err_msg=engine_name)
        assert_allclose(delta, [[1, -1], [0, 0], [-0.5, 0.5]], err_msg=engine_name)
        # row 0 pays -log(eps) (p clipped to eps), row 2 pays log 2, row 1 nothing
        assert np.isfinite(loss) and loss > 15
        assert_allclose(loss, -np.log(eps) + np.log(2), rtol=1e-6, err_msg=engine_name)


@pytest.mark.parametrize("dtype", DTYPES)
def test_huge_logits_sigmoid_bce_stay_finite(dtype):
    z = np.array([[1e4], [-1e4], [1e4]], dtype)
    y = np.array([[0], [1], [1]], dtype)  # rows 0 and 1 confident and wrong, row 2 right
    sw = np.ones(3, dtype)
    eps = _eps(dtype)
    delta = np.empty_like(z)
    # errstate matters only under NUMBA_DISABLE_JIT=1 (the coverage job): the kernel body
    # then runs on NumPy scalars, whose exp(1e4) = inf warns; compiled code never warns.
    with np.errstate(over="ignore"):
        loss = K.sigmoid_bce_grad(z, y, sw, eps, delta)
    want_loss, want_delta = npb.sigmoid_bce_grad(z, y, sw, eps)  # must not warn
    for got_loss, got_delta in ((loss, delta), (want_loss, want_delta)):
        assert_allclose(got_delta, [[1], [-1], [0]])
        # 1 - eps is exact in binary, so log(1 - (1 - eps)) = log(eps) exactly
        assert_allclose(got_loss, -2 * np.log(eps) - np.log1p(-eps), rtol=1e-6)


# A 2-2-2 net: ReLU hidden, softmax output, SGD lr = 0.5, momentum 0, one sample.
# (Hand arithmetic; decimals checked to 17 digits with Python's decimal module.)
#   x = [1, 2], y = [1, 0] (class 0)
#   W1 = [[0.5, -0.5], [0.25, 0.5]]  (rows: inputs), b1 = [0.1, -0.6]
#   W2 = [[1.0, -1.0], [0.5, -0.25]],                b2 = [0.0, 0.2]
# Forward:
#   z1 = x W1 + b1 = [0.5 + 0.5 + 0.1, -0.5 + 1.0 - 0.6] = [1.1, -0.1]
#   a1 = relu(z1) = [1.1, 0]
#   z2 = a1 W2 + b2 = [1.1 + 0 + 0, -1.1 + 0 + 0.2] = [1.1, -0.9]
#   p = softmax(z2): z2[0] - z2[1] = 2, so p = [1 / (1 + e^-2), e^-2 / (1 + e^-2)]
#     = [0.88079707797788244, 0.11920292202211756];  call s = p[1]
#   loss = -log p[0] = log(1 + e^-2) = 0.12692801104297250
# Backward (sw = 1, so denom = 1):
#   delta2 = p - y = [-s, s] = [-0.11920292202211756, 0.11920292202211756]
#   dW2 = a1^T delta2 = [[-1.1 s, 1.1 s], [0, 0]]
#       = [[-0.13112321422432931, 0.13112321422432931], [0, 0]]
#   db2 = delta2
#   da1 = delta2 W2^T = [-s * 1 + s * -1, -s * 0.5 + s * -0.25] = [-2 s, -0.75 s]
#       = [-0.23840584404423511, -0.089402191516588167]
#   delta1 = da1 * (z1 > 0) = [-0.23840584404423511, 0]  (ReLU masks the second unit)
#   dW1 = x^T delta1 = [[-2 s, 0], [-4 s, 0]] = [[-0.23840584404423511, 0],
#                                               [-0.47681168808847022, 0]]
#   db1 = delta1 = [-0.23840584404423511, 0]
# Update theta -= 0.5 * grad:
#   W1 = [[0.5 + s, -0.5], [0.25 + 2 s, 0.5]]
#      = [[0.61920292202211756, -0.5], [0.48840584404423511, 0.5]]
#   b1 = [0.1 + s, -0.6] = [0.21920292202211756, -0.6]
#   W2 = [[1 + 0.55 s, -1 - 0.55 s], [0.5, -0.25]]
#      = [[1.0655616071121647, -1.0655616071121647], [0.5, -0.25]]
#   b2 = [0.5 s, 0.2 - 0.5 s] = [0.059601461011058778, 0.14039853898894122]
@pytest.mark.parametrize("engine", [K, npb], ids=["numba", "numpy"])
def test_worked_step_2_2_2(engine):
    net = Network([2, 2, 2], [K.RELU, K.SOFTMAX], np.float64, "numba")
    assert net.theta.size == layout([2, 2, 2])[1] == 12
    w1, w2 = net.coefs()
    b1, b2 = net.intercepts()
    w1[...] = [[0.5, -0.5], [0.25, 0.5]]
    b1[...] = [0.1, -0.6]
    w2[...] = [[1.0, -1.0], [0.5, -0.25]]
    b2[...] = [0.0, 0.2]
    x = np.array([[1.0, 2.0]])
    y = np.array([[1.0, 0.0]])
    sw = np.ones(1)
    hyper = make_hyper(np.float64, lr=0.5, momentum=0.0)
    exact = dict(rtol=0, atol=1e-12)

    # the forward pass alone
    p = np.empty((1, 2))
    engine.predict_forward(x, net.theta, net.sizes, net.offsets, net.acts, p)
    assert_allclose(p, [[0.88079707797788244, 0.11920292202211756]], **exact)

    # the gradients, before any update
    grad = np.empty_like(net.theta)
    work = np.empty(int(engine.workspace_size(net.sizes, 1)))
    loss = engine.loss_grad(x, y, sw, net.theta, net.sizes, net.offsets, net.acts, hyper, work,
                            grad)
    assert_allclose(loss, 0.12692801104297250, **exact)
    g = net.coefs(grad) + net.intercepts(grad)
    assert_allclose(g[0], [[-0.23840584404423511, 0], [-0.47681168808847022, 0]], **exact)
    assert_allclose(g[1], [[-0.13112321422432931, 0.13112321422432931], [0, 0]], **exact)
    assert_allclose(g[2], [-0.23840584404423511, 0], **exact)
    assert_allclose(g[3], [-0.11920292202211756, 0.11920292202211756], **exact)

    # one epoch of one sample = one SGD step
    m, v = np.zeros_like(net.theta), np.zeros_like(net.theta)
    totals = np.empty(1)
    assert engine.run_epochs(x, y, sw, np.zeros((1, 1), np.int64), 1, net.theta, grad, m, v,
                             net.sizes, net.offsets, net.acts, hyper, 0, K.OPT_SGD, work,
                             totals) == 1
    assert_allclose(totals[0], 0.12692801104297250, **exact)
    assert_allclose(w1, [[0.61920292202211756, -0.5], [0.48840584404423511, 0.5]], **exact)
    assert_allclose(b1, [0.21920292202211756, -0.6], **exact)
    assert_allclose(w2, [[1.0655616071121647, -1.0655616071121647], [0.5, -0.25]], **exact)
    assert_allclose(b2, [0.059601461011058778, 0.14039853898894122], **exact)
    assert_allclose(m, -0.5 * grad, **exact)  # the velocity holds the step taken


# --- composability ---------------------------------------------------------------------
@numba.njit
def _probs_and_xent(x, w, b, y1h, sw, eps):
    z = np.empty((x.shape[0], w.shape[1]), x.dtype)
    K.dense_forward(x, w, b, z)
    delta = np.empty_like(z)
    loss = K.softmax_xent_grad(z, y1h, sw, eps, delta)
    K.softmax_forward(z, z)
    return z, delta, loss


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("dtype", DTYPES)
def test_kernels_callable_from_njit(rng, dtype):
    x, w, b = _normal(rng, (9, 4), dtype), _normal(rng, (4, 3), dtype), _normal(rng, 3, dtype)
    y, sw = _one_hot(rng, 9, 3, dtype), _weights(rng, 9, dtype)
    p, delta, loss = _probs_and_xent(x, w, b, y, sw, _eps(dtype))
    want_loss, want_delta = npb.softmax_xent_grad(npb.dense_forward(x, w, b), y, sw, _eps(dtype))
    assert_allclose(p, npb.softmax_forward(npb.dense_forward(x, w, b)), **TOL[dtype])
    assert_allclose(delta, want_delta, **TOL[dtype])
    assert_allclose(loss, want_loss, **TOL[dtype])


# --- invariants (hypothesis) -------------------------------------------------------------
def _logits(data, dtype, lo=-20.0, hi=20.0):
    width = 32 if dtype == np.float32 else 64
    shape = data.draw(st.tuples(st.integers(1, 8), st.integers(2, 6)))
    return data.draw(arrays(dtype, shape, elements=st.floats(lo, hi, width=width)))


# float32: z + c rounds to float32, an absolute error up to |c| * 6e-8 = 6e-6 in the
# exponent, i.e. a relative error of that size in p; float64 the same at 1e-14.
_SHIFT_RTOL = {np.float32: 1e-4, np.float64: 1e-12}


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES)
@settings(deadline=None, max_examples=50)
@given(data=st.data())
def test_softmax_rows_sum_to_one_and_ignore_row_constants(dtype, data):
    z = _logits(data, dtype)
    c = data.draw(arrays(dtype, (z.shape[0], 1), elements=st.floats(
        -100, 100, width=32 if dtype == np.float32 else 64)))
    p, q = np.empty_like(z), np.empty_like(z)
    K.softmax_forward(z, p)
    K.softmax_forward(z + c, q)
    n_eps = 10 * z.shape[1] * np.finfo(dtype).eps
    assert np.all(p >= 0)
    assert_allclose(p.sum(axis=1), 1, rtol=0, atol=n_eps)
    assert_allclose(q, p, rtol=_SHIFT_RTOL[dtype], atol=0)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES)
@settings(deadline=None, max_examples=50)
@given(data=st.data())
def test_softmax_xent_grad_rows_sum_to_zero(dtype, data):
    z = _logits(data, dtype)
    labels = data.draw(arrays(np.int64, z.shape[0], elements=st.integers(0, z.shape[1] - 1)))
    y = np.zeros_like(z)
    y[np.arange(z.shape[0]), labels] = 1
    delta = np.empty_like(z)
    loss = K.softmax_xent_grad(z, y, np.ones(z.shape[0], dtype), _eps(dtype), delta)
    assert np.isfinite(loss) and loss >= 0
    assert_allclose(delta.sum(axis=1), 0, rtol=0, atol=10 * z.shape[1] * np.finfo(dtype).eps)


@numba.njit
def _copy_rows_view(buf, start, rows, cols):
    return rows_view(borrowed(buf), start, rows, cols).copy()


def test_rows_view_is_the_reshaped_slice_and_bounds_checked():
    # The epoch kernels' views carry no reference count (kernels/_jit.py); they must
    # still be exactly the slice they stand for, and under NUMBA_BOUNDSCHECK=1 (the CI
    # job that reruns this module) a view reaching past its buffer raises.
    buf = np.arange(24.0)
    assert_array_equal(_copy_rows_view(buf, 5, 3, 4), buf[5:17].reshape(3, 4))
    assert_array_equal(_copy_rows_view(buf, 0, 4, 6), buf.reshape(4, 6))
    if numba.config.BOUNDSCHECK:
        with pytest.raises(IndexError, match="out of bounds"):
            _copy_rows_view(buf, 13, 3, 4)
        with pytest.raises(IndexError, match="out of bounds"):
            _copy_rows_view(buf, -1, 1, 2)


@numba.njit
def _tiles_then(a, b, bias, relu, gate, gated, out):
    _jit.tile_dot_bias_into(a, b, bias, relu, out)
    _jit.tile_dot_gate_into(a, b, gate, gated, out)


def test_register_tiles_with_epilogues_are_bounds_checked():
    # The tiles' epilogues read a bias as long as a row of out and a gate of out's
    # shape; under NUMBA_BOUNDSCHECK=1 (the CI job that reruns this module) shorter ones
    # raise, as a short out does.
    a, b = np.ones((7, 5)), np.ones((5, 9))
    bias, gate, out = np.ones(9), np.ones((7, 9)), np.empty((7, 9))
    _tiles_then(a, b, bias, True, gate, True, out)
    assert_array_equal(out, 5.0)  # the second product's: a @ b where gate > 0
    if numba.config.BOUNDSCHECK:
        for args in [(bias[:8], gate, out), (bias, gate[:6], out),
                     (bias, np.ones((7, 8)), out), (bias, gate, out[:, :8].copy())]:
            with pytest.raises(IndexError, match="out of bounds"):
                _tiles_then(a, b, args[0], True, args[1], True, args[2])


@pytest.mark.skipif(numba.config.DISABLE_JIT,
                    reason="NUMBA_DISABLE_JIT=1 (the coverage job): helpers are plain Python "
                           "functions with no compiled library to inspect; the main run checks")
def test_helpers_compile_link_only():
    # _LinkOnlyHelper (kernels/_jit.py): a helper's library is finalized without module
    # optimization or machine code (kernels link its IR and run their own copy); were the
    # step to stand aside on some numba, the helper's symbol would be in the JIT engine.
    # A helper of its own, which no other function of the suite links: a plain
    # numba.njit caller links a helper's copies without making them private, and those
    # define the name in the engine.
    @_jit.inline
    def twice_positive(v):
        for p in range(v.shape[0]):
            v[p] = 2 * v[p] if v[p] > 0 else 0

    args = (numba.types.float64[::1],)
    twice_positive.compile(args)
    compiled = twice_positive.overloads[args]
    assert compiled.library._finalized
    assert not compiled.library._codegen._engine.is_symbol_defined(
        compiled.fndesc.llvm_func_name)

    @numba.njit(pipeline_class=_jit._KernelCompiler, **_jit._OPTS)
    def run(v):  # compiled as a kernel is: it runs its own copy of the helper
        twice_positive(v)

    v = np.array([-1.5, 0.0, 2.5])
    run(v)
    assert_array_equal(v, [0.0, 0.0, 5.0])


@pytest.mark.skipif(numba.config.DISABLE_JIT,
                    reason="NUMBA_DISABLE_JIT=1 (the coverage job): no LLVM modules to "
                           "optimize; the main run checks")
def test_function_passes_match_numbas_own():
    # _jit._optimize_defined_functions runs numba's function passes once per module,
    # over defined functions only: the IR it leaves must be the IR numba's step leaves.
    import llvmlite.binding
    from numba.core.codegen import CPUCodeLibrary
    from numba.core.registry import cpu_target

    from fastnn.kernels._jit import _optimize_defined_functions
    from fastnn.kernels.dense import _matmul_bias

    @numba.njit
    def probe(x, w, b, out):
        _matmul_bias(x, w, b, True, out)

    args = (np.ones((3, 4)), np.ones((4, 2)), np.ones(2), np.empty((3, 2)))
    probe(*args)
    text = probe.inspect_llvm(probe.signatures[0])
    codegen = cpu_target.target_context.codegen()
    ours = codegen.create_library("fastnn_probe")
    _optimize_defined_functions(ours)
    # The lean step replaces numba's where numba's function pass manager takes no
    # argument and comes with its pass builder (the API it was written against); the
    # expectation asks numba itself, not the check in _jit.
    try:
        made = codegen._function_pass_manager()
    except (AttributeError, TypeError):
        made = None
    replaced = isinstance(made, tuple) and len(made) == 2
    assert ("_optimize_functions" in vars(ours)) == replaced
    if not replaced:
        pytest.skip("this numba builds its function passes another way: its own step runs "
                    "(checked above), so there is no lean step to compare")
    lean, own = (llvmlite.binding.parse_assembly(text) for _ in range(2))
    assert any(fn.is_declaration for fn in own.functions)  # the ones the lean step skips
    ours._optimize_functions(lean)
    CPUCodeLibrary._optimize_functions(codegen.create_library("numba_probe"), own)
    assert str(lean) == str(own)



@pytest.mark.skipif(numba.config.DISABLE_JIT,
                    reason="NUMBA_DISABLE_JIT=1 (the coverage job): no machine code to inspect; "
                           "the main run checks")
def test_adam_takes_the_avx512_step_where_the_cpu_has_them():
    # The engine's Adam step (optim._adam) compiles the exact loop without AVX-512; with
    # it, the step must take AVX-512 vectors (_jit.adam_avx512: float64's on the
    # estimates and the divider in turn), not fall back silently. The expectation comes
    # from llvmlite's own reading of the host (or the features NUMBA_CPU_FEATURES names),
    # not from the check the kernels use.
    from fastnn.kernels._jit import ADAM_AVX512
    from fastnn.kernels.optim import _adam

    has = _compiles_for_avx512()
    assert ADAM_AVX512 == has

    @numba.njit
    def step(theta, grad, m, v):
        _adam(theta, grad, m, v, 1e-3, 0.9, 0.999, 1e-8, 1, 20, 1e-4, 32.0)

    arrays = [np.full(40, 0.5) for _ in range(4)]
    step(*arrays)
    asm = step.inspect_asm(step.signatures[0])
    assert ("vrsqrt14pd" in asm, "vrcp14pd" in asm) == (has, has)


@pytest.mark.skipif(numba.config.DISABLE_JIT,
                    reason="NUMBA_DISABLE_JIT=1 (the coverage job): kernels are plain Python "
                           "there and compute any layout with NumPy; the main run checks")
@pytest.mark.parametrize("layout", ["strided", "fortran"])
def test_kernels_reject_arrays_that_are_not_c_contiguous(rng, layout):
    # The kernels' views and BLAS calls take every array as C-ordered rows: a strided or
    # Fortran-ordered argument gave wrong numbers without a word; now a TypeError names it.
    x = rng.standard_normal((8, 10))
    x = x[:, ::2] if layout == "strided" else np.asfortranarray(x[:, :5])
    w, b, out = rng.standard_normal((5, 3)), np.zeros(3), np.empty((8, 3))
    with pytest.raises(TypeError, match=r"^fastnn\.kernels\.dense_forward: x must be a "
                                        r"C-contiguous array \(np\.ascontiguousarray"):
        K.dense_forward(x, w, b, out)
    theta = rng.standard_normal(40)[::2]
    state = [np.zeros(20) for _ in range(3)]
    with pytest.raises(TypeError, match=r"adam_update: theta must be a C-contiguous array"):
        K.adam_update(theta, *state, 1e-3, 0.9, 0.999, 1e-8, 1)
    K.dense_forward(np.ascontiguousarray(x), w, b, out)  # the same values, contiguous
    assert_allclose(out, x @ w, **TOL[np.float64])


# The compile-time measures of kernels/_jit.py (the collector's pause, helpers without
# reference counts) exist only where numba compiles.
kernels_compile = pytest.mark.skipif(
    numba.config.DISABLE_JIT, reason="NUMBA_DISABLE_JIT=1 (the coverage job): kernels are plain "
                                     "Python there and never compile; the main run checks")
helpers_compile = pytest.mark.skipif(
    numba.config.DISABLE_JIT, reason="NUMBA_DISABLE_JIT=1 (the coverage job): helpers are plain "
                                     "Python there, with Python's reference counts; the main "
                                     "run checks")


def _thresholds_after_compiling(fn, run, on_compile_start):
    # fn as a fresh kernel without a disk cache (a compile every run), called by run(kernel)
    # with the collector's thresholds at (500, 7, 9); on_compile_start() runs as each of
    # its signatures starts compiling. The thresholds after run; the caller's are put back.
    import gc

    from numba.core import event
    from numba.core.caching import NullCache

    probe = _jit.kernel(fn)
    probe._cache = NullCache()

    class OnCompileStart(event.Listener):
        def on_start(self, ev):
            if ev.data["dispatcher"] is probe:
                on_compile_start()

        def on_end(self, ev):
            pass

    saved = gc.get_threshold()
    gc.set_threshold(500, 7, 9)
    try:
        with event.install_listener("numba:compile", OnCompileStart()):
            run(probe)
        return gc.get_threshold()
    finally:
        gc.set_threshold(*saved)


@kernels_compile
def test_kernel_compiles_without_full_collections_and_restores_the_thresholds():
    # A compile pauses the collector's full passes (the one generation-2 threshold) and
    # puts the caller's thresholds back afterwards, also when the compile refuses the call.
    import gc

    def doubled_first(x):
        return x[0] * 2.0

    def run(probe):
        assert probe(np.array([1.5, 0.0])) == 3.0
        with pytest.raises(TypeError, match="x must be a C-contiguous array"):
            probe(np.asfortranarray(np.ones((2, 2))))

    during = []
    after = _thresholds_after_compiling(doubled_first, run,
                                        lambda: during.append(gc.get_threshold()))
    assert during == [(500, 7, 1 << 30)] * 2  # both signatures' compiles, young ones kept
    assert after == (500, 7, 9)


@kernels_compile
@pytest.mark.parametrize("set_meanwhile, expected", [((300, 4, 1 << 30), (300, 4, 9)),
                                                     ((300, 4, 20), (300, 4, 20))])
def test_thresholds_set_during_a_compile_are_kept(set_meanwhile, expected):
    # Thresholds are process-wide: what other code sets while a kernel compiles stays,
    # and only a full-pass threshold still at the pause's value goes back.
    import gc

    def tripled(x):
        return x * 3.0

    def run(probe):
        assert probe(2.0) == 6.0

    after = _thresholds_after_compiling(tripled, run, lambda: gc.set_threshold(*set_meanwhile))
    assert after == expected


@helpers_compile
def test_helpers_run_without_reference_counts_and_may_not_return_arrays():
    # Helpers compile without numba's NRT: returning even the caller's own array would
    # hand back a reference never taken (the caller would later drop it once too often).
    @_jit.inline
    def passed_through(a):
        return a

    @_jit.inline
    def halves(a):
        return a[0] * 0.5, a[1] * 0.5

    @numba.njit
    def returns_array(a):
        return passed_through(a)[0]

    @numba.njit
    def returns_numbers(a):
        return halves(a)

    assert passed_through.targetoptions["_nrt"] is False
    with pytest.raises(TypeError, match=r"helper .*passed_through returns array\(float64, 1d, C\): "
                                        r"helpers run without reference counts"):
        returns_array(np.ones(3))
    assert returns_numbers(np.array([1.0, 3.0])) == (0.5, 1.5)
    library = halves.overloads[halves.signatures[0]].library
    assert "NRT_" not in str(library._final_module)


@helpers_compile
def test_helper_that_allocates_is_refused_even_through_a_shared_routine():
    # numba shares its internally compiled routines between code with and without
    # reference counts: after a function with them compiled a.flatten(), a helper's
    # a.flatten() compiled without complaint and leaked the copy at every call.
    @numba.njit(error_model="numpy")  # the helpers' error model: the same shared routine
    def counted_flatten(a):
        return a.flatten()[0]

    @_jit.inline
    def flattened_first(a):
        return a.flatten()[0]

    @numba.njit
    def calls_helper(a):
        return flattened_first(a)

    x = np.arange(6.0).reshape(2, 3)
    assert counted_flatten(x) == 0.0
    with pytest.raises(TypeError, match=r"helper .*flattened_first calls numba's reference "
                                        r"counting \(NRT_"):
        calls_helper(x)

# n = 1 and 2: the shortest passes; 624 and 700: orders spanning generator refills; the
# draws start mid-state (after `skip` outputs), as they do in a running fit.
@pytest.mark.parametrize("n, epochs, seed, skip", [
    (1, 3, 0, 0), (2, 5, 1, 3), (150, 40, 0, 7), (624, 3, 9, 623), (700, 4, 2, 1000)])
def test_shuffled_orders_draws_as_sklearn_shuffle(n, epochs, seed, skip):
    from sklearn.utils import shuffle

    theirs = np.random.RandomState(seed)
    ours = np.random.RandomState(seed)
    theirs.random_sample(skip)
    ours.random_sample(skip)
    sample_idx = np.arange(n, dtype=np.int64)[::-1].copy()
    expected, idx = [], sample_idx
    for _ in range(epochs):
        idx = shuffle(idx, random_state=theirs)
        expected.append(idx)
    state = ours.get_state(legacy=False)
    orders = np.full((epochs, n), -1, dtype=np.int64)
    state["state"]["pos"] = K.shuffled_orders(state["state"]["key"], state["state"]["pos"],
                                              sample_idx, orders)
    ours.set_state(state)
    assert_array_equal(orders, np.array(expected))
    assert_array_equal(sample_idx, np.arange(n)[::-1])  # read only
    # the generator is left exactly where scikit-learn's shuffles leave it
    assert_array_equal(ours.randint(0, 2**31, 700), theirs.randint(0, 2**31, 700))


def _normals(*shape):
    return np.random.default_rng(0).standard_normal(shape)


def _loss_args(name, extra, wrong):
    # (z or p, y, sw, *extra[, delta]) of a loss kernel with argument `wrong` one short
    def make(f):
        args = [f(4, 3), f(4, 3 - (wrong == "y")), f(4 - (wrong == "sw")), *extra]
        return (*args, f(4, 3 - (wrong == "delta"))) if name.endswith("grad") else tuple(args)
    return make


def _loss_message(name, wrong):
    first = "z" if name.endswith("grad") else "p"
    y = "y1h" if name in ("softmax_xent_grad", "xent_loss") else "y"
    if wrong == "sw":
        return f"sw must have one weight per row of {first}"
    return f"{y if wrong == 'y' else wrong} must have the shape of {first}"


def _step_args(state, tail, wrong):
    # (theta, *state arrays, *hyperparameters) of an optimizer step, `wrong` too short
    return lambda f: (f(10), *(f(3 if a == wrong else 10) for a in state), *tail)


SHAPE_MISMATCHES = {
    # (kernel, arguments, message): each wrote or read past an array's end before (the
    # short outputs of dense_forward, softmax_forward and the optimizer steps crashed the
    # process; relu_forward's wrote silently)
    "dense_forward out": ("dense_forward", lambda f: (f(4, 3), f(3, 5), f(5), f(2, 5)),
                          "out must have the shape of x @ w"),
    "dense_forward w": ("dense_forward", lambda f: (f(4, 3), f(2, 5), f(5), f(4, 5)),
                        "w must have one row per column of x"),
    "dense_forward b": ("dense_forward", lambda f: (f(4, 3), f(3, 5), f(4), f(4, 5)),
                        "b must have one entry per column of w"),
    "dense_backward w": ("dense_backward", lambda f: (f(4, 3), f(4, 5), f(2, 5), 0.1, 4.0,
                                                      f(2, 5), f(5)),
                         r"w must have the shape of x.T @ delta"),
    "dense_backward delta": ("dense_backward", lambda f: (f(4, 3), f(3, 5), f(3, 5), 0.1,
                                                          4.0, f(3, 5), f(5)),
                             "delta must have one row per row of x"),
    "dense_backward grad_w": ("dense_backward", lambda f: (f(4, 3), f(4, 5), f(3, 5), 0.1,
                                                           4.0, f(3, 4), f(5)),
                              "grad_w must have the shape of w"),
    "dense_backward grad_b": ("dense_backward", lambda f: (f(4, 3), f(4, 5), f(3, 5), 0.1,
                                                           4.0, f(3, 5), f(4)),
                              "grad_b must have one entry per column of w"),
    "dense_backward_input w": ("dense_backward_input", lambda f: (f(4, 5), f(3, 4), f(4, 3)),
                               "w must have one column per column of delta"),
    "dense_backward_input out": ("dense_backward_input", lambda f: (f(4, 5), f(3, 5),
                                                                    f(4, 2)),
                                 r"out must have the shape of delta @ w.T"),
    **{f"{name} out": (name, lambda f: (f(4, 3), f(2, 3)), "out must have the shape of z")
       for name in ("identity_forward", "relu_forward", "sigmoid_forward", "tanh_forward",
                    "softmax_forward", "log_softmax_forward")},
    **{f"{name} {arg}": (name, lambda f, arg=arg: (f(4, 3), f(4, 3 - (arg == "grad")),
                                                   f(4, 3 - (arg == "out"))),
                         f"{arg} must have the shape of a")
       for name in ("identity_backward", "relu_backward", "sigmoid_backward", "tanh_backward")
       for arg in ("grad", "out")},
    **{f"{name} {arg}": (name, _loss_args(name, extra, arg), _loss_message(name, arg))
       for name, extra in (("softmax_xent_grad", (1e-10,)), ("sigmoid_bce_grad", (1e-10,)),
                           ("mse_grad", (1.0,)), ("exp_poisson_grad", ()),
                           ("xent_loss", (1e-10,)), ("bce_loss", (1e-10,)), ("mse_loss", ()),
                           ("poisson_loss", ()))
       for arg in ("y", "sw", "delta") if arg != "delta" or name.endswith("grad")},
    **{f"{name} {arg}": (name, _step_args(state, tail, arg), f"{arg} must have the shape of theta")
       for name, state, tail in (("sgd_update", ("grad", "velocity"), (0.1, 0.9)),
                                 ("nesterov_update", ("grad", "velocity"), (0.1, 0.9)),
                                 ("adam_update", ("grad", "m", "v"), (0.1, 0.9, 0.999, 1e-8, 1)))
       for arg in state},
}


@pytest.mark.parametrize("case", list(SHAPE_MISMATCHES))
def test_per_operation_kernels_refuse_arrays_whose_shapes_disagree(case):
    name, make_args, message = SHAPE_MISMATCHES[case]
    kernel = getattr(K, name)
    args = make_args(_normals)
    for a in args:  # every array is C-contiguous float64: only a shape can be wrong
        assert not isinstance(a, np.ndarray) or a.flags.c_contiguous
    with pytest.raises(ValueError, match=message):
        kernel(*args)


@numba.njit
def _exp_all(x, subnormal, out):
    for i in range(x.shape[0]):
        out[i] = _exp_nonpositive(x[i], subnormal)


@pytest.mark.parametrize("subnormal", [False, True])
def test_softmax_exp_within_one_ulp_of_numpy(subnormal):
    # The polynomial exp behind softmax (kernels/activations.py), over the range softmax
    # feeds it (shifted logits, <= 0), the edges of that range, and the special values;
    # in exp's subnormal range NumPy's subnormal (predict_proba's) or 0 (training's).
    rng = np.random.default_rng(7)
    x = np.concatenate([rng.uniform(-1, 0, 20000), rng.uniform(-40, 0, 20000),
                        rng.uniform(-708.39, -600, 20000), [-708.3964185322641, -1e-300,
                                                           -5e-324, -0.0, 0.0]])
    got = np.empty_like(x)
    _exp_all(x, subnormal, got)
    want = np.exp(x)
    assert np.array_equal(got[-4:], [1.0, 1.0, 1.0, 1.0])
    assert np.all(np.abs(got - want) <= np.spacing(want))
    tiny = np.concatenate([rng.uniform(-745.2, -708.4, 20000),
                           [-708.4, -744.4400719213812, -745.1332191019411, -745.2, -746.0]])
    got = np.empty_like(tiny)
    _exp_all(tiny, subnormal, got)
    want = np.exp(tiny)
    assert 0 < np.count_nonzero(want) < len(want)  # the subnormals, down to where exp is 0
    if subnormal:  # within one subnormal ulp: the polynomial's p, rounded once more
        assert np.all(np.abs(got - want) <= np.finfo(np.float64).smallest_subnormal)
        assert np.count_nonzero(got != want) < len(want) // 10
    else:
        assert np.array_equal(got, np.zeros_like(want))
    special = np.array([np.nan, -np.inf, -1e308, -746.5])
    got = np.empty_like(special)
    _exp_all(special, subnormal, got)
    assert np.isnan(got[0]) and np.array_equal(got[1:], [0.0, 0.0, 0.0])


def test_blas_core_is_the_one_the_gemm_library_reports():
    # kernels/dense.py picks a call pattern by OpenBLAS's core: _jit.BLAS_CORE must be the
    # name threadpoolctl (scikit-learn's dependency) reads off the same library.
    import ctypes
    import os

    from threadpoolctl import threadpool_info

    from fastnn.kernels import _jit

    info = _jit._DlInfo()
    assert ctypes.CDLL(None).dladdr(ctypes.c_void_p(_jit._gemm_addresses["float64"]),
                                    ctypes.byref(info))
    path = os.path.realpath(info.dli_fname.decode())
    reported = [pool.get("architecture") for pool in threadpool_info()
                if os.path.realpath(pool["filepath"]) == path]
    assert reported and reported[0], (path, threadpool_info())
    assert _jit.BLAS_CORE == reported[0].lower()


def test_kernels_share_numpys_blas_where_its_wheel_brings_one(rng):
    # kernels/_jit.py: with NumPy's own OpenBLAS in the process, the kernels call its gemm
    # (one thread pool for NumPy's products and ours, not two spinning workers on two
    # cores), and the same library called the same way gives NumPy's products to the
    # bit; without one, SciPy's. The expectation reads the process's memory map itself.
    import os
    from fastnn.kernels import _jit

    libs = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(np.__file__))),
                        "numpy.libs")
    try:
        with open("/proc/self/maps") as fh:
            loaded = fh.read()
    except OSError:  # no memory map to read: the kernels cannot know, and take SciPy's
        loaded = ""
    numpys = any("libscipy_openblas64_" in name
                 and os.path.realpath(os.path.join(libs, name)) in loaded
                 for name in (os.listdir(libs) if os.path.isdir(libs) else []))
    assert _jit.BLAS == ("numpy-openblas-ilp64" if numpys else "scipy-lp64")
    assert 37 * 253 * 29 > TILE_MAX  # a product for BLAS, not the register tiles
    for dtype in DTYPES:
        x, w = _normal(rng, (37, 253), dtype), _normal(rng, (253, 29), dtype)
        out = np.empty((37, 29), dtype)
        K.dense_forward(x, w, np.zeros(29, dtype), out)
        if numpys:
            assert_array_equal(out, x @ w)
        else:
            assert_allclose(out, x @ w, **TOL[dtype])
