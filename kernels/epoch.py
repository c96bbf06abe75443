"""Whole-network kernels: the fused training epoch, loss + gradients, and predict.

The network reaches these kernels as plain arrays:

- ``sizes`` (int64, n_layers + 1): widths, input first.
- ``offsets`` (int64, 2 * n_layers): where layer l's ``w`` (``offsets[l]``) and ``b``
  (``offsets[n_layers + l]``) start in the flat buffer ``theta``. All weights come
  first, then all biases (scikit-learn's packing order, which its L-BFGS path uses).
- ``acts`` (int64, n_layers): activation code per layer (``activations.IDENTITY``...);
  hidden layers take IDENTITY, RELU, LOGISTIC or TANH only (``fastnn._network.Network``
  refuses the others there). The last one is the output and fixes the loss: SOFTMAX ->
  categorical cross-entropy, LOGISTIC -> binary cross-entropy, EXP -> half Poisson
  deviance, IDENTITY -> squared error.
- ``hyper`` (float64): ``[lr, momentum, beta_1, beta_2, epsilon, alpha, gscale,
  clip_eps]``; see ``HYPER_*`` below.

Per-layer codes instead of one kernel per architecture: a single compiled epoch serves
every network, so the first fit in a fresh process loads one cache entry per dtype.
"""

import numpy as np

from ._codes import (
    HYPER_ALPHA,
    HYPER_BETA_1,
    HYPER_BETA_2,
    HYPER_CLIP_EPS,
    HYPER_EPSILON,
    HYPER_GSCALE,
    HYPER_L2_HALVES,
    HYPER_LR,
    HYPER_MOMENTUM,
    OPT_ADAM,
    OPT_NESTEROV,
)
from ._jit import (borrowed, flat_view, greater, inline_exact, inline_ir, kernel, lesser,
                   rows_view, sum_squares16)
from .activations import EXP, LOGISTIC, RELU, SOFTMAX, _activate, _activate_hidden, _derivative
from .dense import (
    TRANSPOSE_MAX,
    _csr_grad_params,
    _csr_matmul_bias,
    _grad_input,
    _grad_params,
    _matmul_bias,
)
from .loss import _exp_poisson_rows, _mse_rows, _sigmoid_bce_rows, _softmax_xent_rows
from .optim import _adam, _flush_subnormal_state, _nesterov, _sgd


@inline_ir
def _forward(x, first, theta, sizes, offsets, acts, work, cap, out):
    # Layers first... onwards, x being layer first's input: 0 for the network's input,
    # 1 when a sparse input's first layer has run (its activation at work's start).
    # Hidden activations go to work (layer l at rows*cols blocks of capacity cap);
    # the last layer's z goes to out; out is left as the *pre-activation*.
    n_layers = sizes.shape[0] - 1
    nb = x.shape[0]
    a_in = x
    pos = 0
    for layer in range(first):
        pos += cap * sizes[layer + 1]
    for layer in range(first, n_layers):
        n_in = sizes[layer]
        n_out = sizes[layer + 1]
        w = rows_view(theta, offsets[layer], n_in, n_out)
        b = theta[offsets[n_layers + layer] : offsets[n_layers + layer] + n_out]
        if layer == n_layers - 1:
            z = out
        else:
            z = rows_view(work, pos, nb, n_out)
            pos += cap * n_out
        hidden_relu = layer < n_layers - 1 and acts[layer] == RELU
        _matmul_bias(a_in, w, b, hidden_relu, z)
        if layer < n_layers - 1 and not hidden_relu:
            _activate_hidden(acts[layer], z)
        a_in = z


@inline_ir
def _output_loss(out_code, z, y, sw, hyper, delta):
    # The output layer's summed weighted loss and its delta (from the pre-activation z),
    # and the batch's sum of sample weights
    if out_code == SOFTMAX:
        loss = _softmax_xent_rows(z, y, sw, hyper[HYPER_CLIP_EPS], delta)
    elif out_code == LOGISTIC:
        loss = _sigmoid_bce_rows(z, y, sw, hyper[HYPER_CLIP_EPS], delta)
    elif out_code == EXP:
        loss = _exp_poisson_rows(z, y, sw, delta)
    else:
        loss = _mse_rows(z, y, sw, hyper[HYPER_GSCALE], delta)
    sw_sum = 0.0
    for i in range(sw.shape[0]):
        sw_sum += sw[i]
    return loss, sw_sum


