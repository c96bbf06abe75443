"""The engine-facing network: layer structure as int arrays, parameters in one buffer.

Both the model API (``Sequential``) and the scikit-learn estimators drive training
through :class:`Network`; it owns ``theta`` and hands kernels only plain arrays.
"""

import time
from contextlib import contextmanager

import numpy as np

from fastnn import kernels as K
from fastnn._validation import check_finite, check_X
from fastnn.backends import get_backend

ACTIVATION_CODES = {
    "identity": K.IDENTITY,
    "linear": K.IDENTITY,
    "relu": K.RELU,
    "logistic": K.LOGISTIC,
    "sigmoid": K.LOGISTIC,
    "tanh": K.TANH,
    "softmax": K.SOFTMAX,
}

# Every buffer the kernels stream (theta, the gradient, the optimizer state, the work
# buffer) starts on a 64-byte boundary: a cache line and one AVX-512 vector. NumPy's
# allocator guarantees 16 bytes, and a buffer 16, 32 or 48 bytes off a line boundary
# makes every vector load of it (the kernels' and OpenBLAS's) span two lines. Measured
# alternately in one process, identical weights: a W-small epoch 0.83x the time (14/15
# pairs), W-tiny 0.93x (14/15); the one-row digits forward 1.24 us instead of 1.92.
ALIGNMENT = 64


