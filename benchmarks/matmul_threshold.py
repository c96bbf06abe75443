"""Register tiles against BLAS for the three products of a dense layer: ns per product.

``python benchmarks/matmul_threshold.py [float32]`` times, inside compiled loops (no
dispatch cost), each product through the kernels' register tiles
(``kernels._jit.tile_dot_bias_into`` with its bias, ``tile_dot_t_into``, and
``tile_dot_gate_into`` ungated for ``delta @ w.T`` on a transposed copy of ``w``, the copy
counted) and through BLAS (the kernels' direct gemm calls, the forward one with the
kernels' bias pass after it), for
batch x n_in x n_out shapes from iris' to W-large's. ``kernels.dense.TILE_MAX`` is the
largest product the kernels give the tiles. Run it on a quiet machine: BLAS timings
suffer most from a loaded one (its threads wait on each other).
"""

import sys
import time

import numba
import numpy as np

from fastnn.kernels._jit import (
    dot_into,
    dot_nt_into,
    dot_t_into,
    tile_dot_bias_into,
    tile_dot_gate_into,
    tile_dot_t_into,
)
from fastnn.kernels.dense import TILE_MAX


@numba.njit
def _forward_tiles(reps, x, w, d, out):
    b = np.zeros(w.shape[1], w.dtype)
    for _ in range(reps):
        tile_dot_bias_into(x, w, b, False, out)


@numba.njit
def _forward_blas(reps, x, w, d, out):
    b = np.zeros(w.shape[1], w.dtype)
    for _ in range(reps):
        dot_into(x, w, out)
        for i in range(out.shape[0]):
            for j in range(out.shape[1]):
                out[i, j] += b[j]


@numba.njit
def _wgrad_tiles(reps, x, w, d, out):
    for _ in range(reps):
        tile_dot_t_into(x, d, out)


@numba.njit
def _wgrad_blas(reps, x, w, d, out):
    for _ in range(reps):
        dot_t_into(x, d, out)


@numba.njit
def _igrad_tiles(reps, x, w, d, out):
    w_t = np.empty((w.shape[1], w.shape[0]), w.dtype)
    for _ in range(reps):
        for j in range(w.shape[1]):
            for k in range(w.shape[0]):
                w_t[j, k] = w[k, j]
        tile_dot_gate_into(d, w_t, out, False, out)


@numba.njit
def _igrad_blas(reps, x, w, d, out):
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
              (64, 64, 128), (1, 784, 512), (2, 784, 512), (128, 784, 512)]
    print(f"{dtype_name}; ns per product (median of 5), tiles / blas")
    print(f"{'n x n_in x n_out':>18} {'work':>9} {'forward':>19} {'x.T @ delta':>19} "
          f"{'delta @ w.T':>19}")
    for n, n_in, n_out in shapes:
        x = rng.standard_normal((n, n_in)).astype(dtype)
        w = rng.standard_normal((n_in, n_out)).astype(dtype)
        d = rng.standard_normal((n, n_out)).astype(dtype)
        outs = {"forward": np.empty((n, n_out), dtype), "wgrad": np.empty_like(w),
                "igrad": np.empty_like(x)}
        work = n * n_in * n_out
        cols = []
        for tiles, blas, key in [(_forward_tiles, _forward_blas, "forward"),
                                 (_wgrad_tiles, _wgrad_blas, "wgrad"),
                                 (_igrad_tiles, _igrad_blas, "igrad")]:
            args = (x, w, d, outs[key])
            a, c = _ns(tiles, *args, work=work), _ns(blas, *args, work=work)
            cols.append(f"{a:8.0f} / {c:8.0f}" + ("*" if c < a else " "))
        print(f"{n:>6} x {n_in:>4} x {n_out:>4} {work:>9}{'+' if work > TILE_MAX else ' '}"
              + " ".join(cols))
    print(f"* = BLAS faster; + = above TILE_MAX ({TILE_MAX}): BLAS in the kernels")


if __name__ == "__main__":
    main(*sys.argv[1:])
