"""Training on two threads, each owning half of every hidden layer's units
(kernels/split.py): the dispatch rule, the two parameter layouts and the threads."""

import contextvars
import os
import threading

import numpy as np

from fastnn._network import aligned_empty, is_csr

# Multiply-adds a batch from which the split pays. Measured on digits, alternating fits
# (2026-12-08, AMD EPYC Zen 4, 2 vCPUs): hidden (64, 32) at batch 32, 207k, 1.02x the
# one-thread time; (128, 64), 545k, 0.72-0.91x; at batch 64, 1.09 M, 0.82x. Below it the
# barriers and joins cost more than half the batch's work saves (iris' (16, 16): 2.6x).
SPLIT_MIN = 400000
# Hidden widths the split takes: halves of 16 units line up with the tiles' column
# blocks and Adam's float64 vector pairs, so the weights come out bit for bit the
# one-thread engine's (widths 48 and 80 differed by ~1e-15).
SPLIT_ALIGN = 32


def _round16(n):
    # blocks start on 64-byte lines, as the one-thread work buffer's do
    return (n + 15) // 16 * 16


def _halves(width):
    first = (width + 1) // 2
    return first, width - first


def in_split_order(net, x, batch_size):
    """Whether a fit of ``net`` on ``x`` is one the split takes, wherever two threads
    are to be had: the numba engine, dense rows, every hidden layer's width a multiple of
    32, enough work a batch (``SPLIT_MIN``) and every product within the register tiles.
    Such a fit sums its L2 term in the split's order (``HYPER_L2_HALVES``) on any number
    of threads, so its numbers depend neither on the engine each call takes nor on the
    cores or ``n_threads``.

    Within this rule the two threads compute every number as the one-thread engine does:
    the halves' column blocks line up with the tiles' and with Adam's pairs of vectors,
    and no product of the one-thread engine goes to BLAS, which sums in another order."""
    from fastnn.kernels.dense import FEW_ROWS, TILE_MAX, TRANSPOSE_MAX

    sizes = [int(s) for s in net.sizes]
    hidden = sizes[1:-1]
    if (net.backend != "numba" or is_csr(x) or not hidden
            or any(width % SPLIT_ALIGN for width in hidden)):
        return False
    products = [batch_size * a * b for a, b in zip(sizes[:-1], sizes[1:])]
    if sum(products) < SPLIT_MIN:
        return False
    if batch_size >= FEW_ROWS and max(products) > TILE_MAX:
        return False
    return hidden[-1] * sizes[-1] <= TRANSPOSE_MAX  # else the output's delta @ w.T in BLAS


def two_threads():
    """Whether this process may train on two threads: two cores it may run on, and a
    BLAS thread budget of two or more."""
    from fastnn.kernels._jit import blas_thread_count

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (cores or 1) >= 2 and blas_thread_count() >= 2


# Each splittable workload's latest KEEP times a sample, per engine: a call goes to the
# one with the better best, and every PROBE_EVERY-th call to the other, which times it
# again. On a shared host the second core comes and goes (in one slow phase the split
# took 1.4x the one-thread time, in quiet ones 0.8x); the numbers do not depend on the
# choice.
PROBE_EVERY = 8
KEEP = 4
_RECORD = {}
_RECORD_LOCK = threading.Lock()
# "split" or "one" sends every call there (the tests' comparison of the two engines)
FORCE = None


def workload_key(net, batch_size):
    """The key of :func:`choose` and :func:`record`: the network's shape, dtype, batch."""
    return (tuple(int(s) for s in net.sizes), np.dtype(net.dtype).name, int(batch_size))


def choose(key):
    """``"split"`` or ``"one"``: the engine for the next call of workload ``key``."""
    if FORCE is not None:
        return FORCE
    with _RECORD_LOCK:
        rec = _RECORD.setdefault(key, {"split": None, "one": None, "calls": 0})
        rec["calls"] += 1
        if rec["split"] is None:
            return "split"
        if rec["one"] is None:
            return "one"
        faster, slower = (("split", "one") if min(rec["split"]) <= min(rec["one"])
                          else ("one", "split"))
        return slower if rec["calls"] % PROBE_EVERY == 0 else faster


def record(key, engine, seconds_per_sample):
    """Note that ``engine`` took ``seconds_per_sample`` on workload ``key``."""
    with _RECORD_LOCK:
        rec = _RECORD.setdefault(key, {"split": None, "one": None, "calls": 0})
        rec[engine] = ((rec[engine] or [])[-(KEEP - 1):] + [seconds_per_sample])


