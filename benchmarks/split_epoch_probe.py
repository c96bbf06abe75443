"""Probe: what a second training thread would give W-small (not an asv suite).

    python benchmarks/split_epoch_probe.py

Each of two nogil threads owns half of every layer's units (their weights' columns,
biases, gradients and Adam state) and trains on the same mini-batches: its half of each
forward product, the whole output's softmax (the output columns are exchanged), its
half of each weight gradient, and its units' input gradients from the whole delta of the
layer above and the weight rows of both halves. The threads meet at five spin barriers
a batch (after the hidden outputs, the output, the second delta and before the update,
when the other has read the weights it is about to change). Every sum runs in the order
of the one-thread products (the register tiles' column blocks are bit-identical to the
full product; checked below), so a kernel built this way would give the same bits at any
thread count. Printed per batch: the two threads, one thread's half alone (its work
without the handoffs) and the one-thread kernel (``Sequential.fit``).

The probe's softmax and batch gather are simpler than the kernel's and it has no loss,
divergence check or abort path: it measures the split, it does not train models.
"""

import statistics
import sys
import threading
import time

import numba
import numpy as np
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from fastnn.kernels._jit import (ADAM_AVX512, adam_avx512, column_sums_into,
                                 tile_dot_bias_into, tile_dot_gate_into, tile_dot_t_into)


@intrinsic
def _load_acquire(typingctx, arr, idx):
    def codegen(context, builder, sig, args):
        a = context.make_array(sig.args[0])(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, sig.args[0], a, [args[1]])
        return builder.load_atomic(ptr, ordering="acquire", align=8)
    return types.int64(arr, idx), codegen


@intrinsic
def _store_release(typingctx, arr, idx, val):
    def codegen(context, builder, sig, args):
        a = context.make_array(sig.args[0])(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, sig.args[0], a, [args[1]])
        builder.store_atomic(args[2], ptr, ordering="release", align=8)
        return context.get_dummy_value()
    return types.void(arr, idx, val), codegen


@numba.njit(nogil=True, inline="always")
def _barrier(flags, me, count, on):
    # each thread's counter on a cache line of its own (8 int64 apart)
    if on:
        _store_release(flags, 8 * me, count)
        while _load_acquire(flags, 8 * (1 - me)) < count:
            pass


@numba.njit(nogil=True, inline="always")
def _join_halves(mine, other, me, full):
    # full = [half 0 | half 1] column-wise, this thread's half being `mine`
    width = mine.shape[1]
    for r in range(full.shape[0]):
        for j in range(width):
            full[r, me * width + j] = mine[r, j]
            full[r, (1 - me) * width + j] = other[r, j]


@numba.njit(nogil=True, inline="always")
def _weight_rows_t(w_mine, w_other, me, rows0, out_t):
    # out_t = (rows rows0.. of [w half 0 | w half 1]).T: the transposed weight rows of this
    # thread's input units, both threads' output columns
    width = w_mine.shape[1]
    for j in range(width):
        for k in range(out_t.shape[1]):
            out_t[me * width + j, k] = w_mine[rows0 + k, j]
            out_t[(1 - me) * width + j, k] = w_other[rows0 + k, j]


@numba.njit(nogil=True)
def _batches(me, on, flags, count, x, y1h, order, n_batches, s, o):
    # s: this thread's arrays, o: the other's (tuples, fields as in _thread_arrays)
    (xb, yb, theta, grad, m, v, w1, b1, w2, b2, w3, b3, gw1, gb1, gw2, gb2, gw3, gb3,
     h1, h2, z3, d2, h1f, h2f, z3f, d3, w3t, d2f, w2t, d1) = s
    w2o, w3o, h1o, h2o, z3o, d2o = o[8], o[10], o[18], o[19], o[20], o[21]
    rows = xb.shape[0]
    for batch in range(n_batches):
        for r in range(rows):
            src = order[batch * rows + r]
            for k in range(x.shape[1]):
                xb[r, k] = x[src, k]
            for j in range(y1h.shape[1]):
                yb[r, j] = y1h[src, j]
        tile_dot_bias_into(xb, w1, b1, True, h1)
        count += 1
        _barrier(flags, me, count, on)
        _join_halves(h1, h1o, me, h1f)
        tile_dot_bias_into(h1f, w2, b2, True, h2)
        count += 1
        _barrier(flags, me, count, on)
        _join_halves(h2, h2o, me, h2f)
        tile_dot_bias_into(h2f, w3, b3, False, z3)
        count += 1
        _barrier(flags, me, count, on)
        _join_halves(z3, z3o, me, z3f)
        for r in range(rows):  # softmax and the output delta, whole rows on each thread
            top = z3f[r, 0]
            for j in range(z3f.shape[1]):
                top = max(top, z3f[r, j])
            total = 0.0
            for j in range(z3f.shape[1]):
                total += np.exp(z3f[r, j] - top)
            for j in range(z3f.shape[1]):
                z3f[r, j] = (np.exp(z3f[r, j] - top) / total - yb[r, j]) / rows
            for j in range(d3.shape[1]):
                d3[r, j] = z3f[r, me * d3.shape[1] + j]
        tile_dot_t_into(h2f, d3, gw3)
        column_sums_into(d3, gb3)
        _weight_rows_t(w3, w3o, me, me * h2.shape[1], w3t)
        tile_dot_gate_into(z3f, w3t, h2, True, d2)
        tile_dot_t_into(h1f, d2, gw2)
        column_sums_into(d2, gb2)
        count += 1
        _barrier(flags, me, count, on)
        _join_halves(d2, d2o, me, d2f)
        _weight_rows_t(w2, w2o, me, me * h1.shape[1], w2t)
        tile_dot_gate_into(d2f, w2t, h1, True, d1)
        tile_dot_t_into(xb, d1, gw1)
        column_sums_into(d1, gb1)
        count += 1
        _barrier(flags, me, count, on)  # the other has read w2 and w3: update them
        if ADAM_AVX512:  # the kernels' step where the CPU has AVX-512, else a plain one
            adam_avx512(theta, grad, m, v, theta.shape[0], 0.9, 0.1, 0.999, 0.001, -1e-3,
                        1e-8, 0.0, 1.0)
        else:
            for p in range(theta.shape[0]):
                m[p] = 0.9 * m[p] + 0.1 * grad[p]
                v[p] = 0.999 * v[p] + 0.001 * grad[p] * grad[p]
                theta[p] -= 1e-3 * m[p] / (np.sqrt(v[p]) + 1e-8)
    return count


