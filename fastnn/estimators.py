"""Drop-in replacements for scikit-learn's ``MLPClassifier`` and ``MLPRegressor``.

Change the import, keep the code: the constructor parameters, fitted attributes,
methods, warnings and verbose output are scikit-learn's (1.9), and for the same
``random_state`` in float64 the numbers are too. What differs is where the work
happens: each epoch of ``sgd``/``adam`` is one call into the fused ``run_epochs`` kernel
(no Python per mini-batch), and ``lbfgs`` evaluates the loss and its gradient with the
fused ``loss_grad`` kernel.

How the random draws line up with scikit-learn's: the estimator asks scikit-learn's own
``check_random_state`` for its generator on every ``fit``/``partial_fit`` call, draws
the initial weights layer by layer (``w`` then ``b``, ``uniform(-bound, bound)``, the
bound's factor taken from the *hidden* activation for every layer), then the early
stopping split (scikit-learn's ``train_test_split``), then one
``sklearn.utils.shuffle`` of the sample indices per epoch. The batches are the
consecutive slices of that order, the last one possibly shorter.

Matched scikit-learn quirks (on purpose, so results stay identical):

- ``warm_start=True`` with ``early_stopping=True``: after the first fit the restored
  "best" weights are the live weights, so a later warm-started fit whose validation
  score never beats the first fit's best keeps its *last* weights, not the best ones.
- ``MLPRegressor.partial_fit`` exists for ``solver="lbfgs"`` (scikit-learn's guard
  does not call its check there) and runs a full L-BFGS fit from the current weights.
- Without stratification for multiclass targets: the early-stopping split is stratified
  only for binary classification (one output column).

How close the numbers are: the same arithmetic, so runs agree to rounding (weights within
2.1e-15 after 200 Adam epochs on digits, 1.5e-12 after 50 L-BFGS iterations on
``make_regression(300, 10)``). The products sum in another order than scikit-learn's BLAS
calls, so the last bits differ, and long L-BFGS runs, whose line searches amplify such
differences, drift apart as any two BLAS builds would: on that data with
``hidden_layer_sizes=(20,)``, ``loss_`` after 300 iterations was 0.32604 in scikit-learn,
0.32666 here and 0.32610 with ``backend="numpy"``.

Where fastnn deliberately differs (each only on a failure path):

- Divergence: an epoch whose loss, weights or optimizer state become non-finite is
  undone, a ``fastnn.DivergenceWarning`` is issued and training stops; the estimator
  keeps the weights of the last finite epoch (``loss_`` NaN if none ever finished;
  scikit-learn trains on to NaN weights and raises "Solver produced non-finite parameter
  weights", leaving them in place). L-BFGS keeps its last accepted iterate with a finite
  loss. The warning is a
  ``SolverDivergenceWarning``, both a ``fastnn.DivergenceWarning`` and a scikit-learn
  ``ConvergenceWarning`` (which scikit-learn's L-BFGS issues there).
- A warm-started ``fit`` or a ``partial_fit`` whose ``hidden_layer_sizes``, number of
  features or of outputs no longer match the fitted network raises ``ValueError``
  (scikit-learn trains on the old network, or broadcasts the new targets onto it).
- L-BFGS on float32 data trains in float32, as the other solvers do (scikit-learn's
  ``coefs_`` become float64 views of SciPy's result there, its arithmetic float64). A
  warm-started L-BFGS fit updates the arrays in ``coefs_``/``intercepts_`` in place, as
  every stochastic fit does in both libraries (scikit-learn's L-BFGS binds new arrays,
  so arrays a user held from before keep the old weights there).
- ``KeyboardInterrupt`` during ``fit``/``partial_fit``: the epochs of the interrupted
  engine call (weights, optimizer state and bookkeeping) are undone, early stopping
  restores its best weights as usual, and the interrupt is re-raised (scikit-learn warns
  and returns). Epochs run several per call (about 20 ms of work, see
  ``fastnn._network.CALL_SECONDS``) where nothing happens between them in Python: no
  early stopping, verbose output or invscaling rate, and never past the epoch where the
  no-improvement rule could first fire, so the numbers stay scikit-learn's.
- ``predict``/``predict_proba`` raise ``ValueError`` when the output overflows to a
  non-finite value (scikit-learn returns NaN, or an arbitrary class).
- ``save(path)`` and ``fastnn.load(path)``: model files without pickle (see ``save``).
"""

import ctypes
import numbers
import operator
import time
import warnings

import numpy as np
import scipy.optimize
import scipy.sparse as sp
from sklearn import get_config
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as _SkMLPClassifier
from sklearn.neural_network import MLPRegressor as _SkMLPRegressor
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state, column_or_1d
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.fixes import _get_additional_lbfgs_options_dict
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import _check_partial_fit_first_call, type_of_target, unique_labels
from sklearn.utils.optimize import _check_optimize_result
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from fastnn import kernels as K
from fastnn._network import (
    MAX_THREADS,
    Network,
    Trainer,
    aligned_copy,
    aligned_empty,
    aligned_zeros,
    blas_threads,
    epochs_per_call,
    layout,
    make_hyper,
)
from fastnn._validation import as_engine_csr, check_dtype, overflow_error
from fastnn.model import DivergenceWarning
from fastnn.backends import BACKENDS
from fastnn.backends import numpy as numpy_engine


class SolverDivergenceWarning(DivergenceWarning, ConvergenceWarning):
    """The estimators' :class:`fastnn.DivergenceWarning`, also a scikit-learn
    ``ConvergenceWarning`` (what scikit-learn issues where L-BFGS stops at a non-finite
    loss): code that filters or catches either sees it."""


__all__ = ["MLPClassifier", "MLPRegressor"]

_STOCHASTIC = ("sgd", "adam")
_HIDDEN_CODES = {"identity": K.IDENTITY, "logistic": K.LOGISTIC, "tanh": K.TANH, "relu": K.RELU}
# The output activations a network may have: those a fit sets, and the hidden ones a
# user may assign to out_activation_ (scikit-learn's forward pass takes any of them).
_OUTPUT_CODES = {"identity": K.IDENTITY, "logistic": K.LOGISTIC, "softmax": K.SOFTMAX,
                 "exp": K.EXP, "relu": K.RELU, "tanh": K.TANH}
_TRAINED_OUTPUTS = ("identity", "logistic", "softmax", "exp")
_EXTRA_CONSTRAINTS = {
    "n_threads": [None, Interval(numbers.Integral, 1, MAX_THREADS, closed="both")],
    "backend": [StrOptions(set(BACKENDS))],
    "dtype": [None, StrOptions({"float32", "float64"}),
              Options(type, {np.float32, np.float64})],
}


_INT_ATTRS = ("n_features_in_", "n_outputs_", "n_iter_", "t_", "_no_improvement_count")
_FLOAT_ATTRS = ("loss_", "best_loss_", "best_validation_score_")
_LIST_ATTRS = ("loss_curve_", "validation_scores_")
_OPT_FIELDS = ("solver", "schedule", "learning_rate_init", "learning_rate", "momentum",
               "nesterov", "power_t", "beta_1", "beta_2", "epsilon", "steps")