@inline_ir
def _gather_rows(x, y, sw, order, start, xb, yb, swb):
    # batch rows order[start : start + len(swb)] of x, y and sw, into xb, yb and swb
    for r in range(swb.shape[0]):
        src = order[start + r]
        for k in range(xb.shape[1]):
            xb[r, k] = x[src, k]
        for j in range(yb.shape[1]):
            yb[r, j] = y[src, j]
        swb[r] = sw[src]


@inline_ir
def _split_squares(theta, sizes, offsets):
    # the weights' sums of squares in the split's order: each hidden layer's first halves
    # of its columns (thread 0's units), its second halves, the output layer's weights
    n_layers = sizes.shape[0] - 1
    first = 0.0
    second = 0.0
    for layer in range(n_layers - 1):
        width = sizes[layer + 1]
        half = (width + 1) // 2
        first += sum_squares16(theta, offsets[layer], sizes[layer], width, half)
        second += sum_squares16(theta, offsets[layer] + half, sizes[layer], width,
                                width - half)
    out = offsets[n_layers - 1]
    return first, second, sum_squares16(theta, out, 1, 0, offsets[n_layers] - out)


@inline_exact
def _batch_loss(loss, alpha, sq_first, sq_second, sq_out, sw_sum):
    # A batch's mean loss plus its L2 term from the weights' sums of squares, as written:
    # the split (kernels/split.py) and the one-thread engine must round it alike, and
    # with reassociation LLVM regrouped the same expression differently in the two.
    return loss / sw_sum + (0.5 * alpha * ((sq_first + sq_second) + sq_out)) / sw_sum


@inline_ir
def _loss_and_grad(x, first, y, sw, theta, sizes, offsets, acts, hyper, work, cap, scale,
                   grad):
    # Mean loss of one batch (plus the L2 term) and its gradient into grad; with scale
    # False, grad gets the raw sums of _grad_params instead. Returns (loss, sum(sw),
    # delta of layer first). With first = 1, x is the first layer's activation (a sparse
    # input's, at work's start), and the caller adds that layer's gradient from delta.
    # work: [hidden activations | output z | delta ping | delta pong], capacity cap rows,
    # then TRANSPOSE_MAX elements of scratch for _grad_input.
    n_layers = sizes.shape[0] - 1
    nb = x.shape[0]
    n_out = sizes[n_layers]
    total, widest = _layer_widths(sizes)
    hidden = total - n_out
    z_out = rows_view(work, cap * hidden, nb, n_out)
    ping = cap * total
    pong = ping + cap * widest
    scratch_pos = cap * (total + 2 * widest)
    scratch = work[scratch_pos : scratch_pos + TRANSPOSE_MAX]
    _forward(x, first, theta, sizes, offsets, acts, work, cap, z_out)

    delta = rows_view(work, ping, nb, n_out)
    loss, sw_sum = _output_loss(acts[n_layers - 1], z_out, y, sw, hyper, delta)
    alpha = hyper[HYPER_ALPHA]
    sq_first = 0.0
    sq_second = 0.0
    sq_out = 0.0
    if alpha != 0.0:
        if hyper[HYPER_L2_HALVES] != 0.0:
            sq_first, sq_second, sq_out = _split_squares(theta, sizes, offsets)
        else:
            # all weights come first in theta: one flat loop (per layer, the short ranges
            # with their array-read bounds ran as a scalar chain, a tenth of a W-small
            # batch)
            for p in range(offsets[n_layers]):
                sq_first += theta[p] * theta[p]
    denom = theta.dtype.type(sw_sum)
    alpha_t = theta.dtype.type(alpha)

    # Backward; hidden layer l's activation sits at offset cap * sum(sizes[1:l+1]).
    a_pos = cap * hidden
    for layer in range(n_layers - 1, first - 1, -1):
        n_in = sizes[layer]
        width = sizes[layer + 1]
        w = rows_view(theta, offsets[layer], n_in, width)
        grad_w = rows_view(grad, offsets[layer], n_in, width)
        b0 = offsets[n_layers + layer]
        grad_b = grad[b0 : b0 + width]
        if layer == first:
            a_in = x
        else:
            a_pos -= cap * n_in
            a_in = rows_view(work, a_pos, nb, n_in)
        _grad_params(a_in, delta, w, alpha_t, denom, scale, grad_w, grad_b)
        if layer > 0:
            delta_in = rows_view(work, pong, nb, n_in)
            relu_in = acts[layer - 1] == RELU
            _grad_input(delta, w, scratch, a_in, relu_in, delta_in)
            if not relu_in:
                _derivative(acts[layer - 1], a_in, delta_in, delta_in)
            ping, pong = pong, ping
            delta = delta_in
    return _batch_loss(loss, alpha, sq_first, sq_second, sq_out, sw_sum), sw_sum, delta