class SplitPlan:
    """Each thread's parameter layout (``index``: where its parameters sit in ``theta``;
    its ``offsets``, ``mine`` and ``col0``) and the work buffer's layout ``pos``."""

    def __init__(self, net, batch_size):
        from fastnn.kernels.dense import TRANSPOSE_MAX

        sizes = [int(s) for s in net.sizes]
        n_layers = len(sizes) - 1
        full = [int(o) for o in net.offsets]
        self.sizes = np.asarray(sizes, np.int64)
        self.mine, self.col0, self.offsets, self.index = [], [], [], []
        for me in range(2):
            mine, col0 = [], []
            for layer in range(n_layers):
                width = sizes[layer + 1]
                first = _halves(width)[0] if layer < n_layers - 1 else width
                mine.append(first if me == 0 else width - first if layer < n_layers - 1
                            else width)
                col0.append(first if me == 1 and layer < n_layers - 1 else 0)
            index, offsets, count = [], [0] * (2 * n_layers), 0
            for layer in range(n_layers):  # weights: rows of this thread's columns
                offsets[layer] = count
                rows = np.arange(sizes[layer])[:, None] * sizes[layer + 1]
                index.append((full[layer] + rows + col0[layer]
                              + np.arange(mine[layer])[None, :]).ravel())
                count += sizes[layer] * mine[layer]
            for layer in range(n_layers):  # then biases
                offsets[n_layers + layer] = count
                index.append(full[n_layers + layer] + col0[layer] + np.arange(mine[layer]))
                count += mine[layer]
            self.mine.append(np.asarray(mine, np.int64))
            self.col0.append(np.asarray(col0, np.int64))
            self.offsets.append(np.asarray(offsets, np.int64))
            self.index.append(np.concatenate(index).astype(np.int64))
        cap = _round16(batch_size)
        halves = [_halves(width)[0] for width in sizes[1:-1]]
        rows_t = max([sizes[layer + 1] * halves[layer - 1] for layer in range(1, len(halves))]
                     + [0])
        n_params = max(len(i) for i in self.index)
        # kernels/split.py reads pos as: [cap, x, y, sw, z, delta, scratch, transposed
        # rows, saved state, then per hidden layer: half, whole, delta half, delta whole]
        blocks = [cap * sizes[0], cap * sizes[-1], cap, cap * sizes[-1], cap * sizes[-1],
                  TRANSPOSE_MAX, rows_t, 3 * n_params]
        for layer, half in enumerate(halves):
            blocks += [cap * half, cap * sizes[layer + 1]] * 2
        pos, at = [cap], 0
        for size in blocks:
            pos.append(at)
            at += _round16(size)
        self.pos = np.asarray(pos, np.int64)
        self.work_size = at


class SplitRunner:
    """A fit's two threads: their parameter buffers, work buffers and barrier flags."""

    def __init__(self, net, batch_size):
        self.net = net
        self.batch_size = batch_size
        self.plan = plan = SplitPlan(net, batch_size)
        self.theta, self.grad, self.m, self.v = (
            [aligned_empty(len(i), net.dtype) for i in plan.index] for _ in range(4))
        self.work = [aligned_empty(plan.work_size, net.dtype) for _ in range(2)]
        self.flags = np.zeros(24, np.int64)
        self.shared = np.zeros(4, np.float64)

    def epochs(self, x, y, sw, orders, hyper, t, opt_code, m, v, totals):
        """Trainer.epochs on two threads; ``theta``, ``m`` and ``v`` (the one-thread
        layouts) are read before and written after."""
        from fastnn.kernels import run_epochs_split
        from fastnn.kernels.split import ABORT

        net, plan = self.net, self.plan
        for me in range(2):
            np.take(net.theta, plan.index[me], out=self.theta[me])
            np.take(m, plan.index[me], out=self.m[me])
            np.take(v, plan.index[me], out=self.v[me])
        self.flags[:] = 0
        self.shared[:] = 0
        done, failed = [None, None], []
        other_totals = np.empty_like(totals)

        def run(me, out):
            done[me] = run_epochs_split(
                me, x, y, sw, orders, self.batch_size, self.theta[me], self.grad[me],
                self.m[me], self.v[me], plan.sizes, plan.mine[me], plan.col0[me],
                plan.offsets[me], plan.offsets[1 - me], net.acts, hyper, t, opt_code,
                self.work[me], plan.pos, out, self.theta[1 - me], self.work[1 - me],
                self.flags, self.shared)

        def second():
            try:
                run(1, other_totals)
            except BaseException as exc:  # noqa: BLE001 - re-raised by the first thread
                failed.append(exc)
                self.flags[ABORT] = 1

        # in the caller's context: NumPy's error state (np.errstate) holds there too, as it
        # matters where the kernels run as Python (NUMBA_DISABLE_JIT)
        worker = threading.Thread(target=contextvars.copy_context().run, args=(second,),
                                  name="fastnn-split", daemon=True)
        worker.start()
        try:
            run(0, totals)
        except BaseException as exc:
            self.flags[ABORT] = 1
            worker.join()
            if failed and _stopped_by_other(exc):  # the second thread's error is the cause
                raise failed[0] from None
            raise  # this one's: the second thread's is its consequence
        worker.join()
        if failed:
            raise failed[0]
        for me in range(2):  # the output layer is in both, alike
            net.theta[plan.index[me]] = self.theta[me]
            m[plan.index[me]] = self.m[me]
            v[plan.index[me]] = self.v[me]
        return int(done[0])


def _stopped_by_other(exc):
    # the error a thread raises at a barrier when the other has stopped
    from fastnn.kernels.split import ABORT_MESSAGE

    return type(exc) is RuntimeError and str(exc) == ABORT_MESSAGE