def _to_json(value, name):
    """``value`` as plain JSON data, or TypeError naming the parameter."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        if not np.isfinite(value):
            raise TypeError(f"cannot save {name}={value!r}: only finite numbers are stored")
        return value
    if isinstance(value, (tuple, list, np.ndarray)):
        return [_to_json(v, name) for v in value]
    if isinstance(value, type) and issubclass(value, np.generic) or isinstance(value, np.dtype):
        return np.dtype(value).name
    raise TypeError(f"cannot save {name}={value!r}: model files store only JSON-able "
                    "parameter values (numbers, strings, lists, None)")


def _check_nonneg_int(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def _array_reader(arrays, error):
    def get_int(name, minimum):
        arr = arrays[name]
        if arr.shape != (1,) or arr.dtype.kind not in "iu" or int(arr[0]) < minimum:
            raise error(f"{name} must be one integer >= {minimum}, got {arr!r}")
        return int(arr[0])
    return get_int


class _OptimizerState:
    """What scikit-learn's optimizer object carries between epochs and partial_fit calls.

    The hyperparameters are captured when the optimizer is created, as scikit-learn
    does: ``set_params`` between ``partial_fit`` calls does not change a running one.
    ``m`` is the SGD velocity or Adam's first moment, ``v`` Adam's second moment, both
    in the flat parameter layout; ``steps`` counts Adam updates (its bias correction).
    """

    def __init__(self, est, n_params, dtype):
        self.solver = est.solver
        self.schedule = est.learning_rate
        self.learning_rate_init = est.learning_rate_init
        self.learning_rate = float(est.learning_rate_init)
        self.momentum = est.momentum
        self.nesterov = est.nesterovs_momentum
        self.power_t = est.power_t
        self.beta_1 = est.beta_1
        self.beta_2 = est.beta_2
        self.epsilon = est.epsilon
        self.steps = 0
        self.m = aligned_zeros(n_params, dtype)
        self.v = aligned_zeros(n_params, dtype)

    def __setstate__(self, state):
        # unpickled arrays come from NumPy's allocator: realign what the kernels stream
        self.__dict__.update(state)
        self.m, self.v = aligned_copy(self.m), aligned_copy(self.v)

    @property
    def code(self):
        if self.solver == "adam":
            return K.OPT_ADAM
        return K.OPT_NESTEROV if self.nesterov else K.OPT_SGD

    def hyper(self, dtype, alpha):
        # Adam's kernel applies the bias correction itself, from learning_rate_init.
        return make_hyper(dtype, lr=self.learning_rate, momentum=self.momentum,
                          beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon,
                          alpha=alpha)

    def iteration_ends(self, time_step):
        if self.solver == "sgd" and self.schedule == "invscaling":
            self.learning_rate = float(self.learning_rate_init) / (time_step + 1) ** self.power_t

    def trigger_stopping(self, msg, verbose):
        """True to stop; the adaptive SGD schedule divides the rate by 5 instead."""
        if self.solver != "sgd" or self.schedule != "adaptive":
            if verbose:
                print(msg + " Stopping.")
            return True
        if self.learning_rate <= 1e-6:
            if verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self.learning_rate /= 5.0
        if verbose:
            print(msg + " Setting learning rate to %f" % self.learning_rate)
        return False


def _finite_2d(a):
    """``np.isfinite(a).all()`` for a 2-D array; C-contiguous float arrays take the
    compiled check (0.3 us instead of ~1.5 us: most of a one-row predict's budget)."""
    if a.flags.c_contiguous and a.dtype.char in "fd":  # float32, float64
        return K.all_finite(a)  # the package attribute: no per-call import statement
    return bool(np.isfinite(a).all())


_MT19937_LAYOUT_OK = None  # unknown until the first compiled shuffle of the process


def _mt19937_words(random_state):
    """The live MT19937 state of a ``RandomState``, as a writable view of 625 uint32 words
    (the 624-word key, then the position), with the bit generator's lock; None when the
    generator is not an MT19937 laid out as this check found NumPy lays it out.

    The view is the generator's own memory, found through its ``ctypes`` interface:
    ``get_state``/``set_state`` copy the key word by word (~70 us each), which for
    scikit-learn's default ``n_iter_no_change`` (calls of at most 11 epochs) cost more
    than the shuffles they replace.
    """
    global _MT19937_LAYOUT_OK
    bit_generator = getattr(random_state, "_bit_generator", None)
    if type(bit_generator) is not np.random.MT19937:
        return None
    words = np.ctypeslib.as_array(
        (ctypes.c_uint32 * 625).from_address(bit_generator.ctypes.state_address))
    if _MT19937_LAYOUT_OK is None:  # once per process, against the public copy
        state = random_state.get_state(legacy=False)["state"]
        _MT19937_LAYOUT_OK = bool(np.array_equal(words[:624], state["key"])
                                  and words[624] == state["pos"])
    return (words, bit_generator.lock) if _MT19937_LAYOUT_OK else None


def _fill_orders(orders, sample_idx, random_state, compiled):
    """One epoch's visiting order per row of ``orders``, drawn as scikit-learn draws them:
    ``sample_idx = sklearn.utils.shuffle(sample_idx, random_state=random_state)`` per
    epoch. Returns the last row (the next call's ``sample_idx``).

    ``compiled``: the shuffles run in a kernel on the generator's own MT19937 state (the
    same draws; iris' 200 take ~0.4 ms there instead of ~1.5 ms). Otherwise, and for a
    ``RandomState`` on another bit generator, ``random_state.shuffle`` runs per epoch:
    scikit-learn's shuffle is ``resample`` without replacement, which shuffles
    ``arange(n)`` and indexes with it; doing that directly skips its input validation
    (~30 us per epoch).
    """
    live = _mt19937_words(random_state) if compiled else None
    if live is not None:
        words, lock = live
        with lock:
            words[624] = K.shuffled_orders(words[:624], int(words[624]), sample_idx, orders)
        return orders[-1]
    for row in orders:
        perm = np.arange(sample_idx.shape[0])
        random_state.shuffle(perm)
        sample_idx = sample_idx[perm]
        row[:] = sample_idx
    return sample_idx


def _plain_int_labels(y):
    """True for the common target: a 1-D ndarray of integers. Its label encoding is
    done here directly; anything else goes through ``LabelBinarizer``, whose type
    checks cost ~0.9 ms per fit (6% of an iris fit)."""
    return isinstance(y, np.ndarray) and y.ndim == 1 and y.dtype.kind in "iu"


def _fit_label_binarizer(y):
    """``LabelBinarizer().fit(y)``: the same fitted attributes, found faster for plain
    integer labels of two or more classes (``type_of_target``: binary or multiclass)."""
    if _plain_int_labels(y) and y.shape[0] > 0:
        classes = np.unique(y)
        if classes.shape[0] >= 2:
            lb = LabelBinarizer()
            lb.y_type_ = "binary" if classes.shape[0] == 2 else "multiclass"
            lb.sparse_input_ = False
            lb.classes_ = classes
            return lb
    return LabelBinarizer().fit(y)


def _binarize(lb, y):
    """``lb.transform(y).astype(bool)``; for plain integer labels, one comparison."""
    classes = lb.classes_
    if (_plain_int_labels(y) and lb.y_type_ in ("binary", "multiclass")
            and classes.shape[0] >= 2 and classes.dtype.kind in "iu"):
        if classes.shape[0] == 2:
            return (y == classes[1])[:, None]
        return y[:, None] == classes[None, :]
    return lb.transform(y).astype(bool)


def _same_view(a, b):
    """True when ``a`` is exactly the view ``b`` (same memory, shape, strides, dtype)."""
    return (isinstance(a, np.ndarray) and a.shape == b.shape and a.dtype == b.dtype
            and a.strides == b.strides
            and a.__array_interface__["data"][0] == b.__array_interface__["data"][0])


_PARAM_NAMES = {}


class _BaseMLP(BaseEstimator):
    """Shared engine of the two estimators; not for direct use."""

    _is_classifier = False

    # --- parameters ----------------------------------------------------------------
    @classmethod
    def _get_param_names(cls):
        # scikit-learn reads __init__'s signature with inspect on every get_params, and
        # every fit validates its parameters through get_params (validation 139 us with
        # it, 71 us without). The names belong to the class: each looks them up once.
        names = _PARAM_NAMES.get(cls)
        if names is None:
            names = _PARAM_NAMES[cls] = tuple(super()._get_param_names())
        return list(names)

    def _hidden_sizes(self):
        hidden = self.hidden_layer_sizes
        if not hasattr(hidden, "__iter__"):
            hidden = [hidden]
        hidden = list(hidden)
        if np.any(np.array(hidden) <= 0):
            raise ValueError("hidden_layer_sizes must be > 0, got %s." % hidden)
        # operator.index, not int: a float size raises scikit-learn's TypeError ("'float'
        # object cannot be interpreted as an integer") instead of being truncated; a bool
        # is an integer to Python, not to scikit-learn (TypeError too)
        for h in hidden:
            if isinstance(h, (bool, np.bool_)):
                raise TypeError(f"hidden_layer_sizes must hold integers, got {h!r}")
        return [operator.index(h) for h in hidden]

    def _fit_dtype(self, X):
        if self.dtype is None:
            return np.float32 if X.dtype == np.float32 else np.float64
        return check_dtype(self.dtype)

    # --- the network and its flat buffer -------------------------------------------
    def __getstate__(self):
        state = dict(super().__getstate__())
        state.pop("_net", None)  # holds the backend module, which does not pickle
        state.pop("_views", None)  # identity cache: meaningless in another process
        state.pop("_snapshot", None)  # scratch of _fit_stochastic
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        # Pickle stores coefs_ and intercepts_ apart from the buffer they were views of:
        # they become views again (of an aligned buffer packed from them), so that an
        # array taken from the unpickled model is its weights, as it was before pickling.
        if "_theta" in self.__dict__ and "coefs_" in self.__dict__:
            try:
                self._sync_theta()
            except ValueError:
                pass  # arrays of the wrong shapes: predict and fit name them

    def _network(self, theta=None, sizes=None):
        """The Network over ``theta`` (default ``self._theta``) with layer widths
        ``sizes`` (default ``self._sizes``); the one over ``self._theta`` is kept and
        rebuilt when the backend, the buffer or the activations changed.

        The activations are read from ``activation`` and ``out_activation_`` at every
        call, as scikit-learn's forward pass reads them: ``set_params(activation=...)``
        after a fit, or ``out_activation_ = "identity"`` for raw outputs, take effect in
        the next predict and warm-started fit.
        """
        theta = self._theta if theta is None else theta
        sizes = self._sizes if sizes is None else sizes
        net = getattr(self, "_net", None)
        names = (self.activation, self.out_activation_)
        if (net is not None and net.backend == self.backend and net.theta is theta
                and net.activation_names == names
                and (net.sizes is sizes or np.array_equal(net.sizes, sizes))):
            return net
        if names[1] not in _OUTPUT_CODES:
            raise ValueError(f"out_activation_ must be one of {sorted(_OUTPUT_CODES)}, got "
                             f"{names[1]!r}")
        acts = [_HIDDEN_CODES[names[0]]] * (len(sizes) - 2) + [_OUTPUT_CODES[names[1]]]
        net = Network(sizes, acts, theta.dtype, self.backend)
        net.theta = theta
        net.activation_names = names
        if theta is self.__dict__.get("_theta"):
            self._net = net
        return net

    def _bind_views(self):
        net = self._network()
        self.coefs_ = net.coefs()
        self.intercepts_ = net.intercepts()
        self._views = self.coefs_ + self.intercepts_

    def _live_sizes(self):
        """The layer widths that ``coefs_`` and ``intercepts_`` describe now, checked to
        form a chain of ``n_layers_ - 1`` layers (scikit-learn's forward pass reads the
        network from them alone; a user may assign or trim them)."""
        coefs, intercepts = list(self.coefs_), list(self.intercepts_)
        n = self.n_layers_ - 1
        if len(coefs) != n or len(intercepts) != n:
            raise ValueError(f"coefs_ and intercepts_ must hold n_layers_ - 1 = {n} arrays "
                             f"each, got {len(coefs)} and {len(intercepts)}")
        if n < 1:
            raise ValueError(f"n_layers_ must be at least 2, got {self.n_layers_}")
        if np.ndim(coefs[0]) != 2:
            raise ValueError(f"coefs_[0] has shape {np.shape(coefs[0])}, expected "
                             "(n_features, n_units)")
        sizes = [np.shape(coefs[0])[0]]
        for i, (w, b) in enumerate(zip(coefs, intercepts)):
            if np.ndim(w) != 2 or np.shape(w)[0] != sizes[-1]:
                raise ValueError(f"coefs_[{i}] has shape {np.shape(w)}, expected "
                                 f"({sizes[-1]}, n_units): one row per unit of the layer "
                                 "below")
            if np.shape(b) != (np.shape(w)[1],):
                raise ValueError(f"intercepts_[{i}] has shape {np.shape(b)}, expected "
                                 f"({np.shape(w)[1]},), one per column of coefs_[{i}]")
            sizes.append(np.shape(w)[1])
        n_in = self.__dict__.get("n_features_in_", sizes[0])
        if sizes[0] != n_in:
            raise ValueError(f"coefs_[0] has {sizes[0]} rows, but n_features_in_ is {n_in}")
        return np.asarray(sizes, dtype=np.int64)

    def _packed(self):
        """``(theta, sizes)``: the flat buffer of the weights that ``coefs_`` and
        ``intercepts_`` hold now, and the layer widths they describe.

        ``self._theta`` while they are its views (the common case, checked by identity
        first); else a new buffer packed from the arrays they hold. After unpickling, or
        after a user assigns arrays of their own (``coefs_[0] = W``, weights trained
        elsewhere on an unfitted estimator, a trimmed network), those arrays are the
        weights, as in scikit-learn, and so are later in-place edits to them: each
        predict packs them again. Nothing on ``self`` changes but the identity cache, so
        predict has no side effects and threads may share a model.
        """
        live = list(self.coefs_) + list(self.intercepts_)
        cached = self.__dict__.get("_views")
        if (cached is not None and len(cached) == len(live) == 2 * self.n_layers_ - 2
                and all(map(operator.is_, live, cached))):
            return self._theta, self._sizes  # the arrays _bind_views made (the fast path)
        sizes = self._live_sizes()
        theta = self.__dict__.get("_theta")
        if theta is not None and np.array_equal(sizes, self._sizes):
            net = self._network()
            if all(map(_same_view, live, net.coefs() + net.intercepts())):
                self._views = live
                return theta, self._sizes
        if theta is not None:
            dtype = theta.dtype
        else:  # assigned to an unfitted estimator: float32 only if all of it is
            float32 = all(np.asarray(a).dtype == np.float32 for a in live)
            dtype = np.dtype(np.float32 if float32 else np.float64)
        return np.concatenate(
            [np.asarray(a, dtype=dtype).ravel() for a in live],
            out=aligned_empty(sum(int(np.size(a)) for a in live), dtype)), sizes

    def _sync_theta(self):
        """Before training: ``coefs_``/``intercepts_`` become views of the buffer the
        engine trains, packed from them if they are not (see :meth:`_packed`)."""
        theta, sizes = self._packed()
        if theta is not self.__dict__.get("_theta"):
            self._theta, self._sizes = theta, sizes
            self._bind_views()

    def _initialize(self, layer_units, dtype, random_state):
        self.n_iter_ = 0
        self.t_ = 0
        self.n_layers_ = len(layer_units)
        self.out_activation_ = self._output_activation()
        self._sizes = np.asarray(layer_units, dtype=np.int64)
        self._theta = aligned_zeros(layout(layer_units)[1], dtype)
        net = self._network()
        factor = 2.0 if self.activation == "logistic" else 6.0
        net.init_glorot(random_state, [factor] * (self.n_layers_ - 1))
        self._bind_views()
        self._best_theta = self._theta.copy()
        if self.solver in _STOCHASTIC:
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.best_validation_score_ = None

    # --- fitting -------------------------------------------------------------------
    def _fit(self, X, y, sample_weight=None, incremental=False):
        with blas_threads(self.n_threads):
            return self._fit_body(X, y, sample_weight, incremental)

    def _fit_body(self, X, y, sample_weight, incremental):
        hidden = self._hidden_sizes()
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        with np.errstate(over="ignore", invalid="ignore"):
            # scikit-learn's finiteness check sums X: +inf and -inf would also warn there
            X, Y = self._validate_input(X, y, incremental, reset=first_pass)
        if first_pass:
            dtype = self._fit_dtype(X)
        else:
            self._sync_theta()
            dtype = self._theta.dtype.type
            if self.out_activation_ not in _TRAINED_OUTPUTS:
                raise ValueError(f"cannot train with out_activation_={self.out_activation_!r}: "
                                 f"the losses pair with one of {list(_TRAINED_OUTPUTS)}; set "
                                 "it back, or set warm_start=False to start over")
        X = self._engine_rows(X, dtype)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=dtype)
        if Y.ndim == 1:
            Y = Y.reshape((-1, 1))
        self.n_outputs_ = Y.shape[1]
        layer_units = [X.shape[1]] + hidden + [self.n_outputs_]
        random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(layer_units, dtype, random_state)
        elif list(self._sizes) != layer_units:
            raise ValueError(f"the fitted network has layer sizes {self._sizes.tolist()}, but "
                             f"hidden_layer_sizes and the data now give {layer_units}; "
                             "set warm_start=False to start over")
        if self.solver in _STOCHASTIC:
            self._fit_stochastic(X, Y, sample_weight, incremental, random_state)
        else:
            self._fit_lbfgs(X, Y, sample_weight)
        if not np.isfinite(self._theta).all():
            raise ValueError(
                "Solver produced non-finite parameter weights. The input data may"
                " contain large values and need to be preprocessed."
            )
        return self

    @staticmethod
    def _engine_rows(X, dtype):
        # What the engine reads: C-contiguous rows of dtype, or a CSR matrix of dtype
        # (CSC converted), whose stored values the kernels read in place: never densified.
        if sp.issparse(X):
            return as_engine_csr(X, dtype, "X")
        X = np.ascontiguousarray(X, dtype=dtype)
        # A read-only array (a joblib memmap in a parallel search) is a distinct numba
        # type: a copy costs O(n * d) once per call, a new specialization ~5 s of compile.
        return X if X.flags.writeable else X.copy()

    def _fit_lbfgs(self, X, Y, sample_weight):
        net = self._network()
        dtype = net.dtype
        Yk = np.ascontiguousarray(Y, dtype=dtype)
        sw = (np.ones(X.shape[0], dtype=dtype) if sample_weight is None
              else np.ascontiguousarray(sample_weight, dtype=dtype))
        hyper = make_hyper(dtype, alpha=self.alpha)
        work = net.workspace(X.shape[0], sp.issparse(X))
        grad = aligned_empty(net.theta.shape[0], dtype)

        def loss_and_grad(packed):
            net.theta[...] = packed
            loss = net.loss_grad_into(X, Yk, sw, hyper, work, grad)
            return float(loss), grad.astype(np.float64)  # a copy: scipy keeps it

        iprint = 1 if (self.verbose is True or self.verbose >= 1) else -1
        # The last accepted iterate (finite loss): where Ctrl-C or a non-finite result
        # leaves the model. Recording it changes no number of the run.
        accepted = net.theta.copy()
        accepted_loss = [np.nan]

        def remember(intermediate_result):
            if np.isfinite(intermediate_result.fun):
                accepted[...] = intermediate_result.x
                accepted_loss[0] = float(intermediate_result.fun)

        try:
            with np.errstate(over="ignore", invalid="ignore"):  # non-finite: reported below
                result = scipy.optimize.minimize(
                    loss_and_grad,
                    net.theta.astype(np.float64),
                    method="L-BFGS-B",
                    jac=True,
                    callback=remember,
                    options={
                        "maxfun": self.max_fun,
                        "maxiter": self.max_iter,
                        "gtol": self.tol,
                        **_get_additional_lbfgs_options_dict("iprint", iprint),
                    },
                )
        except KeyboardInterrupt:
            net.theta[...] = accepted
            raise
        if not (np.isfinite(result.fun) and np.isfinite(result.x).all()):
            net.theta[...] = accepted
            self.n_iter_ = int(result.nit)
            self.loss_ = np.float64(accepted_loss[0])
            warnings.warn(
                f"training diverged: L-BFGS ended with loss = {result.fun}; kept the last "
                "iterate with a finite loss. Scale the inputs.", SolverDivergenceWarning,
                stacklevel=6)
            return
        self.n_iter_ = _check_optimize_result("lbfgs", result, self.max_iter)
        self.loss_ = np.float64(result.fun)
        net.theta[...] = result.x

    def _fit_stochastic(self, X, Y, sample_weight, incremental, random_state):
        net = self._network()
        dtype = net.dtype
        if not incremental or getattr(self, "_optimizer", None) is None:
            self._optimizer = _OptimizerState(self, net.theta.shape[0], dtype)
        opt = self._optimizer
        # scikit-learn keeps its optimizer across a later L-BFGS fit too: it continues in
        # the arithmetic of the new dtype, and fails on other shapes (ValueError from
        # NumPy's broadcasting)
        if opt.m.shape != net.theta.shape:
            raise ValueError(
                f"partial_fit cannot continue the optimizer state of an earlier fit: it "
                f"holds {opt.m.shape[0]} parameters, the network now has "
                f"{net.theta.shape[0]} (rebuilt since, by a fit with solver='lbfgs' or from "
                "coefs_ of other shapes); call fit, or partial_fit on a new estimator")
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        if opt.m.dtype != net.theta.dtype:
            opt.m, opt.v = (aligned_copy(a.astype(net.theta.dtype)) for a in (opt.m, opt.v))
        early_stopping = self.early_stopping
        if early_stopping:
            stratify = Y if (self._is_classifier and self.n_outputs_ == 1) else None
            arrays = (X, Y) if sample_weight is None else (X, Y, sample_weight)
            parts = train_test_split(*arrays, random_state=random_state,
                                     test_size=self.validation_fraction, stratify=stratify)
            X_train, X_val, Y_train, Y_val = parts[:4]
            sw_train, sw_val = parts[4:] if sample_weight is not None else (None, None)
            if X_val.shape[0] < 2:
                raise ValueError(
                    "The validation set is too small. Increase 'validation_fraction' "
                    "or the size of your dataset."
                )
            y_val = self._validation_targets(Y_val)
        else:
            X_train, Y_train, sw_train = X, Y, sample_weight
            X_val = y_val = sw_val = None

        n_samples = X_train.shape[0]
        if self.batch_size == "auto":
            batch_size = min(200, n_samples)
        else:
            if self.batch_size > n_samples:
                warnings.warn(
                    "Got `batch_size` less than 1 or larger than "
                    "sample size. It is going to be clipped"
                )
            batch_size = int(np.clip(self.batch_size, 1, n_samples))
        n_batches = -(-n_samples // batch_size)

        if not sp.issparse(X_train):  # _fit_body made sparse X the engine's CSR already
            X_train = np.ascontiguousarray(X_train, dtype=dtype)
        Y_train = np.ascontiguousarray(Y_train, dtype=dtype)
        sw_train = (np.ones(n_samples, dtype=dtype) if sw_train is None
                    else np.ascontiguousarray(sw_train, dtype=dtype))
        trainer = Trainer(net, batch_size, opt.code, state=(opt.m, opt.v),
                          sparse=sp.issparse(X_train))
        hyper = opt.hyper(dtype, self.alpha)
        sample_idx = np.arange(n_samples, dtype=np.int64)
        # The state at the start of the running engine call: epochs cut short by Ctrl-C
        # are undone back to it (the engine itself undoes one whose loss or weights
        # became non-finite). Copying it changes no number, so finite runs stay identical
        # to scikit-learn's.
        live = (net.theta, opt.m) + ((opt.v,) if opt.solver == "adam" else ())
        saved = self._snapshot_buffers(live)
        interrupted = False
        numba_engine = net.backend == "numba"
        self.n_iter_ = 0
        # Epochs per engine call: one wherever scikit-learn's loop changes something
        # between epochs (the validation score, verbose lines, the invscaling rate).
        # Otherwise as many as fit in CALL_SECONDS, and never past the epoch where the
        # no-improvement rule could first fire: a stop or an adaptive rate change then only
        # happens at the end of a call, and every number stays scikit-learn's.
        grouped = not (incremental or early_stopping or self.verbose
                       or (opt.solver == "sgd" and opt.schedule == "invscaling"))
        per_call = 1
        totals = np.empty(1, dtype=np.float64)
        stop = False
        while self.n_iter_ < self.max_iter:
            count = 1
            if grouped:
                count = max(1, min(per_call, self.max_iter - self.n_iter_,
                                   self.n_iter_no_change + 1 - self._no_improvement_count))
            if totals.shape[0] < count:
                totals = np.empty(count, dtype=np.float64)
            for keep, arr in zip(saved, live):
                np.copyto(keep, arr)
            marks = self._epoch_marks()
            try:
                start = time.perf_counter()
                orders = np.empty((count, n_samples), dtype=np.int64)
                if self.shuffle:
                    sample_idx = _fill_orders(orders, sample_idx, random_state, numba_engine)
                else:
                    orders[:] = sample_idx
                hyper[K.HYPER_LR] = opt.learning_rate
                if numba_engine:
                    done = trainer.epochs(X_train, Y_train, sw_train, orders, hyper, opt.steps,
                                          totals[:count])
                else:  # a diverging epoch is reported below; the NumPy engine would warn
                    with np.errstate(over="ignore", invalid="ignore"):
                        done = trainer.epochs(X_train, Y_train, sw_train, orders, hyper,
                                              opt.steps, totals[:count])
                per_call = epochs_per_call((time.perf_counter() - start) / count)
                for total in totals[:done]:
                    opt.steps += n_batches
                    self.n_iter_ += 1
                    # np.float64, as scikit-learn's accumulated loss (its repr shows it)
                    self.loss_ = np.float64(total) / n_samples
                    self.t_ += n_samples
                    self.loss_curve_.append(self.loss_)
                    if self.verbose:
                        print("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_))
                    self._update_no_improvement_count(early_stopping, X_val, y_val, sw_val)
                    opt.iteration_ends(self.t_)
                    if self._no_improvement_count > self.n_iter_no_change:
                        what = ("Validation score" if early_stopping else "Training loss")
                        msg = (f"{what} did not improve more than tol=%f for %d consecutive "
                               "epochs." % (self.tol, self.n_iter_no_change))
                        if opt.trigger_stopping(msg, self.verbose):
                            stop = True
                            break
                        self._no_improvement_count = 0
                if done < count:  # the engine has already undone the diverging epoch
                    total = float(totals[done])
                    if "loss_" not in self.__dict__:  # no epoch ever finished: NaN, as
                        self.loss_ = np.float64(np.nan)  # scikit-learn's and L-BFGS's
                    # a finite loss with non-finite weights or optimizer state: an update
                    # or a moment overflowed, or a NaN in X let through under
                    # assume_finite=True
                    what = ("" if not np.isfinite(total) else
                            ", weights or optimizer state became non-finite")
                    warnings.warn(
                        f"training diverged at epoch {self.n_iter_ + 1} (loss = "
                        f"{total / n_samples}{what}); stopped and kept the weights of the "
                        "last finite epoch. Lower learning_rate_init or scale the inputs.",
                        SolverDivergenceWarning, stacklevel=6)
                    break
            except KeyboardInterrupt:
                # Unlike scikit-learn (which warns and returns), re-raise: but first put
                # the model back at the end of the last completed call.
                for keep, arr in zip(saved, live):
                    np.copyto(arr, keep)
                self._restore_marks(marks)
                interrupted = True
                break
            if stop or incremental:
                break
            if self.n_iter_ == self.max_iter:
                warnings.warn(
                    "Stochastic Optimizer: Maximum iterations (%d) reached and the "
                    "optimization hasn't converged yet." % self.max_iter,
                    ConvergenceWarning,
                )

        if early_stopping:
            # Restore the best weights; afterwards the "best" snapshot is the live
            # buffer itself (None), as in scikit-learn, until a better score copies it.
            if self._best_theta is not None:
                net.theta[...] = self._best_theta
            self._best_theta = None
        if interrupted:
            raise KeyboardInterrupt

    def _snapshot_buffers(self, live):
        """Buffers for the start-of-epoch copies, kept between calls: a new 10 MB array
        per ``partial_fit`` costs more in page faults than the copy itself."""
        bufs = getattr(self, "_snapshot", None)
        if bufs is None or len(bufs) != len(live) or any(
                b.shape != a.shape or b.dtype != a.dtype for b, a in zip(bufs, live)):
            bufs = [np.empty_like(a) for a in live]
            self._snapshot = bufs
        return bufs

    def _epoch_marks(self):
        """The bookkeeping one epoch changes, to undo an interrupted epoch."""
        opt = self._optimizer
        return (self.n_iter_, self.t_, getattr(self, "loss_", None), len(self.loss_curve_),
                self._no_improvement_count, self.best_loss_, self.best_validation_score_,
                None if self.validation_scores_ is None else len(self.validation_scores_),
                self._best_theta, opt.steps, opt.learning_rate)

    def _restore_marks(self, marks):
        (self.n_iter_, self.t_, loss, n_curve, self._no_improvement_count, self.best_loss_,
         self.best_validation_score_, n_scores, self._best_theta, self._optimizer.steps,
         self._optimizer.learning_rate) = marks
        if loss is None:
            self.__dict__.pop("loss_", None)
        else:
            self.loss_ = loss
        del self.loss_curve_[n_curve:]
        if n_scores is not None:
            del self.validation_scores_[n_scores:]

    def _update_no_improvement_count(self, early_stopping, X_val, y_val, sw_val):
        if early_stopping:
            with np.errstate(over="ignore", invalid="ignore"):  # a diverging run's score
                score = self._score(X_val, y_val, sw_val)
            self.validation_scores_.append(score)
            if self.verbose:
                print("Validation score: %f" % self.validation_scores_[-1])
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_theta = self._theta.copy()
        else:
            last = self.loss_curve_[-1]
            if last > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if last < self.best_loss_:
                self.best_loss_ = last

    # --- prediction ----------------------------------------------------------------
    def _check_fitted(self):
        if "_theta" not in self.__dict__:
            check_is_fitted(self, "coefs_")

    def _plain_rows(self, X):
        # A float ndarray of the right width needs none of validate_data's conversions,
        # and skipping it takes ~100 us off every predict call: single-row latency. Its
        # finiteness is checked by the predict kernel, in the same call.
        return (type(X) is np.ndarray and X.ndim == 2 and X.dtype.kind == "f"
                and X.shape[0] > 0 and X.shape[1] == self.__dict__.get("n_features_in_")
                and "feature_names_in_" not in self.__dict__)

    def _validated(self, X):
        with np.errstate(over="ignore", invalid="ignore"):  # as in _fit
            return validate_data(self, X, accept_sparse=["csr", "csc"], reset=False)

    def _forward(self, X, check_input=True):
        """Output activations for ``X`` (2-D), from the current parameters."""
        if self.n_threads is None:  # the common case skips the context manager's cost
            return self._forward_body(X, check_input)
        with blas_threads(self.n_threads):
            return self._forward_body(X, check_input)

    def _forward_body(self, X, check_input):
        if check_input and not self._plain_rows(X):
            X = self._validated(X)  # everything else: lists, sparse, frames
        theta, sizes = self._packed()
        if X.shape[1] != sizes[0]:  # where no n_features_in_ held X to it (weights set by
            # hand): the engine reads rows as wide as the first layer
            raise ValueError(f"X has {X.shape[1]} features, but coefs_[0] has {sizes[0]} rows")
        if theta.dtype == np.float32 and np.result_type(X.dtype, np.float32) != np.float32:
            # scikit-learn computes X @ coefs_ in NumPy's promoted type: a float32 model
            # answers float64 rows in float64, with its weights exactly as they are
            theta = aligned_copy(theta.astype(np.float64))
        net = self._network(theta, sizes)
        X = self._engine_rows(X, net.dtype)
        if net.backend == "numba":
            out = net.predict(X)
        else:  # overflow is reported just below, as with the compiled engine
            with np.errstate(over="ignore", invalid="ignore"):
                out = net.predict(X)
        if out is None:  # rows holding a NaN or an infinity
            if not get_config()["assume_finite"]:
                self._validated(X)  # raises scikit-learn's error, naming which
            # The caller vouched for X (assume_finite=True): NaN and infinity run through
            # the arithmetic, as in scikit-learn, instead of the kernel's refusal.
            with np.errstate(all="ignore"):
                return numpy_engine.forward_output(X, net.theta, net.sizes, net.offsets,
                                                   net.acts)
        if check_input and not _finite_2d(out):
            # scikit-learn returns NaN (predict: an arbitrary class) here; refuse instead.
            raise overflow_error("the network's output", X)
        return out

    def _score(self, X, y, sample_weight=None):
        # Validation score during early stopping: X is already validated.
        y_pred = self._predict(X, check_input=False)
        if np.issubdtype(y_pred.dtype, np.floating) and not np.isfinite(y_pred).all():
            return np.nan
        return self._score_function(y, y_pred, sample_weight=sample_weight)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the network to ``X`` and ``y``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data. Sparse input is read as CSR rows, never densified.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Class labels (classification) or target values (regression).
        sample_weight : array-like of shape (n_samples,), default=None
            Per-sample weights; the loss is their weighted mean.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    # --- model files ---------------------------------------------------------------
    def save(self, path):
        """Write the fitted estimator to ``path`` (an ``.npz`` of arrays + a JSON header).

        The header holds ``get_params()`` (tuples as lists, NumPy scalars as Python
        numbers, a ``dtype`` class as its name, a ``RandomState`` as its state); the
        arrays hold the flat parameter buffer, ``classes_``, the loss and validation
        curves, counters, ``feature_names_in_`` and the optimizer state (SGD velocity or
        Adam moments, step count, current learning rate), so that ``predict`` after
        :func:`fastnn.load` gives identical numbers and ``partial_fit`` or a
        ``warm_start`` fit continues exactly as the saved estimator would. Nothing is
        pickled. The file is written to a temporary file and renamed into place.

        After loading, ``get_params()`` holds the same values in JSON's types: a
        ``hidden_layer_sizes`` list or array comes back as a tuple, ``dtype=np.float32``
        as ``"float32"``, and a ``RandomState`` as a new ``RandomState`` in the state it
        had at save time (so both copies draw the same numbers from there on).

        Raises
        ------
        NotFittedError
            The estimator is not fitted.
        TypeError
            A parameter cannot be stored as JSON, or ``classes_`` has object dtype
            (labels of mixed or non-string Python objects); fit with numeric or
            ``str`` labels (``np.asarray(y, dtype=str)``) to save.
        """
        from fastnn.io import STORABLE_KINDS, write_model

        self._check_fitted()
        params = self.get_params(deep=False)
        header = {"kind": self._kind}
        theta, sizes = self._packed()
        if sizes[-1] != self.n_outputs_:
            raise ValueError(f"cannot save: coefs_ describe a network of {sizes[-1]} outputs, "
                             f"but n_outputs_ is {self.n_outputs_}")
        # the layer widths themselves: hidden_layer_sizes may have been set since the fit
        arrays = {"theta": theta, "layer_sizes": sizes}
        rs = params.get("random_state")
        if isinstance(rs, np.random.RandomState):
            name, keys, pos, has_gauss, cached = rs.get_state(legacy=True)
            header["random_state"] = {"name": str(name), "pos": int(pos),
                                      "has_gauss": int(has_gauss), "cached": float(cached)}
            arrays["random_state_keys"] = keys
            params["random_state"] = None
        header["params"] = {k: _to_json(v, k) for k, v in params.items()}
        # weights set by hand on an unfitted estimator: what a fit would have recorded
        defaults = {"n_features_in_": int(sizes[0]), "n_iter_": 0, "t_": 0}
        for name in _INT_ATTRS:
            if name in self.__dict__ or name in defaults:
                value = self.__dict__.get(name, defaults.get(name))
                arrays[name] = np.array([value], dtype=np.int64)
        arrays["out_activation_"] = np.array([self.out_activation_], dtype=str)
        none_attrs = []
        for name in _FLOAT_ATTRS + _LIST_ATTRS:
            if name not in self.__dict__:
                continue
            value = self.__dict__[name]
            if value is None:
                none_attrs.append(name)
            else:
                arrays[name] = np.array(value, dtype=np.float64).reshape(-1)
        # state of the fitted layout only: of no use to weights of another (set by hand)
        def fits(a):
            return a.shape == theta.shape

        if "_best_theta" in self.__dict__:
            if self._best_theta is None or not fits(self._best_theta):
                none_attrs.append("_best_theta")
            else:
                arrays["best_theta"] = self._best_theta
        header["none_attrs"] = none_attrs
        if "feature_names_in_" in self.__dict__:
            arrays["feature_names_in_"] = np.asarray(self.feature_names_in_, dtype=str)
        opt = getattr(self, "_optimizer", None)
        if opt is not None and fits(opt.m):
            header["optimizer"] = {k: _to_json(getattr(opt, k), k) for k in _OPT_FIELDS}
            arrays["opt_m"], arrays["opt_v"] = opt.m, opt.v
        if self._is_classifier:
            lb = self._label_binarizer
            for name, classes in (("classes_", self.classes_), ("lb_classes_", lb.classes_)):
                classes = np.asarray(classes)
                if classes.dtype.kind not in STORABLE_KINDS:
                    raise TypeError(
                        f"cannot save an estimator whose {name} has dtype {classes.dtype}: model "
                        "files hold only numeric, text or datetime labels; fit with numeric or "
                        "str labels (e.g. np.asarray(y, dtype=str)) to save")
                arrays[name] = classes
            header["label_binarizer"] = {"y_type": str(lb.y_type_),
                                         "sparse_input": bool(lb.sparse_input_)}
        write_model(path, header, arrays)

    @classmethod
    def _from_file(cls, header, arrays):
        """Rebuild an estimator from :func:`fastnn.io.read_model`'s output.

        Everything is checked against everything else before any large allocation;
        inconsistencies raise :class:`fastnn.ModelFileError` (``fastnn.load`` also turns
        the KeyError/TypeError/ValueError of a malformed header into one).
        """
        from fastnn.io import ModelFileError

        params = header["params"]
        if not isinstance(params, dict):
            raise ModelFileError(f"params must be a JSON object, got {type(params).__name__}")
        params = dict(params)
        if isinstance(params.get("hidden_layer_sizes"), list):
            params["hidden_layer_sizes"] = tuple(params["hidden_layer_sizes"])
        if header.get("random_state") is not None:
            spec = header["random_state"]
            keys = arrays["random_state_keys"]
            if keys.shape != (624,) or keys.dtype.kind not in "iu":
                raise ModelFileError(f"random_state_keys has shape {keys.shape} and dtype "
                                     f"{keys.dtype}, expected (624,) uint32")
            rs = np.random.RandomState()
            rs.set_state((spec["name"], keys.astype(np.uint32), int(spec["pos"]),
                          int(spec["has_gauss"]), float(spec["cached"])))
            params["random_state"] = rs
        est = cls(**params)
        est._validate_params()
        get_int = _array_reader(arrays, ModelFileError)
        n_features = get_int("n_features_in_", 1)
        n_outputs = get_int("n_outputs_", 1)
        if "layer_sizes" in arrays:
            sizes = arrays["layer_sizes"]
            if (sizes.ndim != 1 or sizes.dtype.kind not in "iu" or len(sizes) < 2
                    or (sizes < 1).any() or sizes[0] != n_features or sizes[-1] != n_outputs):
                raise ModelFileError(f"layer_sizes {sizes!r} must be at least two positive "
                                     f"integers from n_features_in_ ({n_features}) to "
                                     f"n_outputs_ ({n_outputs})")
            sizes = [int(v) for v in sizes]
        else:  # files written before layer_sizes was stored: the layout of the parameters
            sizes = [n_features] + est._hidden_sizes() + [n_outputs]
        n_params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
        theta = arrays["theta"]
        if theta.ndim != 1 or theta.dtype not in (np.float32, np.float64) \
                or theta.shape[0] != n_params:
            raise ModelFileError(f"theta has shape {theta.shape} and dtype {theta.dtype}; the "
                                 f"architecture {sizes} needs ({n_params},) float32 or float64")
        if est.dtype is not None and np.dtype(check_dtype(est.dtype)) != theta.dtype:
            raise ModelFileError(f"theta has dtype {theta.dtype} but the dtype parameter is "
                                 f"{est.dtype!r}")
        if not np.isfinite(theta).all():
            raise ModelFileError("the saved weights contain NaN or infinity")
        if est._is_classifier:
            spec = header["label_binarizer"]
            y_type = spec["y_type"]
            lb_classes = arrays["lb_classes_"]
            classes = arrays["classes_"]
            if classes.ndim != 1 or lb_classes.ndim != 1:
                raise ModelFileError(f"classes_ must be 1-D, got shapes {classes.shape} and "
                                     f"{lb_classes.shape}")
            expected = {"binary": (1, (1, 2)), "multiclass": (len(lb_classes), (n_outputs,)),
                        "multilabel-indicator": (len(lb_classes), (n_outputs,))}
            if y_type not in expected or n_outputs != expected[y_type][0] \
                    or len(lb_classes) not in expected[y_type][1] \
                    or (y_type == "multiclass" and n_outputs < 3):
                raise ModelFileError(f"{len(lb_classes)} classes of target type {y_type!r} do "
                                     f"not match {n_outputs} network outputs")
            lb = LabelBinarizer()
            lb.classes_, lb.y_type_ = lb_classes, y_type
            lb.sparse_input_ = bool(spec["sparse_input"])
            est._label_binarizer, est.classes_ = lb, classes
            out_activation = "softmax" if y_type == "multiclass" else "logistic"
        else:
            out_activation = est._output_activation()
        saved_act = arrays["out_activation_"]
        # the fit's own, or one a user may set by hand to read raw or hidden outputs
        allowed = sorted({out_activation, "identity", "relu", "tanh"})
        if saved_act.shape != (1,) or saved_act.dtype.kind != "U" \
                or str(saved_act[0]) not in allowed:
            raise ModelFileError(f"out_activation_ {saved_act!r} is not one of {allowed}")
        out_activation = str(saved_act[0])
        est.n_features_in_, est.n_outputs_ = n_features, n_outputs
        est.n_iter_, est.t_ = get_int("n_iter_", 0), get_int("t_", 0)
        if "_no_improvement_count" in arrays:
            est._no_improvement_count = get_int("_no_improvement_count", 0)
        est.n_layers_ = len(sizes)
        est.out_activation_ = out_activation
        none_attrs = header.get("none_attrs", [])
        if not isinstance(none_attrs, list) or not set(none_attrs) <= set(
                _FLOAT_ATTRS + _LIST_ATTRS + ("_best_theta",)):
            raise ModelFileError(f"unexpected none_attrs {none_attrs!r}")
        for name in none_attrs:
            setattr(est, name, None)
        for name in _FLOAT_ATTRS:
            if name in arrays:
                value = arrays[name]
                if value.shape != (1,) or value.dtype.kind != "f":
                    raise ModelFileError(f"{name} must be one float, got shape "
                                         f"{value.shape} dtype {value.dtype}")
                setattr(est, name, np.float64(value[0]))
        for name in _LIST_ATTRS:
            if name in arrays:
                value = arrays[name]
                if value.ndim != 1 or value.dtype.kind != "f":
                    raise ModelFileError(f"{name} must be a 1-D float array, got shape "
                                         f"{value.shape} dtype {value.dtype}")
                setattr(est, name, [np.float64(v) for v in value])
        if "feature_names_in_" in arrays:
            names = arrays["feature_names_in_"]
            if names.shape != (n_features,) or names.dtype.kind != "U":
                raise ModelFileError(f"feature_names_in_ has shape {names.shape} and dtype "
                                     f"{names.dtype}, expected ({n_features},) str")
            est.feature_names_in_ = np.asarray(names.tolist(), dtype=object)

        def same_as_theta(name):
            arr = arrays[name]
            if arr.shape != theta.shape or arr.dtype != theta.dtype:
                raise ModelFileError(f"{name} has shape {arr.shape} and dtype {arr.dtype}; "
                                     f"the weights have {theta.shape} {theta.dtype}")
            return aligned_copy(arr)

        if "best_theta" in arrays:
            est._best_theta = same_as_theta("best_theta")
        if header.get("optimizer") is not None:
            spec = header["optimizer"]
            opt = _OptimizerState.__new__(_OptimizerState)
            for name in _OPT_FIELDS:
                setattr(opt, name, spec[name])
            if opt.solver not in _STOCHASTIC or opt.schedule not in (
                    "constant", "invscaling", "adaptive"):
                raise ModelFileError(f"unknown optimizer {opt.solver!r}/{opt.schedule!r}")
            for name in _OPT_FIELDS[2:]:
                if name != "nesterov" and (isinstance(getattr(opt, name), bool) or not
                                           isinstance(getattr(opt, name), (int, float))):
                    raise ModelFileError(f"optimizer field {name} must be a number")
            opt.steps = int(_check_nonneg_int(opt.steps, "optimizer steps"))
            opt.m, opt.v = same_as_theta("opt_m"), same_as_theta("opt_v")
            est._optimizer = opt
        est._sizes = np.asarray(sizes, dtype=np.int64)
        est._theta = aligned_copy(theta)
        est._bind_views()
        return est


_COMMON_DOC = """
    Parameters
    ----------
    hidden_layer_sizes : array-like of shape (n_layers - 2,), default=(100,)
        Width of each hidden layer.
    activation : {"identity", "logistic", "tanh", "relu"}, default="relu"
        Activation of every hidden layer.
    solver : {"lbfgs", "sgd", "adam"}, default="adam"
        ``"sgd"`` and ``"adam"`` run one fused kernel call per epoch; ``"lbfgs"`` runs
        SciPy's L-BFGS-B on the fused loss-and-gradient kernel.
    alpha : float, default=0.0001
        L2 penalty; the term ``0.5 * alpha * ||W||^2`` is divided by the sum of the
        sample weights (the number of samples when unweighted), like the loss.
    batch_size : int or "auto", default="auto"
        Mini-batch size of the stochastic solvers; ``"auto"`` is ``min(200, n_samples)``.
    learning_rate : {"constant", "invscaling", "adaptive"}, default="constant"
        SGD schedule: fixed; ``learning_rate_init / (t + 1) ** power_t`` after each
        epoch (``t`` = samples seen); or divided by 5 whenever ``n_iter_no_change``
        epochs pass without a ``tol`` improvement.
    learning_rate_init : float, default=0.001
    power_t : float, default=0.5
    max_iter : int, default=200
        Epochs for the stochastic solvers, iterations for L-BFGS.
    shuffle : bool, default=True
        Visit the samples in a new random order every epoch.
    random_state : int, RandomState instance or None, default=None
        Drives the initial weights, the early-stopping split and the shuffles, drawn in
        the same order as scikit-learn's.
    tol : float, default=1e-4
    verbose : bool, default=False
        Print the loss after every epoch.
    warm_start : bool, default=False
        Continue from the previous fit's weights instead of starting over.
    momentum : float, default=0.9
    nesterovs_momentum : bool, default=True
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data, stop when its score stalls and
        restore the weights of the best-scoring epoch.
    validation_fraction : float, default=0.1
    beta_1, beta_2, epsilon : float, default=0.9, 0.999, 1e-8
        Adam's moment decay rates and denominator guard.
    n_iter_no_change : int, default=10
    max_fun : int, default=15000
        Limit on loss evaluations for L-BFGS.
    backend : {"numba", "numpy"}, default="numba"
        Engine: compiled kernels, or the plain NumPy reference (same numbers).
    dtype : {None, "float32", "float64"}, default=None
        Parameter and compute precision. ``None`` follows the input: float32 ``X``
        trains in float32, anything else in float64.
    n_threads : int or None, default=None
        Threads the BLAS products may use while fitting and predicting; ``None`` keeps
        the BLAS default. With two or more, a fit of a larger network may also train on
        two threads of its own (README: two threads per fit); 1 keeps it on one. Results
        do not depend on it for mini-batches of ordinary size.
"""


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multilayer perceptron classifier, scikit-learn's API on fastnn's kernels.

    Binary and multilabel targets get a logistic output with binary cross-entropy,
    multiclass targets a softmax with categorical cross-entropy.
    {common}
    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    loss_ : float
        Loss after the last epoch (or of the L-BFGS solution).
    best_loss_ : float or None
    loss_curve_ : list of float
    validation_scores_ : list of float or None
    best_validation_score_ : float or None
    t_ : int
        Training samples seen by the solver.
    coefs_ : list of ndarray of shape (n_in, n_out)
        Views into one flat parameter buffer.
    intercepts_ : list of ndarray of shape (n_out,)
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
    n_iter_ : int
    n_layers_ : int
    n_outputs_ : int
    out_activation_ : str

    Notes
    -----
    Sparse input (CSR, or CSC converted to CSR) is never densified: the first layer reads
    the stored values in place, in training and prediction.
    """

    _is_classifier = True
    _kind = "MLPClassifier"
    _parameter_constraints: dict = {**_SkMLPClassifier._parameter_constraints,
                                    **_EXTRA_CONSTRAINTS}

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        backend="numba",
        dtype=None,
        n_threads=None,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.backend = backend
        self.dtype = dtype
        self.n_threads = n_threads

    @property
    def loss(self):
        """The loss minimized: always ``"log_loss"`` (as scikit-learn's attribute)."""
        return "log_loss"

    def _output_activation(self):
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = _fit_label_binarizer(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same "
                        "classes as in the previous call to fit. Previously "
                        f"got {self.classes_}, `y` has {classes}"
                    )
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(
                    "`y` has classes not in `self.classes_`. "
                    f"`self.classes_` has {self.classes_}. 'y' has {classes}."
                )
        # bool, as scikit-learn: the stratified split then sees the very same labels
        return X, _binarize(self._label_binarizer, y)

    def _validation_targets(self, Y_val):
        return self._label_binarizer.inverse_transform(Y_val)

    @staticmethod
    def _score_function(y, y_pred, sample_weight=None):
        return accuracy_score(y, y_pred, sample_weight=sample_weight)

    def _predict(self, X, check_input=True):
        p = self._forward(X, check_input=check_input)
        if self.n_outputs_ == 1:
            p = p.ravel()
        # LabelBinarizer.inverse_transform's rules (argmax; threshold 0.5) written out:
        # it costs ~40 us a call, most of a single-row predict.
        lb = self._label_binarizer
        if lb.y_type_ == "multiclass" and p.ndim == 2:
            return lb.classes_.take(p.argmax(axis=1), mode="clip")
        if lb.y_type_ == "binary" and len(lb.classes_) == 2 and p.ndim == 1:
            return lb.classes_[(p > 0.5).astype(int)]
        if lb.y_type_ == "multilabel-indicator" and not lb.sparse_input_:
            return (p > 0.5).astype(int)
        return lb.inverse_transform(p)

    def predict(self, X):
        """Predicted class labels (or label-indicator rows for multilabel targets).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_classes)
        """
        self._check_fitted()
        return self._predict(X)

    def predict_proba(self, X):
        """Class probabilities, columns in the order of ``classes_``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            For a binary problem, ``[1 - p, p]``.
        """
        self._check_fitted()
        p = self._forward(X)
        if self.n_outputs_ != 1:
            return p
        out = np.empty((p.shape[0], 2), dtype=p.dtype)
        out[:, 1] = p[:, 0]
        out[:, 0] = 1 - p[:, 0]
        return out

    def predict_log_proba(self, X):
        """``log(predict_proba(X))``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        proba = self.predict_proba(X)
        return np.log(proba, out=proba)

    def _stochastic_only(self):
        if self.solver not in _STOCHASTIC:
            raise AttributeError(
                "partial_fit is only available for stochastic"
                " optimizers. %s is not stochastic." % self.solver
            )
        return True

    @available_if(_stochastic_only)
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over ``(X, y)``, continuing from the current state.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_classes)
        sample_weight : array-like of shape (n_samples,), default=None
        classes : array-like of shape (n_classes,), default=None
            Every class of the whole stream; required on the first call only.

        Returns
        -------
        self : object
        """
        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multilayer perceptron regressor, scikit-learn's API on fastnn's kernels.

    ``loss="squared_error"`` trains an identity output on half the mean squared error;
    ``loss="poisson"`` an exponential output on half the Poisson deviance (``y >= 0``).

    Parameters
    ----------
    loss : {"squared_error", "poisson"}, default="squared_error"
{common_rest}
    Attributes
    ----------
    loss_, best_loss_, loss_curve_, validation_scores_, best_validation_score_, t_,
    coefs_, intercepts_, n_features_in_, feature_names_in_, n_iter_, n_layers_,
    n_outputs_, out_activation_
        As in :class:`MLPClassifier`; the validation score is R^2.

    Notes
    -----
    Sparse input (CSR, or CSC converted to CSR) is never densified: the first layer reads
    the stored values in place, in training and prediction.
    Unlike scikit-learn, ``loss="poisson"`` rejects negative targets with a
    ``ValueError`` (scikit-learn documents ``y >= 0`` but trains to a NaN loss).
    """

    _kind = "MLPRegressor"
    _parameter_constraints: dict = {**_SkMLPRegressor._parameter_constraints,
                                    **_EXTRA_CONSTRAINTS}

    def __init__(
        self,
        loss="squared_error",
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        backend="numba",
        dtype=None,
        n_threads=None,
    ):
        self.loss = loss
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.backend = backend
        self.dtype = dtype
        self.n_threads = n_threads

    def _output_activation(self):
        return "exp" if self.loss == "poisson" else "identity"

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             y_numeric=True, dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if self.loss == "poisson" and np.any(y < 0):
            raise ValueError(f"loss='poisson' needs y >= 0, got a minimum of {np.min(y)!r}")
        return X, y

    @staticmethod
    def _validation_targets(Y_val):
        return Y_val

    @staticmethod
    def _score_function(y, y_pred, sample_weight=None):
        return r2_score(y, y_pred, sample_weight=sample_weight)

    def _predict(self, X, check_input=True):
        p = self._forward(X, check_input=check_input)
        return p.ravel() if p.shape[1] == 1 else p

    def predict(self, X):
        """Predicted target values.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        """
        self._check_fitted()
        return self._predict(X)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over ``(X, y)``, continuing from the current state.

        As in scikit-learn, this is also available with ``solver="lbfgs"``, where it
        runs a full L-BFGS fit starting from the current weights.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : object
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)


MLPClassifier.__doc__ = MLPClassifier.__doc__.replace("{common}", _COMMON_DOC)
MLPRegressor.__doc__ = MLPRegressor.__doc__.replace(
    "{common_rest}", _COMMON_DOC.split("----------\n", 1)[1])