def _layer_widths_of(sizes):
    # (sum of the widths after the input, the widest of them): the work buffer's layout
    # per row, shared by workspace_size (in Python) and _loss_and_grad, run_epochs and
    # predict_forward (compiled, as _layer_widths)
    total = 0
    widest = 0
    for layer in range(1, sizes.shape[0]):
        total += sizes[layer]
        if sizes[layer] > widest:
            widest = sizes[layer]
    return total, widest


def _n_params(sizes):
    count = 0
    for layer in range(sizes.shape[0] - 1):
        count += (sizes[layer] + 1) * sizes[layer + 1]
    return count


def _padded_rows_of(rows):
    # Row capacity of the work buffer's blocks: a multiple of 16, so that each block
    # (rows x any width) starts on a 64-byte line in float32 and float64 alike, as the
    # buffer itself does (fastnn._network.ALIGNMENT).
    return (rows + 15) // 16 * 16


_layer_widths = inline_ir(_layer_widths_of)
_padded_rows = inline_ir(_padded_rows_of)


# |v| < inf is false for NaN and for both infinities: compares keep their IEEE meaning
# under FASTMATH (no nnan, no ninf). One pass with no exit inside, which LLVM vectorizes;
# a return at the first non-finite element kept the loop scalar: over W-inferB's 10k
# float32 rows 1.65 ms instead of 5.9 (float64 4-6 ms instead of 7-9.5).
@inline_ir
def _finite_1d(a):
    inf = a.dtype.type(np.inf)
    bad = 0
    for p in range(a.shape[0]):
        bad |= not (abs(a[p]) < inf)
    return bad == 0


@inline_ir
def _finite_rows(x):
    return _finite_1d(flat_view(x))  # kernels take C-contiguous arrays only


def workspace_size(sizes, rows, sparse=False):
    """Length of the ``work`` buffer that :func:`run_epochs` and :func:`loss_grad` need
    (with ``sparse``, their CSR twins, which gather no input rows).

    Plain Python (called once per fit): as a kernel it was one more compile in a cold
    start and one more cache entry to load in a warm one.

    Parameters
    ----------
    sizes : ndarray of int64, shape (n_layers + 1,)
    rows : int
        The largest batch the buffer must hold.
    sparse : bool
    """
    sizes = np.asarray(sizes)
    rows = _padded_rows_of(rows)
    total, widest = _layer_widths_of(sizes)
    x_cols = 0 if sparse else sizes[0]
    # activations + output z + two delta buffers + gathered x, y and sample weights, per
    # row; the transposed-weights scratch; then the start-of-epoch copy of theta, m and v
    # that a diverging epoch restores
    return int(rows * (total + 2 * widest + x_cols + sizes[sizes.shape[0] - 1] + 1)
               + TRANSPOSE_MAX + 3 * _n_params(sizes))


