"""The model API of the note: a list of dense layers, an optimizer, a loss.

>>> model = Sequential([Dense(16, activation="relu"), Dense(3, activation="softmax")],
...                    optimizer="adam", loss="categorical_crossentropy", seed=0)
>>> history = model.fit(X, y, epochs=200, batch_size=16)   # doctest: +SKIP
"""

import time
import warnings

import numpy as np

from fastnn import kernels as K
from fastnn import optimizers as _optimizers
from fastnn._network import (
    ACTIVATION_CODES,
    MAX_PARAMS,
    MAX_THREADS,
    Network,
    Trainer,
    aligned_copy,
    blas_threads,
    epochs_per_call,
    is_csr,
    layout,
    make_hyper,
    output_loss,
)
from fastnn._validation import (
    check_dtype,
    check_finite,
    check_positive_int,
    check_X,
    is_sparse_matrix,
    overflow_error,
)
from fastnn.backends import get_backend

__all__ = ["Dense", "DivergenceWarning", "History", "Sequential"]

# loss name -> the output activation it is fused with (the canonical pairs)
LOSSES = {
    "categorical_crossentropy": K.SOFTMAX,
    "binary_crossentropy": K.LOGISTIC,
    "mse": K.IDENTITY,
    "mean_squared_error": K.IDENTITY,
}
_CODE_NAMES = {K.SOFTMAX: "softmax", K.LOGISTIC: "sigmoid", K.IDENTITY: "linear"}


def _check_length(y, n_samples, name):
    if is_sparse_matrix(y):
        raise TypeError(f"{name} is a sparse matrix; pass a dense array ({name}.toarray())")
    y = np.asarray(y)
    if y.shape[:1] != (n_samples,):
        raise ValueError(f"X and {name} have different numbers of samples: {n_samples} and "
                         f"{y.shape[0] if y.ndim else 'a scalar'}")
    return y


def _sorted_labels(op, y, name):
    # op(y) for an op that sorts or searches labels: Python objects of mixed types (str
    # and int, or None) do not compare, and NumPy's TypeError would not say why
    try:
        return op(y)
    except TypeError:
        kinds = sorted({type(v).__name__ for v in np.ravel(y)})
        raise TypeError(f"{name} holds labels of types {kinds}, which cannot be sorted; use "
                        "labels of one type (all str or all numbers)") from None


def _storable_labels(classes):
    # Labels as a model file holds them: numbers, or text as a unicode array (object arrays
    # of str, as pandas' string columns give, are stored as text; they load as str)
    if classes.dtype != object:
        return classes
    if all(isinstance(c, str) for c in classes):
        return classes.astype(str)
    raise TypeError("the model's labels are Python objects that are not all str "
                    f"({sorted({type(c).__name__ for c in classes})}); fit with numeric or str "
                    "labels (np.asarray(y, dtype=str)) to save")


def _one_output_labels(y, units):
    # A classifier with one output unit takes its labels as a column (n, 1) too, as Keras
    # does: the column's values are the labels
    return y[:, 0] if units == 1 and y.ndim == 2 and y.shape[1] == 1 else y


class DivergenceWarning(RuntimeWarning):
    """Training produced a non-finite loss, weights or optimizer state; the model kept its
    last finite state."""


class Dense:
    """A fully connected layer: ``a = activation(x @ W + b)``.

    Parameters
    ----------
    units : int
        Number of outputs.
    activation : str, default="linear"
        One of ``"relu"``, ``"sigmoid"`` (or ``"logistic"``), ``"tanh"``,
        ``"linear"`` (or ``"identity"``), ``"softmax"`` (output layer only).
    """

    def __init__(self, units, activation="linear"):
        self.units = check_positive_int(units, "units", maximum=MAX_PARAMS)
        if not isinstance(activation, str) or activation not in ACTIVATION_CODES:
            raise ValueError(
                f"unknown activation {activation!r}; expected one of {sorted(ACTIVATION_CODES)}"
            )
        self.activation = activation

    @property
    def code(self):
        return ACTIVATION_CODES[self.activation]

    def __repr__(self):
        return f"Dense({self.units}, activation={self.activation!r})"