def _thread_arrays(sizes, rows, rng):
    """One thread's arrays for a network of widths ``sizes`` (input first), in the order
    _batches unpacks them: half of each layer's units."""
    n_in, h1, h2, n_out = sizes[0], sizes[1] // 2, sizes[2] // 2, sizes[3] // 2
    shapes = [(n_in, h1), (2 * h1, h2), (2 * h2, n_out)]
    n_weights = sum(a * b for a, b in shapes)
    n_params = n_weights + h1 + h2 + n_out
    theta, grad = np.zeros(n_params), np.zeros(n_params)
    w, g, pos = [], [], 0
    for a, b in shapes:
        w.append(theta[pos:pos + a * b].reshape(a, b))
        g.append(grad[pos:pos + a * b].reshape(a, b))
        limit = np.sqrt(6.0 / (a + 2 * b))
        w[-1][:] = rng.uniform(-limit, limit, (a, b))
        pos += a * b
    for width in (h1, h2, n_out):
        w.append(theta[pos:pos + width])
        g.append(grad[pos:pos + width])
        pos += width
    z = np.zeros
    return (z((rows, n_in)), z((rows, 2 * n_out)), theta, grad, z(n_params), z(n_params),
            w[0], w[3], w[1], w[4], w[2], w[5], g[0], g[3], g[1], g[4], g[2], g[5],
            z((rows, h1)), z((rows, h2)), z((rows, n_out)), z((rows, h2)),
            z((rows, 2 * h1)), z((rows, 2 * h2)), z((rows, 2 * n_out)), z((rows, n_out)),
            z((2 * n_out, h2)), z((rows, 2 * h2)), z((2 * h2, h1)), z((rows, h1)))


@numba.njit
def _forward_and_weight_grad(a, w, b, d, out, out_t):
    tile_dot_bias_into(a, w, b, True, out)
    tile_dot_t_into(a, d, out_t)


def column_blocks_match(rng):
    """Whether the tiles' column blocks (each thread's half) give the full product's bits."""
    a, w = rng.standard_normal((32, 128)), rng.standard_normal((128, 37))
    b, d = rng.standard_normal(37), rng.standard_normal((32, 37))
    full, full_t = np.empty((32, 37)), np.empty((128, 37))
    _forward_and_weight_grad(a, w, b, d, full, full_t)
    same = True
    for lo, hi in ((0, 18), (18, 37)):
        part, part_t = np.empty((32, hi - lo)), np.empty((128, hi - lo))
        _forward_and_weight_grad(a, np.ascontiguousarray(w[:, lo:hi]), b[lo:hi].copy(),
                                 np.ascontiguousarray(d[:, lo:hi]), part, part_t)
        same &= np.array_equal(part, full[:, lo:hi]) and np.array_equal(part_t, full_t[:, lo:hi])
    return same


def main(repeats=8, epochs=5):
    from fastnn._workloads import load, make_model

    x, y, _, _ = load("W-small")
    x = np.ascontiguousarray(x)
    y1h = np.eye(10)[y]
    rng = np.random.default_rng(0)
    arrays = [_thread_arrays((64, 128, 64, 10), 32, rng) for _ in range(2)]
    per_epoch = x.shape[0] // 32
    n_batches = per_epoch * epochs
    flags = np.zeros(16, np.int64)
    counts = [0, 0]

    def run(me, order, on, box=None):
        box = box if box is not None else [None]
        box[0] = _batches(me, on, flags, counts[me], x, y1h, order, n_batches, arrays[me],
                          arrays[1 - me])
        return box[0]

    print("tiles' column blocks bit-identical to the full products:", column_blocks_match(rng))
    run(0, np.resize(np.arange(x.shape[0]), n_batches * 32), False)  # compile
    one = make_model("W-small", "numba")
    one.fit(x, y, epochs=1, batch_size=32)
    times = {"two threads": [], "one half alone": [], "one-thread kernel": []}
    for _ in range(repeats):
        order = np.concatenate([rng.permutation(x.shape[0])[:per_epoch * 32]
                                for _ in range(epochs)])
        box = [None]
        worker = threading.Thread(target=run, args=(1, order, True, box))
        worker.start()
        start = time.perf_counter()
        counts[0] = run(0, order, True)
        worker.join()
        times["two threads"].append((time.perf_counter() - start) / n_batches)
        counts[1] = box[0]
        start = time.perf_counter()
        run(0, order, False)
        times["one half alone"].append((time.perf_counter() - start) / n_batches)
        start = time.perf_counter()
        one.fit(x, y, epochs=epochs, batch_size=32)
        times["one-thread kernel"].append((time.perf_counter() - start)
                                          / (epochs * -(-x.shape[0] // 32)))
    for name, values in times.items():
        print(f"{name:18} per batch: median {statistics.median(values) * 1e6:6.1f} us, "
              f"min {min(values) * 1e6:6.1f}, max {max(values) * 1e6:6.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
