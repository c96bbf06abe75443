"""The training epoch on two threads, split by units (fastnn._split runs it).

Each thread owns half of every hidden layer's units: their weight columns, biases,
gradients and optimizer state, in a parameter buffer of its own laid out as ``theta`` is
(its weights first, then its biases). Both hold the whole output layer and update it
alike, so that the loss and the output's delta come out of whole rows in each thread.
Every number comes out bit for bit the one-thread engine's (run_epochs), within the
rule of fastnn._split.in_split_order: hidden widths that are multiples of 32, so that each
half's column blocks are whole blocks of the register tiles and whole pairs of Adam's
float64 vectors, and every product within the tiles, where the one-thread engine takes
it too. ``delta @ w.T`` follows dense._grad_input's route on the whole weights (the
transposed copy, or BLAS on whole weight rows in the same column blocks), and the L2
term adds each thread's sums of squares as epoch._split_squares does (the one-thread
engine with ``HYPER_L2_HALVES`` set).

Per thread, besides run_epochs' arguments:
- ``mine[l]``, ``col0[l]``: this thread's width and first unit of layer l (the output
  layer: all of it, from 0);
- ``offsets`` / ``other_offsets``: where each layer's weights and biases start in this
  thread's / the other's parameter buffer;
- ``pos``: the work buffer's layout (fastnn._split.SplitPlan), the same in both threads;
- ``flags`` (int64, 24): the two barrier counters (at 0 and 8) and the abort flag;
- ``shared`` (float64, 4): per thread, its L2 partial sum (at ``me``) and whether its
  epoch diverged (at ``2 + me``).
"""

from ._codes import HYPER_ALPHA
from ._jit import (borrowed, dot_nt_cols_into, dot_nt_into, flat_view, greater, inline_ir,
                   kernel, lesser, load_acquire, rows_view, store_release, sum_squares16,
                   tile_dot_gate_into, yield_cpu)
from .activations import RELU, _activate_hidden, _derivative, _relu_derivative_inplace
from .dense import (SMALL_GEMM_BLOCK, SMALL_GEMM_MAX, TRANSPOSE_MAX, _grad_input, _grad_params,
                    _matmul_bias)
from .epoch import (_batch_loss, _epoch_finite, _gather_rows, _output_loss, _restore_state,
                    _save_state, _step)

ABORT = 16  # flags[ABORT] != 0: a thread stopped; the other raises at its next barrier
ABORT_MESSAGE = "fastnn: the other training thread stopped"
# Spins before a waiting thread yields its core (~10 us). A barrier takes ~0.1 us when the
# other thread runs on the other core; when both share one (other processes' threads, a
# host's slow phase), spinning on would hold the core the other thread needs until the
# scheduler's next tick.
SPINS = 4096


@inline_ir
def _barrier(flags, me, count):
    store_release(flags, 8 * me, count)
    spins = 0
    while load_acquire(flags, 8 * (1 - me)) < count:
        if load_acquire(flags, ABORT) != 0:
            raise RuntimeError(ABORT_MESSAGE)
        spins += 1
        if spins >= SPINS:
            yield_cpu()


@inline_ir
def _join(mine, other, first, full):
    # full = this layer's units in order: mine from unit first, the other's around them
    n_mine = mine.shape[1]
    n_other = other.shape[1]
    other_first = n_mine if first == 0 else 0
    for r in range(full.shape[0]):
        for j in range(n_mine):
            full[r, first + j] = mine[r, j]
        for j in range(n_other):
            full[r, other_first + j] = other[r, j]