def aligned_empty(n, dtype):
    """A new 1-D array of ``n`` items of ``dtype`` whose data starts on an ``ALIGNMENT``
    boundary (a view into a slightly longer allocation)."""
    dtype = np.dtype(dtype)
    raw = np.empty(n + ALIGNMENT // dtype.itemsize, dtype=dtype)
    start = (-raw.ctypes.data % ALIGNMENT) // dtype.itemsize
    return raw[start : start + n]


def aligned_zeros(n, dtype):
    """:func:`aligned_empty`, filled with zeros."""
    out = aligned_empty(n, dtype)
    out[...] = 0
    return out


def aligned_copy(a):
    """A C-ordered copy of ``a``, flattened, in an :func:`aligned_empty` buffer."""
    a = np.asarray(a)
    out = aligned_empty(a.size, a.dtype)
    out[...] = a.ravel()
    return out


# Training groups epochs into engine calls of about this many seconds: long enough that
# the per-call Python work (shuffle, snapshot, bookkeeping) stops mattering for tiny
# nets, short enough that Ctrl-C, which waits for the running call, still answers promptly.
CALL_SECONDS = 0.02
MAX_EPOCHS_PER_CALL = 1000


def epochs_per_call(seconds_per_epoch):
    """How many epochs of ``seconds_per_epoch`` to run in the next engine call."""
    return max(1, min(int(CALL_SECONDS / max(seconds_per_epoch, 1e-9)), MAX_EPOCHS_PER_CALL))


# The kernels index the flat buffer with int64; no machine holds a network near this.
MAX_PARAMS = 2**62


def layout(sizes):
    """Offsets of each layer's ``w`` then each layer's ``b`` in the flat buffer."""
    n_layers = len(sizes) - 1
    starts = []
    pos = 0
    for layer in range(n_layers):
        starts.append(pos)
        pos += int(sizes[layer]) * int(sizes[layer + 1])
    for layer in range(n_layers):
        starts.append(pos)
        pos += int(sizes[layer + 1])
    if pos >= MAX_PARAMS:
        raise ValueError(f"layer sizes {[int(s) for s in sizes]} make {pos} parameters, "
                         f"more than {MAX_PARAMS} can be indexed")
    return np.array(starts, dtype=np.int64), pos


# threadpoolctl hands the limit to the BLAS libraries as a C int
MAX_THREADS = 2**31 - 1


def csr_arrays(x):
    """``(data, indices, indptr)`` of a SciPy CSR matrix, as the engines' ``*_csr``
    functions take them: contiguous, ``indices`` and ``indptr`` int64 (one compiled
    signature however SciPy stored them), copies only where needed."""
    return (np.ascontiguousarray(x.data), np.ascontiguousarray(x.indices, dtype=np.int64),
            np.ascontiguousarray(x.indptr, dtype=np.int64))


def is_csr(x):
    """True for a SciPy CSR matrix or array (checked without importing SciPy)."""
    return type(x) is not np.ndarray and getattr(x, "format", None) == "csr"


_HIDDEN_CODES = (K.IDENTITY, K.RELU, K.LOGISTIC, K.TANH)


def _check_hidden(acts):
    # the numba kernels apply only these to hidden layers (softmax and exp are kept out
    # of the training kernels' compile); every API refuses the others there first
    hidden = [int(code) for code in acts[:-1]]
    if any(code not in _HIDDEN_CODES for code in hidden):
        raise ValueError(f"hidden layers take identity, relu, sigmoid or tanh, got codes {hidden}")


class Network:
    """Sizes, activation codes, dtype, backend and the flat parameter buffer ``theta``.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths, input first.
    acts : sequence of int
        Activation code per layer (``fastnn.kernels.RELU``...); the last is the output.
    dtype : np.float32 or np.float64
    backend : str
        ``"numba"`` or ``"numpy"``.
    """

    def __init__(self, sizes, acts, dtype, backend):
        self.sizes = np.asarray(sizes, dtype=np.int64)
        self.acts = np.asarray(acts, dtype=np.int64)
        _check_hidden(self.acts)
        self.dtype = dtype
        self.backend = backend
        self.engine = get_backend(backend)
        self.offsets, n_params = layout([int(s) for s in self.sizes])
        self.theta = aligned_zeros(n_params, dtype)

    def __getstate__(self):
        state = dict(self.__dict__)
        del state["engine"]  # a module: found again by name
        return state

    def __setstate__(self, state):
        _check_hidden(state["acts"])
        self.__dict__.update(state)
        self.engine = get_backend(self.backend)
        self.theta = aligned_copy(self.theta)  # unpickled arrays come from NumPy's allocator

    @property
    def n_layers(self):
        return len(self.sizes) - 1

    def coefs(self, theta=None):
        """Views ``w`` of shape (n_in, n_out) of each layer into ``theta``."""
        theta = self.theta if theta is None else theta
        out = []
        for layer in range(self.n_layers):
            n_in, n_out = int(self.sizes[layer]), int(self.sizes[layer + 1])
            start = int(self.offsets[layer])
            out.append(theta[start : start + n_in * n_out].reshape(n_in, n_out))
        return out

    def intercepts(self, theta=None):
        """Views ``b`` of shape (n_out,) of each layer into ``theta``."""
        theta = self.theta if theta is None else theta
        out = []
        for layer in range(self.n_layers):
            start = int(self.offsets[self.n_layers + layer])
            out.append(theta[start : start + int(self.sizes[layer + 1])])
        return out

    def init_glorot(self, random_state, factors):
        """Glorot-uniform init in scikit-learn's draw order: per layer ``w`` then ``b``.

        ``bound = sqrt(factor / (fan_in + fan_out))`` with ``factor`` 6, or 2 for
        logistic layers (Glorot & Bengio, 2010). ``random_state`` is a NumPy
        ``RandomState`` or ``Generator``; draws are float64, then cast.
        """
        for layer, (w, b) in enumerate(zip(self.coefs(), self.intercepts())):
            fan_in, fan_out = w.shape
            bound = np.sqrt(factors[layer] / (fan_in + fan_out))
            w[...] = random_state.uniform(-bound, bound, (fan_in, fan_out))
            b[...] = random_state.uniform(-bound, bound, fan_out)

    def predict(self, x):
        """Output activation for each row of ``x`` (C-contiguous, of the network's dtype,
        or a CSR matrix of that dtype); None when ``x`` holds a NaN or an infinity."""
        out = np.empty((x.shape[0], int(self.sizes[-1])), dtype=self.dtype)
        if is_csr(x):
            done = self.engine.predict_forward_csr(*csr_arrays(x), self.theta, self.sizes,
                                                   self.offsets, self.acts, out)
        else:
            done = self.engine.predict_forward(x, self.theta, self.sizes, self.offsets,
                                               self.acts, out)
        return out if done else None

    def workspace(self, rows, sparse=False):
        """A new work buffer for batches of up to ``rows`` rows (dense or CSR input)."""
        return aligned_empty(int(self.engine.workspace_size(self.sizes, rows, sparse=sparse)),
                             self.dtype)

    def loss_grad_into(self, x, y, sw, hyper, work, grad, theta=None):
        """Mean loss over ``x`` (dense or CSR) and its gradient into ``grad``; ``work``
        from :meth:`workspace` for ``x``'s rows and kind."""
        theta = self.theta if theta is None else theta
        if is_csr(x):
            return self.engine.loss_grad_csr(*csr_arrays(x), y, sw, theta, self.sizes,
                                             self.offsets, self.acts, hyper, work, grad)
        return self.engine.loss_grad(x, y, sw, theta, self.sizes, self.offsets, self.acts,
                                     hyper, work, grad)

    def loss_grad(self, x, y, sw, hyper, theta=None):
        """Mean loss over ``x`` and its gradient (a new flat array)."""
        theta = self.theta if theta is None else theta
        grad = aligned_empty(theta.shape[0], theta.dtype)
        loss = self.loss_grad_into(x, y, sw, hyper, self.workspace(x.shape[0], is_csr(x)),
                                   grad, theta)
        return float(loss), grad


class Predictor:
    """A compiled forward pass bound to a copy of the weights: low-latency predict.

    Calling it with a C-contiguous ndarray of the model's dtype and width (one row, say)
    skips all conversion: a few attribute tests and one kernel call, which checks
    finiteness itself. Anything else goes through the full validation first. The
    weights are copied at creation: later training of the model does not change a
    predictor made before it. Calls from several threads at once are safe: each has
    its own scratch.

    Parameters
    ----------
    net : Network
    """

    def __init__(self, net):
        self._dtype = np.dtype(net.dtype)
        self._n_in = int(net.sizes[0])
        self._n_out = int(net.sizes[-1])
        # The clean-input test: 2-D (two strides), rows of n_in contiguous items.
        self._row_strides = (self._n_in * self._dtype.itemsize, self._dtype.itemsize)
        self._net = Network(net.sizes, net.acts, net.dtype, net.backend)
        self._net.theta = aligned_copy(net.theta)
        self._bind()

    def _bind(self):
        from fastnn.kernels import predict_forward

        net = self._net
        forward = predict_forward if net.backend == "numba" else net.engine.predict_forward
        theta, sizes, offsets, acts = net.theta, net.sizes, net.offsets, net.acts
        self._run = lambda x, out: forward(x, theta, sizes, offsets, acts, out)

    def __getstate__(self):
        state = dict(self.__dict__)
        del state["_run"]  # a closure: bound again after unpickling
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._bind()

    def __call__(self, x):
        """Output activations for the rows of ``x``, shape (n_rows, n_outputs)."""
        # dtype identity: NumPy's built-in dtypes are singletons, and an equal dtype that
        # is another object only takes the long way
        if not (type(x) is np.ndarray and x.dtype is self._dtype
                and x.strides == self._row_strides and x.shape[1] == self._n_in
                and x.shape[0] > 0):
            x = check_X(x, self._dtype.type, n_features=self._n_in, finite=False, sparse=True)
            if is_csr(x):  # sparse rows: the CSR kernel, off the one-row fast path
                out = self._net.predict(x)
                if out is None:
                    check_finite(x.data, "X")  # raises, naming NaN or infinity
                return out
        out = np.empty((x.shape[0], self._n_out), dtype=self._dtype)
        if not self._run(x, out):
            check_finite(x, "X")  # raises, naming NaN or infinity
        return out


class Trainer:
    """Workspace and optimizer state for one ``fit``: allocated once, reused each epoch."""

    def __init__(self, net, batch_size, opt_code, state=None, sparse=False):
        self.net = net
        self.sparse = sparse  # the work buffer's layout: CSR input gathers no rows
        self.batch_size = batch_size
        self.opt_code = opt_code
        self.grad = aligned_empty(net.theta.shape[0], net.dtype)
        self.work = net.workspace(batch_size, sparse)
        if state is None:
            state = (aligned_zeros(net.theta.shape[0], net.dtype),
                     aligned_zeros(net.theta.shape[0], net.dtype))
        for name, a in zip("mv", state):  # the kernels stream these as long as theta
            if not (isinstance(a, np.ndarray) and a.shape == net.theta.shape
                    and a.dtype == net.theta.dtype and a.flags.c_contiguous):
                raise ValueError(f"optimizer state {name} must be a C-contiguous "
                                 f"{net.theta.dtype} array of shape {net.theta.shape}, got "
                                 f"{getattr(a, 'dtype', type(a).__name__)} of shape "
                                 f"{np.shape(a)}")
        self.m, self.v = state

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_split", None)  # two threads' buffers: made again at the next epochs
        return state

    def __setstate__(self, state):
        # unpickled arrays come from NumPy's allocator: realign what the kernels stream
        self.__dict__.update(state)
        for name in ("grad", "work", "m", "v"):
            setattr(self, name, aligned_copy(getattr(self, name)))

    def epochs(self, x, y, sw, orders, hyper, t, totals):
        """Run one epoch per row of ``orders`` in a single engine call.

        Epoch ``e``'s summed (batch mean x length) loss goes to ``totals[e]``. Returns the
        number of epochs completed; fewer than ``len(orders)`` means the next one diverged
        and was undone (its total is still in ``totals``).
        """
        net = self.net
        if is_csr(x) != self.sparse:  # the work buffer's layout is that of one input kind
            raise ValueError(f"this Trainer's workspace is for {'CSR' if self.sparse else 'dense'}"
                             " rows; make a Trainer with sparse=is_csr(x)")
        if self.sparse:
            return int(net.engine.run_epochs_csr(
                *csr_arrays(x), y, sw, orders, self.batch_size, net.theta, self.grad, self.m,
                self.v, net.sizes, net.offsets, net.acts, hyper, t, self.opt_code, self.work,
                totals))
        from fastnn import _split

        # A network the split takes sums its L2 term in the split's order on any number of
        # threads; where two are to be had, each call goes to whichever engine has been
        # the faster lately. The numbers are the same either way (fastnn._split).
        ordered = _split.in_split_order(net, x, self.batch_size)
        hyper[K.HYPER_L2_HALVES] = 1.0 if ordered else 0.0
        key = engine = None
        if ordered and _split.two_threads():
            key = _split.workload_key(net, self.batch_size)
            engine = _split.choose(key)
            if engine == "split" and getattr(self, "_split", None) is None:
                self._split = _split.SplitRunner(net, self.batch_size)
        start = time.perf_counter()
        if engine == "split":
            done = self._split.epochs(x, y, sw, orders, hyper, t, self.opt_code, self.m,
                                      self.v, totals)
        else:
            done = int(net.engine.run_epochs(
                x, y, sw, orders, self.batch_size, net.theta, self.grad, self.m, self.v,
                net.sizes, net.offsets, net.acts, hyper, t, self.opt_code, self.work,
                totals))
        if key is not None:
            _split.record(key, engine, (time.perf_counter() - start) / max(orders.size, 1))
        return done


@contextmanager
def blas_threads(n_threads):
    """Limit the BLAS thread pools (NumPy's and the kernels' OpenBLAS) to ``n_threads``
    for the duration of a ``with`` block; ``None`` leaves them as they are."""
    if n_threads is None:
        yield
        return
    # SciPy's BLAS, which the kernels call where NumPy brings no OpenBLAS of its own
    # (kernels/_jit.py): loaded first, so that it is limited too
    import scipy.linalg.cython_blas  # noqa: F401
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=n_threads, user_api="blas"):
        yield