@inline_ir
def _csr_loss_and_grad(data, indices, indptr, rows, y, sw, theta, sizes, offsets, acts,
                       hyper, work, cap, scale, grad):
    # _loss_and_grad for the batch of CSR rows `rows`: the first layer from the stored
    # values into work's start (where _forward keeps it), the rest dense.
    n_layers = sizes.shape[0] - 1
    n_in = sizes[0]
    width = sizes[1]
    w = rows_view(theta, offsets[0], n_in, width)
    b0 = offsets[n_layers]
    z0 = rows_view(work, 0, rows.shape[0], width)  # with no hidden layer, the output z
    hidden_relu = n_layers > 1 and acts[0] == RELU
    _csr_matmul_bias(data, indices, indptr, rows, w, theta[b0 : b0 + width], hidden_relu, z0)
    if n_layers > 1 and not hidden_relu:
        _activate_hidden(acts[0], z0)
    loss, sw_sum, delta = _loss_and_grad(z0, 1, y, sw, theta, sizes, offsets, acts, hyper,
                                         work, cap, scale, grad)
    _csr_grad_params(data, indices, indptr, rows, delta, w, theta.dtype.type(hyper[HYPER_ALPHA]),
                     theta.dtype.type(sw_sum), scale, rows_view(grad, offsets[0], n_in, width),
                     grad[b0 : b0 + width])
    return loss, sw_sum


@kernel
def loss_grad(x, y, sw, theta, sizes, offsets, acts, hyper, work, grad):
    """Mean loss over all of ``x`` and its gradient, in one pass.

    Parameters
    ----------
    x : ndarray of shape (n_samples, sizes[0])
    y : ndarray of shape (n_samples, sizes[-1])
        One-hot classes or regression targets.
    sw : ndarray of shape (n_samples,)
        Sample weights; the loss is ``sum(sw * l) / sum(sw)`` plus
        ``0.5 * alpha * ||W||^2 / sum(sw)``.
    theta : ndarray of shape (n_params,)
    sizes, offsets, acts, hyper : see the module docstring.
    work : ndarray of shape (workspace_size(sizes, n_samples),)
        Scratch, overwritten.
    grad : ndarray of shape (n_params,)
        Overwritten with dL/dtheta.

    Returns
    -------
    float
    """
    return _loss_and_grad(borrowed(x), 0, borrowed(y), borrowed(sw), borrowed(theta),
                          borrowed(sizes), borrowed(offsets), borrowed(acts), borrowed(hyper),
                          borrowed(work), _padded_rows(x.shape[0]), True, borrowed(grad))[0]


@kernel
def loss_grad_csr(data, indices, indptr, y, sw, theta, sizes, offsets, acts, hyper, work,
                  grad):
    """:func:`loss_grad` of the CSR matrix ``(data, indices, indptr)``.

    Parameters
    ----------
    data, indices, indptr : ndarray
        The rows of ``x`` in CSR form (``indices`` and ``indptr`` int64); ``x`` has
        ``len(indptr) - 1`` rows of ``sizes[0]`` columns.
    y, sw, theta, sizes, offsets, acts, hyper, grad : as in :func:`loss_grad`.
    work : ndarray of shape (workspace_size(sizes, n_samples, sparse=True),)

    Returns
    -------
    float
    """
    n = indptr.shape[0] - 1
    return _csr_loss_and_grad(borrowed(data), borrowed(indices), borrowed(indptr),
                              np.arange(n), borrowed(y), borrowed(sw), borrowed(theta),
                              borrowed(sizes), borrowed(offsets), borrowed(acts),
                              borrowed(hyper), borrowed(work), _padded_rows(n), True,
                              borrowed(grad))[0]


@inline_ir
def _save_state(theta, m, v, saved):
    # Element loops, not slice assignment: that one compiles numba's shape-mismatch
    # error path (string formatting), seconds of cold compile.
    n_params = theta.shape[0]
    for p in range(n_params):
        saved[p] = theta[p]
        saved[n_params + p] = m[p]
        saved[2 * n_params + p] = v[p]


@inline_ir
def _step(opt, theta, grad, m, v, hyper, t, n_weights, sw_sum):
    # grad holds raw sums: the update step scales them as it streams theta
    lr = hyper[HYPER_LR]
    alpha = hyper[HYPER_ALPHA]
    if opt == OPT_ADAM:
        _adam(theta, grad, m, v, lr, hyper[HYPER_BETA_1], hyper[HYPER_BETA_2],
              hyper[HYPER_EPSILON], t, n_weights, alpha, sw_sum)
    elif opt == OPT_NESTEROV:
        _nesterov(theta, grad, m, lr, hyper[HYPER_MOMENTUM], n_weights, alpha, sw_sum)
    else:
        _sgd(theta, grad, m, lr, hyper[HYPER_MOMENTUM], n_weights, alpha, sw_sum)