@kernel
def run_epochs_split(me, x, y, sw, orders, batch_size, theta, grad, m, v, sizes, mine, col0,
                     offsets, other_offsets, acts, hyper, t, opt, work, pos, totals,
                     other_theta, other_work, flags, shared):
    """Thread ``me``'s part of run_epochs (kernels/epoch.py), split by units: the same
    epochs, totals and return value. Raises RuntimeError at a barrier where the other
    thread has stopped (``flags[ABORT]`` set)."""
    x, y, sw, orders, theta, grad = (borrowed(x), borrowed(y), borrowed(sw), borrowed(orders),
                                     borrowed(theta), borrowed(grad))
    m, v, sizes, mine, col0, offsets = (borrowed(m), borrowed(v), borrowed(sizes),
                                        borrowed(mine), borrowed(col0), borrowed(offsets))
    other_offsets, acts, hyper, work, pos, totals = (
        borrowed(other_offsets), borrowed(acts), borrowed(hyper), borrowed(work),
        borrowed(pos), borrowed(totals))
    other_theta, other_work, flags, shared = (borrowed(other_theta), borrowed(other_work),
                                              borrowed(flags), borrowed(shared))
    n_layers = sizes.shape[0] - 1
    out_layer = n_layers - 1
    n_in = sizes[0]
    n_out = sizes[n_layers]
    # pos: [cap, x, y, sw, z, delta out, scratch, transposed rows, saved, then per
    # hidden layer: half, full, delta half, delta full]
    scratch = work[pos[6] : pos[7]]
    saved = work[pos[8] : pos[8] + 3 * theta.shape[0]]
    n_weights = offsets[n_layers]
    alpha = hyper[HYPER_ALPHA]
    count = 0
    n = orders.shape[1]
    for epoch in range(orders.shape[0]):
        _save_state(theta, m, v, saved)
        total = 0.0
        for start in range(0, n, batch_size):
            nb = lesser(batch_size, n - start)
            xb = rows_view(work, pos[1], nb, n_in)
            yb = rows_view(work, pos[2], nb, n_out)
            swb = work[pos[3] : pos[3] + nb]
            _gather_rows(x, y, sw, orders[epoch], start, xb, yb, swb)
            if alpha != 0.0:  # this thread's hidden weights; the output layer's below
                sq = 0.0
                for layer in range(out_layer):
                    sq += sum_squares16(theta, offsets[layer], sizes[layer], mine[layer],
                                        mine[layer])
                shared[me] = sq
            a_in = xb
            for layer in range(out_layer):  # hidden layers: this thread's units
                base = 9 + 4 * layer
                w = rows_view(theta, offsets[layer], sizes[layer], mine[layer])
                b = theta[offsets[n_layers + layer] : offsets[n_layers + layer] + mine[layer]]
                h = rows_view(work, pos[base], nb, mine[layer])
                relu = acts[layer] == RELU
                _matmul_bias(a_in, w, b, relu, h)
                if not relu:
                    _activate_hidden(acts[layer], h)
                count += 1
                _barrier(flags, me, count)
                full = rows_view(work, pos[base + 1], nb, sizes[layer + 1])
                _join(h, rows_view(other_work, pos[base], nb, sizes[layer + 1] - mine[layer]),
                      col0[layer], full)
                a_in = full
            w_out = rows_view(theta, offsets[out_layer], sizes[out_layer], n_out)
            b_out = theta[offsets[n_layers + out_layer] : offsets[n_layers + out_layer] + n_out]
            z = rows_view(work, pos[4], nb, n_out)
            _matmul_bias(a_in, w_out, b_out, False, z)
            delta = rows_view(work, pos[5], nb, n_out)
            loss, sw_sum = _output_loss(acts[out_layer], z, yb, swb, hyper, delta)
            sq_first = 0.0
            sq_second = 0.0
            sq_out = 0.0
            if alpha != 0.0:  # the halves in thread order (read before the other's next
                # batch writes them), then the output layer's
                sq_first = shared[0]
                sq_second = shared[1]
                sq_out = sum_squares16(theta, offsets[out_layer], 1, 0,
                                       n_weights - offsets[out_layer])
            denom = theta.dtype.type(sw_sum)
            alpha_t = theta.dtype.type(alpha)
            # the output layer (both threads alike), then this thread's units below it
            grad_w = rows_view(grad, offsets[out_layer], sizes[out_layer], n_out)
            grad_b = grad[offsets[n_layers + out_layer] : offsets[n_layers + out_layer] + n_out]
            _grad_params(a_in, delta, w_out, alpha_t, denom, False, grad_w, grad_b)
            last = out_layer - 1
            base = 9 + 4 * last
            below = rows_view(work, pos[base + 2], nb, mine[last])
            rows = rows_view(theta, offsets[out_layer] + col0[last] * n_out, mine[last], n_out)
            relu = acts[last] == RELU
            _grad_input(delta, rows, scratch, rows_view(work, pos[base], nb, mine[last]), relu,
                        below)
            if not relu:
                _derivative(acts[last], rows_view(work, pos[base], nb, mine[last]), below,
                            below)
            for layer in range(last, -1, -1):
                base = 9 + 4 * layer
                d_mine = rows_view(work, pos[base + 2], nb, mine[layer])
                if layer == 0:
                    a_prev = xb
                else:
                    a_prev = rows_view(work, pos[base - 3], nb, sizes[layer])
                w = rows_view(theta, offsets[layer], sizes[layer], mine[layer])
                grad_w = rows_view(grad, offsets[layer], sizes[layer], mine[layer])
                b0 = offsets[n_layers + layer]
                _grad_params(a_prev, d_mine, w, alpha_t, denom, False, grad_w,
                             grad[b0 : b0 + mine[layer]])
                if layer > 0:
                    count += 1
                    _barrier(flags, me, count)
                    width = sizes[layer + 1]
                    n_other = width - mine[layer]
                    d_full = rows_view(work, pos[base + 3], nb, width)
                    _join(d_mine, rows_view(other_work, pos[base + 2], nb, n_other),
                          col0[layer], d_full)
                    # rows of this layer's weights for my units of the layer below, all
                    # columns (mine and the other's), transposed
                    k0 = col0[layer - 1]
                    k_n = mine[layer - 1]
                    w_other = rows_view(other_theta, other_offsets[layer], sizes[layer],
                                        n_other)
                    other_first = mine[layer] if col0[layer] == 0 else 0
                    gate = rows_view(work, pos[base - 4], nb, k_n)
                    d_below = rows_view(work, pos[base - 2], nb, k_n)
                    relu = acts[layer - 1] == RELU
                    if sizes[layer] * width <= TRANSPOSE_MAX:
                        # as dense._grad_input: a transposed copy, my rows of it
                        w_t = rows_view(work, pos[7], width, k_n)
                        for j in range(mine[layer]):
                            for k in range(k_n):
                                w_t[col0[layer] + j, k] = w[k0 + k, j]
                        for j in range(n_other):
                            for k in range(k_n):
                                w_t[other_first + j, k] = w_other[k0 + k, j]
                        # in the tiles, as the whole product (fastnn._split.in_split_order)
                        tile_dot_gate_into(d_full, w_t, gate, relu, d_below)
                    else:
                        # as dense._grad_input: BLAS on whole weight rows, mine of them
                        w_rows = rows_view(work, pos[7], k_n, width)
                        for k in range(k_n):
                            for j in range(mine[layer]):
                                w_rows[k, col0[layer] + j] = w[k0 + k, j]
                            for j in range(n_other):
                                w_rows[k, other_first + j] = w_other[k0 + k, j]
                        if width >= 32 and nb * sizes[layer] * width <= SMALL_GEMM_MAX:
                            step = greater(1, SMALL_GEMM_BLOCK // nb)
                            for start in range(0, sizes[layer], step):
                                lo = greater(start, k0)
                                hi = lesser(lesser(start + step, sizes[layer]), k0 + k_n)
                                if lo < hi:
                                    dot_nt_cols_into(d_full, w_rows, d_below, lo - k0, hi - k0)
                        else:
                            dot_nt_into(d_full, w_rows, d_below)
                        if relu:
                            _relu_derivative_inplace(flat_view(gate), flat_view(d_below))
                    if not relu:
                        _derivative(acts[layer - 1], gate, d_below, d_below)
            count += 1  # the other has read my weights and my halves: update them
            _barrier(flags, me, count)
            total += _batch_loss(loss, alpha, sq_first, sq_second, sq_out, sw_sum) * nb
            t += 1
            _step(opt, theta, grad, m, v, hyper, t, n_weights, sw_sum)
        totals[epoch] = total
        shared[2 + me] = 0.0 if _epoch_finite(opt, total, theta, m, v, hyper) else 1.0
        count += 1
        _barrier(flags, me, count)
        diverged = shared[2] != 0.0 or shared[3] != 0.0
        count += 1  # both have read the verdicts before the next epoch writes them
        _barrier(flags, me, count)
        if diverged:
            _restore_state(theta, m, v, saved)
            return epoch
    return orders.shape[0]