def make_hyper(dtype, *, lr=0.0, momentum=0.0, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
               alpha=0.0, gscale=1.0):
    """The kernels' ``hyper`` array (float64; order fixed by ``fastnn.kernels.HYPER_*``)."""
    hyper = np.zeros(K.N_HYPER, dtype=np.float64)
    hyper[K.HYPER_LR] = lr
    hyper[K.HYPER_MOMENTUM] = momentum
    hyper[K.HYPER_BETA_1] = beta_1
    hyper[K.HYPER_BETA_2] = beta_2
    hyper[K.HYPER_EPSILON] = epsilon
    hyper[K.HYPER_ALPHA] = alpha
    hyper[K.HYPER_GSCALE] = gscale
    hyper[K.HYPER_CLIP_EPS] = np.finfo(dtype).eps
    return hyper


def output_loss(net, p, y, sw):
    """Mean loss of output activations ``p`` against encoded targets ``y`` (no L2 term)."""
    code = int(net.acts[-1])
    eps = float(np.finfo(net.dtype).eps)
    if code == K.SOFTMAX:
        total = net.engine.xent_loss(p, y, sw, eps)
    elif code == K.LOGISTIC:
        total = net.engine.bce_loss(p, y, sw, eps)
    else:
        total = net.engine.mse_loss(p, y, sw)
    return float(total) / float(sw.sum(dtype=np.float64))