@inline_ir
def _epoch_diverged(opt, total, theta, m, v, hyper, saved):
    # The end of an epoch: subnormal state flushed; a non-finite loss, theta or optimizer
    # state undoes the epoch (True). An overflowed Adam moment (v = g * g = inf from a
    # huge but finite gradient) leaves loss and theta finite but freezes its weight for
    # good (m / sqrt(inf) = 0): training would stall without a word.
    if _epoch_finite(opt, total, theta, m, v, hyper):
        return False
    _restore_state(theta, m, v, saved)
    return True


@inline_ir
def _epoch_finite(opt, total, theta, m, v, hyper):
    # subnormal state flushed; whether the loss, theta and optimizer state are finite
    _flush_subnormal_state(opt, m, v, hyper[HYPER_EPSILON])
    return total - total == 0.0 and _finite_1d(theta) and _finite_1d(m) and _finite_1d(v)


@inline_ir
def _restore_state(theta, m, v, saved):
    # _save_state undone
    n_params = theta.shape[0]
    for p in range(n_params):
        theta[p] = saved[p]
        m[p] = saved[n_params + p]
        v[p] = saved[2 * n_params + p]


@kernel
def run_epochs(x, y, sw, orders, batch_size, theta, grad, m, v, sizes, offsets, acts, hyper,
               t, opt, work, totals):
    """Training epochs, one per row of ``orders``: every mini-batch's forward, loss,
    backward and update, with Python entered neither between batches nor between epochs.

    Epoch ``e``'s batch ``k`` holds samples ``orders[e, k * batch_size : (k + 1) *
    batch_size]``; the last batch may be shorter. An epoch whose loss, weights or state
    come out NaN or infinite is undone: ``theta``, ``m`` and ``v`` go back to their values at its
    start, and no later epoch runs. After each epoch, entries of ``m`` and ``v`` below
    the smallest normal number are set to 0 (Adam's where ``epsilon`` is at least
    ``ADAM_EPS_FLOOR``; kernels/_codes.py says why).

    Parameters
    ----------
    x, y, sw : as in :func:`loss_grad`, for the whole training set.
    orders : ndarray of int64, shape (n_epochs, n_batch_samples)
        Sample indices in visiting order, one row per epoch (permutations, or ``arange``
        rows for no shuffle). Every entry must be in ``[0, n_samples)``; the API
        guarantees it.
    batch_size : int
    theta : ndarray of shape (n_params,)
        Updated in place.
    grad : ndarray of shape (n_params,)
        Scratch for the batch gradient.
    m, v : ndarray of shape (n_params,)
        Optimizer state, updated in place: velocity (SGD, Nesterov) in ``m``, or Adam's
        first and second moments.
    sizes, offsets, acts, hyper : see the module docstring.
    t : int
        Optimizer steps taken before the first epoch (Adam's bias correction uses t + 1...).
    opt : int
        ``OPT_SGD``, ``OPT_NESTEROV`` or ``OPT_ADAM``.
    work : ndarray of shape (workspace_size(sizes, batch_size),)
    totals : ndarray of float64, shape (n_epochs,)
        ``totals[e]``: epoch ``e``'s sum over batches of (batch mean loss x batch length),
        as scikit-learn accumulates it; divide by ``n_batch_samples`` for the epoch loss.

    Returns
    -------
    int
        The number of epochs completed with finite loss and weights: ``n_epochs``, or the
        index of the epoch that diverged (its total is in ``totals`` all the same).
    """
    x, y, sw, orders, theta, grad = (borrowed(x), borrowed(y), borrowed(sw), borrowed(orders),
                                     borrowed(theta), borrowed(grad))
    m, v, sizes, offsets, acts, hyper, work, totals = (
        borrowed(m), borrowed(v), borrowed(sizes), borrowed(offsets), borrowed(acts),
        borrowed(hyper), borrowed(work), borrowed(totals))
    n_layers = sizes.shape[0] - 1
    n_in = sizes[0]
    n_out = sizes[n_layers]
    cap = _padded_rows(batch_size)
    widths, widest = _layer_widths(sizes)
    x_pos = cap * (widths + 2 * widest) + TRANSPOSE_MAX  # after _loss_and_grad's part
    y_pos = x_pos + cap * n_in
    sw_pos = y_pos + cap * n_out
    saved = work[sw_pos + cap : sw_pos + cap + 3 * theta.shape[0]]
    n_weights = offsets[n_layers]  # all weights come first in theta, then all biases
    n = orders.shape[1]
    for epoch in range(orders.shape[0]):
        _save_state(theta, m, v, saved)
        total = 0.0
        for start in range(0, n, batch_size):
            nb = lesser(batch_size, n - start)
            xb = rows_view(work, x_pos, nb, n_in)
            yb = rows_view(work, y_pos, nb, n_out)
            swb = work[sw_pos : sw_pos + nb]
            _gather_rows(x, y, sw, orders[epoch], start, xb, yb, swb)
            loss, sw_sum, _ = _loss_and_grad(xb, 0, yb, swb, theta, sizes, offsets, acts,
                                             hyper, work, cap, False, grad)
            total += loss * nb
            t += 1
            _step(opt, theta, grad, m, v, hyper, t, n_weights, sw_sum)
        totals[epoch] = total
        if _epoch_diverged(opt, total, theta, m, v, hyper, saved):
            return epoch
    return orders.shape[0]