class History:
    """Per-epoch metrics of one ``fit``: ``history.history["loss"]``, ``["val_loss"]``..."""

    def __init__(self):
        self.history = {"loss": []}
        self.epoch = []
        # wall time of each epoch, validation excluded; epochs that ran in one engine call
        # share its time evenly
        self.seconds = []

    def __getitem__(self, key):
        return self.history[key]

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, keys={sorted(self.history)})"


class Sequential:
    """A multilayer perceptron trained by mini-batch gradient descent.

    Parameters
    ----------
    layers : list of Dense
        Hidden layers then the output layer; the input width is taken from the first
        ``fit``.
    optimizer : {"adam", "sgd"} or fastnn.optimizers.Adam / SGD, default="adam"
    loss : {"categorical_crossentropy", "binary_crossentropy", "mse"}
        Must match the output activation: softmax, sigmoid and linear respectively
        (the pairs whose gradient at the output is ``prediction - target``). ``mse`` is
        half the mean squared error, ``0.5 * mean((p - y)**2)`` over all outputs, as
        scikit-learn's ``squared_error`` (Keras' ``mse`` is twice that).
    backend : {"numba", "numpy"}, default="numba"
        Same API and, in float64, the same numbers to about 1e-9.
    dtype : {"float64", "float32"}, default="float64"
    seed : int or None, default=None
        Seeds the weight init and the shuffles: the same seed and data give the same
        numbers, run after run.
    n_threads : int or None, default=None
        Threads the BLAS products may use during ``fit`` and prediction; ``None`` keeps
        the BLAS default (all cores). With two or more, a fit of a larger network may
        also train on two threads of its own (README: two threads per fit); 1 keeps the
        kernels' loops on the calling thread. The numbers do not depend on it.
    """

    def __init__(self, layers, *, optimizer="adam", loss="categorical_crossentropy",
                 backend="numba", dtype="float64", seed=None, n_threads=None):
        layers = list(layers) if isinstance(layers, (list, tuple)) else layers
        if not isinstance(layers, list) or not layers:
            raise TypeError(f"layers must be a non-empty list of Dense, got {layers!r}")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Dense):
                raise TypeError(f"layers[{i}] must be a fastnn.Dense, got {layer!r}")
            if layer.code == K.SOFTMAX and i != len(layers) - 1:
                raise ValueError(f"softmax is only supported on the output layer (layers[{i}])")
        if not isinstance(loss, str) or loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; expected one of {sorted(LOSSES)}")
        if layers[-1].code != LOSSES[loss]:
            raise ValueError(
                f"loss {loss!r} needs a {_CODE_NAMES[LOSSES[loss]]!r} output layer, "
                f"got activation {layers[-1].activation!r}"
            )
        if loss == "categorical_crossentropy" and layers[-1].units < 2:
            raise ValueError("categorical_crossentropy needs an output layer of >= 2 units")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise TypeError(f"seed must be an int or None, got {seed!r}")
        if seed is not None and seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed!r}")
        self.layers = layers
        self.optimizer = _optimizers.get(optimizer)
        self.loss = loss
        self.backend = backend
        get_backend(backend)
        self.dtype = check_dtype(dtype)
        self.seed = seed
        self.n_threads = None if n_threads is None else check_positive_int(
            n_threads, "n_threads", maximum=MAX_THREADS)
        self._rng = np.random.default_rng(seed)
        self._net = None
        self._trainer = None
        self._t = 0
        self.classes_ = None

    # --- targets ----------------------------------------------------------------
    @property
    def _kind(self):
        return {K.SOFTMAX: "multiclass", K.LOGISTIC: "binary", K.IDENTITY: "regression"}[
            self.layers[-1].code]

    def _fit_targets(self, y):
        """Learn the label encoding from the first fit's ``y``."""
        units = self.layers[-1].units
        y = _one_output_labels(np.asarray(y), units)
        if self._kind == "regression":
            return
        if y.ndim == 2 and y.shape[1] == units and units > 1:
            self.classes_ = np.arange(units)  # one-hot / indicator rows
            return
        if y.ndim != 1:
            raise ValueError(f"y must be 1-D labels or 2-D one-hot rows with {units} columns, "
                             f"got shape {y.shape}")
        classes = _sorted_labels(np.unique, y, "y")
        if len(classes) < 2:
            raise ValueError(f"y has {len(classes)} class(es); a classifier needs at least 2")
        if self._kind == "binary":
            if units != 1 or len(classes) != 2:
                raise ValueError(
                    f"binary_crossentropy with {units} output unit(s) needs 1-D y with exactly 2 "
                    f"classes (or {units}-column 0/1 indicator rows), got {len(classes)} classes")
            self.classes_ = classes
            return
        if y.dtype.kind in "iu" and classes[0] >= 0 and classes[-1] < units:
            classes = np.arange(units)  # integer labels index the output units
        if len(classes) != units:
            raise ValueError(f"y has {len(classes)} classes but the output layer has {units} "
                             f"units")
        self.classes_ = classes

    def _encode(self, y, n_samples, name="y"):
        """Targets as a float matrix of shape (n_samples, units) in the model dtype."""
        out = self._encode_targets(y, n_samples, name)
        # The kernels index targets as (n_samples, units) rows: anything else would be
        # read past its end. Every branch of _encode_targets builds that shape; this says so.
        if out.shape != (n_samples, self.layers[-1].units):
            raise ValueError(f"{name} encodes to shape {out.shape}, expected "
                             f"({n_samples}, {self.layers[-1].units})")
        return out

    def _encode_targets(self, y, n_samples, name):
        units = self.layers[-1].units
        y = _check_length(y, n_samples, name)
        if self._kind != "regression":
            y = _one_output_labels(y, units)
        if self._kind == "regression":
            y2 = y.reshape(-1, 1) if y.ndim == 1 else y
            if y2.ndim != 2 or y2.shape[1] != units:
                raise ValueError(f"{name} must have {units} column(s) for this output layer, "
                                 f"got shape {y.shape}")
            out = check_X(y2, self.dtype, name=name)
            return out
        if y.ndim == 2:
            if y.shape[1] != units or (self._kind == "binary" and units == 1):
                raise ValueError(f"{name} has {y.shape[1]} columns but the output layer has "
                                 f"{units} units")
            out = check_X(y, self.dtype, name=name)
            if not np.isin(out, (0, 1)).all():
                raise ValueError(f"{name} given as 2-D rows must hold only 0 and 1 (one-hot)")
            if self._kind == "multiclass" and not (out.sum(axis=1) == 1).all():
                raise ValueError(f"{name} one-hot rows must each hold exactly one 1")
            return out
        if y.ndim != 1:
            raise ValueError(f"{name} must be 1-D labels, got shape {y.shape}")
        if self._kind == "binary" and units != 1:
            raise ValueError(f"{name} must be 0/1 indicator rows with {units} columns for this "
                             f"{units}-unit sigmoid output (multilabel), got shape {y.shape}")
        index = _sorted_labels(lambda v: np.searchsorted(self.classes_, v), y, name)
        index = np.clip(index, 0, len(self.classes_) - 1)
        unseen = self.classes_[index] != y
        if unseen.any():
            raise ValueError(f"{name} holds labels the model was not fitted with: "
                             f"{np.unique(y[unseen])[:5].tolist()}")
        if self._kind == "binary":
            return index.astype(self.dtype).reshape(-1, 1)
        out = np.zeros((n_samples, units), dtype=self.dtype)
        out[np.arange(n_samples), index] = 1
        return out

    # --- building -----------------------------------------------------------------
    def _build(self, n_features):
        sizes = [n_features] + [layer.units for layer in self.layers]
        acts = [layer.code for layer in self.layers]
        self._net = Network(sizes, acts, self.dtype, self.backend)
        factors = [2.0 if code == K.LOGISTIC else 6.0 for code in acts]
        self._net.init_glorot(self._rng, factors)

    def _check_built(self, what):
        if self._net is None:
            raise ValueError(f"this Sequential model is not fitted yet; call fit before {what}")

    def _hyper(self):
        opt = self.optimizer
        units = self.layers[-1].units
        gscale = 1.0 / units if self._kind == "regression" else 1.0
        if isinstance(opt, _optimizers.Adam):
            return make_hyper(self.dtype, lr=opt.learning_rate, beta_1=opt.beta_1,
                              beta_2=opt.beta_2, epsilon=opt.epsilon, gscale=gscale)
        return make_hyper(self.dtype, lr=opt.learning_rate, momentum=opt.momentum,
                          gscale=gscale)

    def _orders(self, n, count, shuffle):
        """``count`` visiting orders of ``n`` samples, one per row: the same draws as
        ``count`` successive ``rng.permutation(n)`` calls, in one call."""
        rows = np.empty((count, n), dtype=np.int64)
        rows[:] = np.arange(n)
        return self._rng.permuted(rows, axis=1, out=rows) if shuffle else rows

    def _opt_code(self):
        opt = self.optimizer
        if isinstance(opt, _optimizers.Adam):
            return K.OPT_ADAM
        return K.OPT_NESTEROV if opt.nesterov else K.OPT_SGD

    # --- training -----------------------------------------------------------------
    def fit(self, X, y, /, *, epochs=1, batch_size=32, validation_data=None, shuffle=True,
            verbose=0):
        """Train for ``epochs`` passes over ``(X, y)``; later calls continue training.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Class labels (int or str), one-hot rows, or regression targets.
        epochs : int
        batch_size : int
            Larger than ``n_samples`` means one full batch.
        validation_data : tuple (X_val, y_val), optional
            Evaluated after every epoch into ``val_loss`` (and ``val_accuracy``).
        shuffle : bool
            Visit samples in a new random order each epoch (from ``seed``).
        verbose : int
            1 prints one line per epoch.

        Without validation data or verbose output, epochs run several per engine call
        (about 20 ms of work each); the numbers do not depend on that grouping. Ctrl-C
        undoes the epochs of the running call, shuffles included, and re-raises; a
        diverging epoch is undone and stops training with a ``DivergenceWarning``.

        Returns
        -------
        History
        """
        with blas_threads(self.n_threads):
            return self._fit(X, y, epochs=epochs, batch_size=batch_size,
                             validation_data=validation_data, shuffle=shuffle, verbose=verbose)

    def _fit(self, X, y, *, epochs, batch_size, validation_data, shuffle, verbose):
        """The body of :meth:`fit`, run inside its BLAS thread limit."""
        epochs = check_positive_int(epochs, "epochs")
        batch_size = check_positive_int(batch_size, "batch_size")
        fitted = self._net is not None
        X = check_X(X, self.dtype, n_features=int(self._net.sizes[0]) if fitted else None,
                    sparse=True)
        if not fitted:
            self._fit_targets(_check_length(y, X.shape[0], "y"))
        Y = self._encode(y, X.shape[0])
        val = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError("validation_data must be a tuple (X_val, y_val)")
            Xv = check_X(validation_data[0], self.dtype, name="X_val", n_features=X.shape[1],
                         sparse=True)
            val = (Xv, validation_data[1], self._encode(validation_data[1], Xv.shape[0], "y_val"))
        if not fitted:
            self._build(X.shape[1])
        n = X.shape[0]
        batch_size = min(batch_size, n)
        net = self._net
        sparse = is_csr(X)
        if (self._trainer is None or self._trainer.batch_size != batch_size
                or self._trainer.sparse != sparse):
            state = None if self._trainer is None else (self._trainer.m, self._trainer.v)
            self._trainer = Trainer(net, batch_size, self._opt_code(), state, sparse=sparse)
        trainer = self._trainer
        hyper = self._hyper()
        sw = np.ones(n, dtype=self.dtype)
        saved = [np.empty_like(a) for a in (net.theta, trainer.m, trainer.v)]
        live = (net.theta, trainer.m, trainer.v)
        history = History()
        self.history_ = history  # filled as epochs complete, so an interrupt keeps them
        if val is not None:
            history.history["val_loss"] = []
            if self._kind != "regression":
                history.history["val_accuracy"] = []
        steps = -(-n // batch_size)
        losses, seconds = history.history["loss"], history.seconds
        # Epochs per engine call: one while per-epoch output is needed, else as many as
        # fit in CALL_SECONDS once an epoch has been timed. The orders come from the same
        # draws either way, so the weights do not depend on how epochs were grouped.
        adaptive = val is None and not verbose
        per_call = 1
        totals = np.empty(1, dtype=np.float64)  # a call's epochs: grown as calls grow
        epoch = 0
        while epoch < epochs:
            count = min(per_call, epochs - epoch)
            if totals.shape[0] < count:
                totals = np.empty(count, dtype=np.float64)
            rng_state = self._rng.bit_generator.state
            for keep, arr in zip(saved, live):
                np.copyto(keep, arr)
            start = time.perf_counter()
            try:
                orders = self._orders(n, count, shuffle)
                done = trainer.epochs(X, Y, sw, orders, hyper, self._t, totals[:count])
            except KeyboardInterrupt:
                # The call's epochs are undone, shuffles included: training on afterwards
                # gives the numbers of a run that was never interrupted.
                for keep, arr in zip(saved, live):
                    np.copyto(arr, keep)
                self._rng.bit_generator.state = rng_state
                raise
            elapsed = (time.perf_counter() - start) / count
            # one list operation per call, not per epoch: for 200 epochs in a call, 5.5 us
            # instead of 27 for a loop of appends (0.5% of a W-tiny fit)
            self._t += steps * done
            seconds.extend([elapsed] * done)
            losses.extend((totals[:done] / n).tolist())
            history.epoch.extend(range(epoch, epoch + done))
            epoch += done
            if done < count:
                # a finite loss: the weights or the optimizer state (an overflowed moment)
                what = ("" if not np.isfinite(totals[done]) else
                        ", weights or optimizer state became non-finite")
                warnings.warn(
                    f"training diverged at epoch {epoch + 1} (loss = {totals[done] / n}"
                    f"{what}); stopped and kept the weights of the last finite epoch. Lower "
                    "the learning rate or scale the inputs.", DivergenceWarning, stacklevel=3)
                break
            if adaptive:
                per_call = epochs_per_call(elapsed)
            if val is not None:
                metrics = self._evaluate_encoded(val[0], val[1], val[2], refuse=False)
                history.history["val_loss"].append(metrics["loss"])
                if "accuracy" in metrics:
                    history.history["val_accuracy"].append(metrics["accuracy"])
            if verbose:
                line = f"Epoch {epoch}/{epochs} - loss: {losses[-1]:.6f}"
                if val is not None:
                    line += f" - val_loss: {metrics['loss']:.6f}"
                    if "accuracy" in metrics:
                        line += f" - val_accuracy: {metrics['accuracy']:.4f}"
                print(f"{line} - {1e3 * elapsed:.3f} ms", flush=True)
        return history

    # --- inference ------------------------------------------------------------------
    def predict_proba(self, X, /):
        """Output-layer activations: class probabilities (or regression values)."""
        self._check_built("predict_proba")
        # the engine's forward pass tests X for NaN and infinity itself (one pass, not two)
        X = check_X(X, self.dtype, n_features=int(self._net.sizes[0]), finite=False,
                    sparse=True)
        with blas_threads(self.n_threads):
            out = self._net.predict(X)
        if out is None:
            check_finite(X.data if is_csr(X) else X, "X")  # raises, naming NaN or infinity
        if not np.isfinite(out).all():
            raise overflow_error("the network's output", X)
        return out

    def compile_predictor(self):
        """A low-latency callable ``f(X) -> predict_proba(X)`` for repeated small calls.

        It holds a copy of the current weights; a C-contiguous array of the model's dtype
        and width skips conversion entirely, and threads may share it. Unlike
        ``predict_proba`` it does not test its output: where inputs are large enough to
        overflow the network, the output holds inf or NaN (the test would be a second
        kernel dispatch, ~0.3 us, on a one-row call of ~3 us). See
        :class:`fastnn._network.Predictor`.
        """
        from fastnn._network import Predictor

        self._check_built("compile_predictor")
        return Predictor(self._net)

    def predict(self, X, /):
        """Class labels (classifiers) or predicted values (regression)."""
        self._check_built("predict")
        return self._decode(self.predict_proba(X))

    def _decode(self, p):
        if self._kind == "regression":
            return p
        if self._kind == "binary":
            hit = p > 0.5
            return self.classes_[hit[:, 0].astype(int)] if p.shape[1] == 1 else hit.astype(int)
        return self.classes_[p.argmax(axis=1)]

    def _evaluate_encoded(self, X, y, Y, refuse=True):
        # refuse=False (the validation data of a running fit): an overflowed output gives
        # NaN metrics with a warning, and training goes on (its own numbers are finite)
        p = self._net.predict(X)
        if not np.isfinite(p).all():
            error = overflow_error("the network's output", X, "X" if refuse else
                                   "validation_data")
            if refuse:
                raise error
            warnings.warn(f"{error} (val_loss is nan)", RuntimeWarning, stacklevel=4)
            nan = {"loss": float("nan")}
            return nan if self._kind == "regression" else dict(nan, accuracy=float("nan"))
        metrics = {"loss": output_loss(self._net, p, Y, np.ones(X.shape[0], self.dtype))}
        if self._kind != "regression":
            pred = self._decode(p)
            truth = self._decode(Y) if np.ndim(y) == 2 else np.asarray(y)
            hit = pred == truth
            metrics["accuracy"] = float(hit.all(axis=1).mean() if hit.ndim == 2 else hit.mean())
        return metrics

    def evaluate(self, X, y, /):
        """Mean loss and (for classifiers) accuracy: ``{"loss": .., "accuracy": ..}``."""
        self._check_built("evaluate")
        X = check_X(X, self.dtype, n_features=int(self._net.sizes[0]), sparse=True)
        Y = self._encode(y, X.shape[0])
        with blas_threads(self.n_threads):
            return self._evaluate_encoded(X, y, Y)

    def loss_and_gradients(self, X, y, /):
        """Mean loss on ``(X, y)`` and its gradients ``[dW1, db1, dW2, db2, ...]``.

        The loss is the one ``fit`` minimizes; the gradients are exact (what a finite
        difference of that loss converges to).
        """
        self._check_built("loss_and_gradients")
        X = check_X(X, self.dtype, n_features=int(self._net.sizes[0]), sparse=True)
        Y = self._encode(y, X.shape[0])
        with blas_threads(self.n_threads):
            loss, grad = self._net.loss_grad(X, Y, np.ones(X.shape[0], self.dtype),
                                             self._hyper())
        if not (np.isfinite(loss) and np.isfinite(grad).all()):
            raise overflow_error("the loss or its gradients", X)
        return loss, self._pairs(grad)

    # --- weights ----------------------------------------------------------------------
    def _pairs(self, theta):
        out = []
        for w, b in zip(self._net.coefs(theta), self._net.intercepts(theta)):
            out += [w, b]
        return out

    def get_weights(self):
        """Copies ``[W1, b1, W2, b2, ...]``, ``W`` of shape (n_in, n_out)."""
        self._check_built("get_weights")
        return [a.copy() for a in self._pairs(self._net.theta)]

    def set_weights(self, weights):
        """Replace all parameters; ``weights`` as returned by :meth:`get_weights`."""
        self._check_built("set_weights")
        current = self._pairs(self._net.theta)
        if isinstance(weights, np.ndarray) and weights.dtype == object and weights.ndim == 1:
            weights = list(weights)  # np.array(model.get_weights(), dtype=object)
        if not isinstance(weights, (list, tuple)) or len(weights) != len(current):
            raise ValueError(f"set_weights expects a list of {len(current)} arrays "
                             f"[W1, b1, ...], got {type(weights).__name__} of length "
                             f"{len(weights) if hasattr(weights, '__len__') else '?'}")
        new = []
        for i, (dst, src) in enumerate(zip(current, weights)):
            try:
                arr = np.asarray(src)
            except ValueError:  # NumPy's words for a ragged nested list
                raise ValueError(f"weights[{i}] is not a rectangular array (rows of different "
                                 "lengths)") from None
            if arr.shape != dst.shape:
                raise ValueError(f"weights[{i}] has shape {arr.shape}, expected {dst.shape}")
            if arr.dtype.kind not in "biuf":
                raise TypeError(f"weights[{i}] must be numeric, got dtype {arr.dtype}")
            arr = arr.astype(self.dtype)
            check_finite(arr, f"weights[{i}]")
            new.append(arr)
        for dst, src in zip(current, new):
            dst[...] = src

    # --- files ------------------------------------------------------------------------
    def save(self, path):
        """Write the model (configuration, weights, optimizer state) to ``path``.

        The file is an ``.npz`` of arrays plus a JSON header; see :mod:`fastnn.io`. It is
        written to a temporary file first and renamed, so an existing file at ``path`` is
        replaced only by a complete one. Load it with :func:`fastnn.load`.
        """
        from fastnn.io import write_model

        self._check_built("save")
        opt = self.optimizer
        header = {
            "kind": "Sequential",
            "layers": [[layer.units, layer.activation] for layer in self.layers],
            "optimizer": {"name": type(opt).__name__, **vars(opt)},
            "loss": self.loss, "backend": self.backend, "dtype": np.dtype(self.dtype).name,
            "seed": self.seed, "n_threads": self.n_threads,
            "rng_state": self._rng.bit_generator.state,
            "n_features": int(self._net.sizes[0]), "t": self._t,
            "batch_size": None if self._trainer is None else self._trainer.batch_size,
            # the trainer's workspace kind: a sparse-trained wide model needs no dense rows
            "sparse_input": self._trainer is not None and self._trainer.sparse,
        }
        arrays = {"theta": self._net.theta}
        if self.classes_ is not None:
            arrays["classes"] = _storable_labels(self.classes_)
        if self._trainer is not None:
            arrays["opt_m"], arrays["opt_v"] = self._trainer.m, self._trainer.v
        write_model(path, header, arrays)

    @classmethod
    def _from_file(cls, header, arrays):
        from fastnn.io import MAX_BYTES, ModelFileError

        spec = dict(header["optimizer"])
        name = spec.pop("name")
        optimizer = {"Adam": _optimizers.Adam, "SGD": _optimizers.SGD}[name](**spec)
        layers = [Dense(int(units), activation) for units, activation in header["layers"]]
        model = cls(layers, optimizer=optimizer, loss=header["loss"], backend=header["backend"],
                    dtype=header["dtype"], seed=header["seed"],
                    n_threads=header.get("n_threads"))
        n_features = check_positive_int(header["n_features"], "n_features")
        sizes = [n_features] + [layer.units for layer in layers]
        theta = arrays["theta"]
        # Sizes from the header are checked against the stored weights (whose size io.py
        # capped) before anything of theirs is allocated: a hostile header cannot make the
        # loader allocate what the file does not hold.
        n_params = layout(sizes)[1]
        if theta.shape != (n_params,) or theta.dtype != model.dtype:
            raise ModelFileError(f"weights have shape {theta.shape} and dtype {theta.dtype}; "
                                 f"the architecture needs ({n_params},) "
                                 f"{np.dtype(model.dtype).name}")
        model._net = Network(sizes, [layer.code for layer in layers], model.dtype, model.backend)
        check_finite(theta, "saved weights")
        model._net.theta[...] = theta
        if model._kind != "regression":
            classes = arrays["classes"]
            expected = 2 if model._kind == "binary" and layers[-1].units == 1 else layers[-1].units
            if classes.ndim != 1 or len(classes) != expected:
                raise ModelFileError(f"saved classes have shape {classes.shape}, expected "
                                     f"({expected},)")
            if not np.array_equal(classes, np.unique(classes)):
                # encoding searches them: a fit only ever stores them sorted and distinct
                raise ModelFileError("saved classes are not sorted and distinct")
            model.classes_ = classes
        model._rng.bit_generator.state = header["rng_state"]
        model._t = check_positive_int(header["t"], "t", minimum=0)
        if model._t >= 2**53:  # the kernels count steps in int64 and float64
            raise ModelFileError(f"t = {model._t} optimizer steps is beyond any training run")
        if header["batch_size"] is not None:
            state = (arrays["opt_m"], arrays["opt_v"])
            if any(a.shape != theta.shape or a.dtype != theta.dtype for a in state):
                raise ModelFileError("saved optimizer state does not match the weights")
            check_finite(state[0], "saved optimizer state")
            check_finite(state[1], "saved optimizer state")
            if name == "Adam" and (state[1] < 0).any():
                raise ModelFileError("saved Adam second moments hold negative values")
            batch_size = check_positive_int(header["batch_size"], "batch_size")
            sparse = header.get("sparse_input", False)  # absent in files written before it
            if not isinstance(sparse, bool):
                raise ModelFileError(f"sparse_input must be true or false, got {sparse!r}")
            work = model._net.engine.workspace_size(model._net.sizes, batch_size, sparse=sparse)
            if work * np.dtype(model.dtype).itemsize > MAX_BYTES:
                raise ModelFileError(f"batch_size {batch_size} needs a {work}-element work "
                                     "buffer, over the model file limit")
            model._trainer = Trainer(model._net, batch_size, model._opt_code(),
                                     tuple(aligned_copy(a) for a in state), sparse=sparse)
        return model

    def __repr__(self):
        return (f"Sequential({self.layers!r}, optimizer={self.optimizer!r}, loss={self.loss!r}, "
                f"backend={self.backend!r}, dtype={np.dtype(self.dtype).name!r}, "
                f"seed={self.seed!r}, n_threads={self.n_threads!r})")
