"""Hand loops against BLAS for the three products of a dense layer: ns per product.

``python benchmarks/matmul_threshold.py`` times, inside compiled loops (no dispatch
cost), each product through hand-written loops and through BLAS (the kernels' direct
gemm calls), for batch x n_in x n_out shapes from iris' to W-large's. The kernels once
sent small ``delta @ w.T`` products to the loops below 8192 multiply-adds; since the
direct gemm calls (2026-12-01) BLAS wins there too (16x16x16: 700 ns vs 926 ns), so all
three products go to BLAS, except a forward product of fewer than
``kernels.dense.ROW_LOOPS_BELOW`` rows (measured separately: a row or two beat BLAS in
the kernel's loops where OpenBLAS has no small-matrix path; every shape here has 16 rows
or more). Run it on a quiet machine: BLAS timings suffer most from a loaded one (its
threads wait on each other).
"""

import sys
import time

import numba
import numpy as np

from fastnn.kernels._jit import dot_nt_into, dot_t_into
from fastnn.kernels.dense import _matmul_bias

# The hand loops the kernels used before this measurement moved each product to BLAS;
# kept here so the comparison can be rerun.


@numba.njit(fastmath=True, error_model="numpy")
def _matmul_bias_loops(x, w, b, out):
    n, n_in = x.shape
    n_out = w.shape[1]
    i = 0
    while i + 4 <= n:
        for j in range(n_out):
            out[i, j] = b[j]
            out[i + 1, j] = b[j]
            out[i + 2, j] = b[j]
            out[i + 3, j] = b[j]
        for k in range(n_in):
            x0, x1, x2, x3 = x[i, k], x[i + 1, k], x[i + 2, k], x[i + 3, k]
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
            for j in range(n_out):
                out[i, j] += x[i, k] * w[k, j]
        i += 1


@numba.njit(fastmath=True, error_model="numpy")
def _xt_delta_loops(x, delta, grad_w):
    n, n_in = x.shape
    n_out = delta.shape[1]
    grad_w[:, :] = 0
    i = 0
    while i + 4 <= n:
        for k in range(n_in):
            x0, x1, x2, x3 = x[i, k], x[i + 1, k], x[i + 2, k], x[i + 3, k]
            for j in range(n_out):
                grad_w[k, j] += (x0 * delta[i, j] + x1 * delta[i + 1, j]) + (
                    x2 * delta[i + 2, j] + x3 * delta[i + 3, j])
        i += 4
    while i < n:
        for k in range(n_in):
            for j in range(n_out):
                grad_w[k, j] += x[i, k] * delta[i, j]
        i += 1


@numba.njit(fastmath=True, error_model="numpy")
def _grad_input_loops(delta, w, out):
    # out = delta @ w.T
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


@numba.njit
def _forward_loops(reps, x, w, b, out):
    for _ in range(reps):
        _matmul_bias_loops(x, w, b, out)


@numba.njit
def _forward_blas(reps, x, w, b, out):
    for _ in range(reps):
        _matmul_bias(x, w, b, out)


@numba.njit
def _wgrad_loops(reps, x, d, gw):
    for _ in range(reps):
        _xt_delta_loops(x, d, gw)


@numba.njit
def _wgrad_blas(reps, x, d, gw):
    for _ in range(reps):
        dot_t_into(x, d, gw)


@numba.njit
def _igrad_loops(reps, d, w, out):
    for _ in range(reps):
        _grad_input_loops(d, w, out)


@numba.njit
def _igrad_blas(reps, d, w, out):
    for _ in range(reps):
        dot_nt_into(d, w, out)


def _ns(fn, *args, work):
    reps = max(20, 2_000_000 // max(work, 1))
    fn(1, *args)
    best = []
    for _ in range(5):
        start = time.perf_counter()
        fn(reps, *args)
        best.append((time.perf_counter() - start) / reps * 1e9)
    return float(np.median(best))


def main(dtype_name="float64"):
    dtype = np.dtype(dtype_name).type
    rng = np.random.default_rng(0)
    shapes = [(16, 4, 16), (16, 16, 16), (16, 16, 3), (32, 16, 3), (150, 16, 3), (64, 8, 8),
              (128, 4, 10), (32, 16, 32), (32, 32, 32), (16, 64, 32),
              (32, 64, 10), (32, 64, 32), (32, 64, 64), (32, 64, 128), (32, 128, 64),
              (128, 784, 512)]
    print(f"{dtype_name}; ns per product (median of 5), loops / blas")
    print(f"{'n x n_in x n_out':>18} {'work':>9} {'forward':>19} {'x.T @ delta':>19} "
          f"{'delta @ w.T':>19}")
    for n, n_in, n_out in shapes:
        x = rng.standard_normal((n, n_in)).astype(dtype)
        w = rng.standard_normal((n_in, n_out)).astype(dtype)
        b = rng.standard_normal(n_out).astype(dtype)
        d = rng.standard_normal((n, n_out)).astype(dtype)
        out, gw, gi = np.empty((n, n_out), dtype), np.empty_like(w), np.empty_like(x)
        work = n * n_in * n_out
        cols = []
        for loops, blas, args in [(_forward_loops, _forward_blas, (x, w, b, out)),
                                  (_wgrad_loops, _wgrad_blas, (x, d, gw)),
                                  (_igrad_loops, _igrad_blas, (d, w, gi))]:
            a, c = _ns(loops, *args, work=work), _ns(blas, *args, work=work)
            cols.append(f"{a:8.0f} / {c:8.0f}" + ("*" if c < a else " "))
        print(f"{n:>6} x {n_in:>4} x {n_out:>4} {work:>9} " + " ".join(cols))
    print("* = BLAS faster")


if __name__ == "__main__":
    main(*sys.argv[1:])