@kernel
def run_epochs_csr(data, indices, indptr, y, sw, orders, batch_size, theta, grad, m, v, sizes,
                   offsets, acts, hyper, t, opt, work, totals):
    """:func:`run_epochs` of the CSR matrix ``(data, indices, indptr)``: a batch's first
    layer reads the stored values of its rows in place, nothing is densified.

    Parameters
    ----------
    data, indices, indptr : ndarray
        The rows of ``x`` in CSR form (``indices`` and ``indptr`` int64).
    work : ndarray of shape (workspace_size(sizes, batch_size, sparse=True),)
    y, sw, orders, batch_size, theta, grad, m, v, sizes, offsets, acts, hyper, t, opt, totals
        As in :func:`run_epochs`.

    Returns
    -------
    int
        As :func:`run_epochs`.
    """
    data, indices, indptr, y, sw, orders = (borrowed(data), borrowed(indices),
                                            borrowed(indptr), borrowed(y), borrowed(sw),
                                            borrowed(orders))
    theta, grad, m, v, sizes, offsets, acts, hyper, work, totals = (
        borrowed(theta), borrowed(grad), borrowed(m), borrowed(v), borrowed(sizes),
        borrowed(offsets), borrowed(acts), borrowed(hyper), borrowed(work), borrowed(totals))
    n_layers = sizes.shape[0] - 1
    n_out = sizes[n_layers]
    cap = _padded_rows(batch_size)
    widths, widest = _layer_widths(sizes)
    y_pos = cap * (widths + 2 * widest) + TRANSPOSE_MAX  # after _loss_and_grad's part
    sw_pos = y_pos + cap * n_out
    saved = work[sw_pos + cap : sw_pos + cap + 3 * theta.shape[0]]
    n_weights = offsets[n_layers]
    n = orders.shape[1]
    for epoch in range(orders.shape[0]):
        _save_state(theta, m, v, saved)
        total = 0.0
        for start in range(0, n, batch_size):
            nb = lesser(batch_size, n - start)
            yb = rows_view(work, y_pos, nb, n_out)
            swb = work[sw_pos : sw_pos + nb]
            rows = orders[epoch, start : start + nb]
            for r in range(nb):
                for j in range(n_out):
                    yb[r, j] = y[rows[r], j]
                swb[r] = sw[rows[r]]
            loss, sw_sum = _csr_loss_and_grad(data, indices, indptr, rows, yb, swb, theta,
                                              sizes, offsets, acts, hyper, work, cap, False,
                                              grad)
            total += loss * nb
            t += 1
            _step(opt, theta, grad, m, v, hyper, t, n_weights, sw_sum)
        totals[epoch] = total
        if _epoch_diverged(opt, total, theta, m, v, hyper, saved):
            return epoch
    return orders.shape[0]


