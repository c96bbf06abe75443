"""WORK IN PROGRESS (branch split-engine): training on two threads, each owning half of
every hidden layer's units (kernels/split.py). Not wired into the API by default:
``FASTNN_SPLIT=1`` routes dense numba fits with at least one hidden layer through it."""

import threading

import numpy as np

from fastnn._network import aligned_empty

TRANSPOSE_MAX = 4096


def _round16(n):
    return (n + 15) // 16 * 16


class SplitPlan:
    """The two threads' parameter layouts (index maps into ``theta``) and work layout."""

    def __init__(self, net, batch_size):
        from fastnn.kernels.dense import TRANSPOSE_MAX as scratch

        sizes = [int(s) for s in net.sizes]
        n_layers = len(sizes) - 1
        full_offsets = [int(o) for o in net.offsets]
        self.sizes = np.asarray(sizes, np.int64)
        self.mine, self.col0, self.offsets, self.index = [], [], [], []
        for me in range(2):
            mine, col0 = [], []
            for layer in range(n_layers):
                width = sizes[layer + 1]
                if layer == n_layers - 1:
                    mine.append(width)
                    col0.append(0)
                else:
                    first_half = (width + 1) // 2
                    mine.append(first_half if me == 0 else width - first_half)
                    col0.append(0 if me == 0 else first_half)
            index, offsets = [], [0] * (2 * n_layers)
            count = 0
            for layer in range(n_layers):
                offsets[layer] = count
                rows = np.arange(sizes[layer])[:, None] * sizes[layer + 1]
                cols = col0[layer] + np.arange(mine[layer])[None, :]
                index.append((full_offsets[layer] + rows + cols).ravel())
                count += sizes[layer] * mine[layer]
            for layer in range(n_layers):
                offsets[n_layers + layer] = count
                index.append(full_offsets[n_layers + layer] + col0[layer]
                             + np.arange(mine[layer]))
                count += mine[layer]
            self.mine.append(np.asarray(mine, np.int64))
            self.col0.append(np.asarray(col0, np.int64))
            self.offsets.append(np.asarray(offsets, np.int64))
            self.index.append(np.concatenate(index).astype(np.int64))
        cap = _round16(batch_size)
        n_in, n_out = sizes[0], sizes[-1]
        halves = [(sizes[layer + 1] + 1) // 2 for layer in range(n_layers - 1)]
        rows_t = max([sizes[layer + 1] * halves[layer - 1]
                      for layer in range(1, n_layers - 1)] + [0])
        n_params = max(len(i) for i in self.index)
        blocks = [cap * n_in, cap * n_out, cap, cap * n_out, cap * n_out, scratch,
                  _round16(rows_t), _round16(3 * n_params)]
        pos, at = [cap], 0
        for size in blocks:
            pos.append(at)
            at += _round16(size)
        for layer in range(n_layers - 1):
            for size in (cap * halves[layer], cap * sizes[layer + 1],
                         cap * halves[layer], cap * sizes[layer + 1]):
                pos.append(at)
                at += _round16(size)
        self.pos = np.asarray(pos, np.int64)
        self.work_size = at


def applies(net, x):
    from fastnn._network import is_csr

    return net.backend == "numba" and not is_csr(x) and len(net.sizes) >= 3 and all(
        int(w) >= 2 for w in net.sizes[1:-1])


class SplitRunner:
    def __init__(self, net, batch_size):
        self.net = net
        self.batch_size = batch_size
        self.plan = SplitPlan(net, batch_size)
        dtype = net.dtype
        self.theta = [aligned_empty(len(i), dtype) for i in self.plan.index]
        self.grad = [aligned_empty(len(i), dtype) for i in self.plan.index]
        self.m = [aligned_empty(len(i), dtype) for i in self.plan.index]
        self.v = [aligned_empty(len(i), dtype) for i in self.plan.index]
        self.work = [aligned_empty(self.plan.work_size, dtype) for _ in range(2)]
        self.flags = np.zeros(24, np.int64)
        self.shared = np.zeros(4, np.float64)

    def epochs(self, x, y, sw, orders, hyper, t, opt_code, m, v, totals):
        from fastnn.kernels.split import ABORT, run_epochs_split

        net, plan = self.net, self.plan
        for me in range(2):
            np.take(net.theta, plan.index[me], out=self.theta[me])
            np.take(m, plan.index[me], out=self.m[me])
            np.take(v, plan.index[me], out=self.v[me])
        self.flags[:] = 0
        self.shared[:] = 0
        totals_other = np.empty_like(totals)
        done, failure = [None, None], []

        def run(me, out_totals):
            done[me] = run_epochs_split(
                me, x, y, sw, orders, self.batch_size, self.theta[me], self.grad[me],
                self.m[me], self.v[me], plan.sizes, plan.mine[me], plan.col0[me],
                plan.offsets[me], plan.offsets[1 - me], net.acts, hyper, t, opt_code,
                self.work[me], plan.pos, out_totals, self.theta[1 - me], self.work[1 - me],
                self.flags, self.shared)

        def worker():
            try:
                run(1, totals_other)
            except BaseException as exc:  # the main thread must not wait for it
                failure.append(exc)
                self.flags[ABORT] = 1

        thread = threading.Thread(target=worker, name="fastnn-split", daemon=True)
        thread.start()
        try:
            run(0, totals)
        except BaseException:
            self.flags[ABORT] = 1
            thread.join()
            raise
        thread.join()
        if failure:
            raise failure[0]
        if done[0] != done[1]:
            raise RuntimeError(f"split threads disagree: {done}")
        for me in range(2):
            net.theta[plan.index[me]] = self.theta[me]
            m[plan.index[me]] = self.m[me]
            v[plan.index[me]] = self.v[me]
        return int(done[0])