# Rows per block when predicting: bounds the scratch predict_forward allocates.
PREDICT_BLOCK = 1024


@kernel
def predict_forward(x, theta, sizes, offsets, acts, out):
    """Network output (probabilities or regression values) for every row of ``x``.

    Rows run in blocks of up to ``PREDICT_BLOCK``, their hidden activations in scratch
    that each call allocates for itself: callers share weights, never scratch, so one
    model or compiled predictor serves several threads at once (the kernel releases the
    GIL).

    Parameters
    ----------
    x : ndarray of shape (n_samples, sizes[0])
    theta, sizes, offsets, acts : see the module docstring.
    out : ndarray of shape (n_samples, sizes[-1])
        Overwritten with the output activation.

    Returns
    -------
    bool
        False, with ``out`` untouched, when ``x`` holds a NaN or an infinity: the check
        rides along in the call, so a one-row predictor pays one dispatch, not two.
    """
    if not _finite_rows(x):
        return False
    x, theta, sizes, offsets, acts, out = (borrowed(x), borrowed(theta), borrowed(sizes),
                                           borrowed(offsets), borrowed(acts), borrowed(out))
    n_layers = sizes.shape[0] - 1
    total, _ = _layer_widths(sizes)
    cap = greater(1, lesser(x.shape[0], PREDICT_BLOCK))
    work = np.empty(greater(1, cap * (total - sizes[n_layers])), theta.dtype)
    out_code = acts[n_layers - 1]
    for start in range(0, x.shape[0], cap):
        stop = lesser(start + cap, x.shape[0])
        z = out[start:stop]
        _forward(x[start:stop], 0, theta, sizes, offsets, acts, work, cap, z)
        _activate(out_code, z, z)
    return True


@kernel
def predict_forward_csr(data, indices, indptr, theta, sizes, offsets, acts, out):
    """:func:`predict_forward` of the CSR matrix ``(data, indices, indptr)``.

    Parameters
    ----------
    data, indices, indptr : ndarray
        The rows of ``x`` in CSR form (``indices`` and ``indptr`` int64).
    theta, sizes, offsets, acts, out : as in :func:`predict_forward`.

    Returns
    -------
    bool
        False, with ``out`` untouched, when ``data`` holds a NaN or an infinity.
    """
    if not _finite_1d(data):
        return False
    data, indices, indptr, theta, sizes, offsets, acts, out = (
        borrowed(data), borrowed(indices), borrowed(indptr), borrowed(theta), borrowed(sizes),
        borrowed(offsets), borrowed(acts), borrowed(out))
    n_layers = sizes.shape[0] - 1
    n = indptr.shape[0] - 1
    total, _ = _layer_widths(sizes)
    cap = greater(1, lesser(n, PREDICT_BLOCK))
    work = np.empty(greater(1, cap * (total - sizes[n_layers])), theta.dtype)
    width = sizes[1]
    w = rows_view(theta, offsets[0], sizes[0], width)
    b = theta[offsets[n_layers] : offsets[n_layers] + width]
    hidden_relu = n_layers > 1 and acts[0] == RELU
    out_code = acts[n_layers - 1]
    flat_out = flat_view(out)
    for start in range(0, n, cap):
        stop = lesser(start + cap, n)
        z = out[start:stop]
        if n_layers == 1:  # the first layer is the output
            z0 = rows_view(flat_out, start * width, stop - start, width)
        else:
            z0 = rows_view(work, 0, stop - start, width)
        _csr_matmul_bias(data, indices, indptr, np.arange(start, stop), w, b, hidden_relu, z0)
        if n_layers > 1:
            if not hidden_relu:
                _activate_hidden(acts[0], z0)
            _forward(z0, 1, theta, sizes, offsets, acts, work, cap, z)
        _activate(out_code, z, z)
    return True


@kernel
def all_finite(x):
    """True when no element of the 2-D array ``x`` is NaN or infinite.

    The estimators' check of a predict output: one pass, no temporary
    (``np.isfinite(x).all()`` allocates a boolean array and costs ~1.5 us even for one row).
    """
    return _finite_rows(x)
