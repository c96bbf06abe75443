"""Drop-in replacements for scikit-learn's ``MLPClassifier`` and ``MLPRegressor``.

Change the import, keep the code: the constructor parameters, fitted attributes,
methods, warnings and verbose output are scikit-learn's (1.9), and for the same
``random_state`` in float64 the numbers are too. What differs is where the work
happens: each epoch of ``sgd``/``adam`` is one call into the fused ``run_epoch`` kernel
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
"""

import warnings

import numpy as np
import scipy.optimize
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as _SkMLPClassifier
from sklearn.neural_network import MLPRegressor as _SkMLPRegressor
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state, column_or_1d
from sklearn.utils import shuffle as _shuffle
from sklearn.utils._param_validation import Options, StrOptions
from sklearn.utils.fixes import _get_additional_lbfgs_options_dict
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import _check_partial_fit_first_call, type_of_target, unique_labels
from sklearn.utils.optimize import _check_optimize_result
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from fastnn import kernels as K
from fastnn._network import Network, Trainer, make_hyper
from fastnn._validation import check_dtype
from fastnn.backends import BACKENDS

__all__ = ["MLPClassifier", "MLPRegressor"]

_STOCHASTIC = ("sgd", "adam")
_HIDDEN_CODES = {"identity": K.IDENTITY, "logistic": K.LOGISTIC, "tanh": K.TANH, "relu": K.RELU}
_OUTPUT_CODES = {"identity": K.IDENTITY, "logistic": K.LOGISTIC, "softmax": K.SOFTMAX,
                 "exp": K.EXP}
_EXTRA_CONSTRAINTS = {
    "backend": [StrOptions(set(BACKENDS))],
    "dtype": [None, StrOptions({"float32", "float64"}),
              Options(type, {np.float32, np.float64})],
}


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
        self.m = np.zeros(n_params, dtype=dtype)
        self.v = np.zeros(n_params, dtype=dtype)

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


def _same_view(a, b):
    """True when ``a`` is exactly the view ``b`` (same memory, shape, strides, dtype)."""
    return (isinstance(a, np.ndarray) and a.shape == b.shape and a.dtype == b.dtype
            and a.strides == b.strides
            and a.__array_interface__["data"][0] == b.__array_interface__["data"][0])


class _BaseMLP(BaseEstimator):
    """Shared engine of the two estimators; not for direct use."""

    _is_classifier = False

    # --- parameters ----------------------------------------------------------------
    def _hidden_sizes(self):
        hidden = self.hidden_layer_sizes
        if not hasattr(hidden, "__iter__"):
            hidden = [hidden]
        hidden = list(hidden)
        if np.any(np.array(hidden) <= 0):
            raise ValueError("hidden_layer_sizes must be > 0, got %s." % hidden)
        return [int(h) for h in hidden]

    def _fit_dtype(self, X):
        if self.dtype is None:
            return np.float32 if X.dtype == np.float32 else np.float64
        return check_dtype(self.dtype)

    # --- the network and its flat buffer -------------------------------------------
    def __getstate__(self):
        state = dict(super().__getstate__())
        state.pop("_net", None)  # holds the backend module, which does not pickle
        state.pop("_views", None)  # identity cache: meaningless in another process
        return state

    def _network(self):
        """The Network over ``self._theta``, rebuilt when the backend or buffer changed."""
        net = getattr(self, "_net", None)
        if net is None or net.backend != self.backend or net.theta is not self._theta:
            net = Network(self._sizes, self._acts, self._theta.dtype, self.backend)
            net.theta = self._theta
            self._net = net
        return net

    def _bind_views(self):
        net = self._network()
        self.coefs_ = net.coefs()
        self.intercepts_ = net.intercepts()
        self._views = self.coefs_ + self.intercepts_

    def _sync_theta(self):
        """Make ``coefs_``/``intercepts_`` views of ``self._theta`` again if they are not.

        They stop being views after unpickling or when a user assigns new arrays; the
        arrays in ``coefs_``/``intercepts_`` are then the truth and are packed again.
        """
        net = self._network()
        live = list(self.coefs_) + list(self.intercepts_)
        cached = getattr(self, "_views", None)
        if (cached is not None and len(cached) == len(live)
                and all(a is b for a, b in zip(live, cached))):
            return  # the arrays _bind_views made (the per-predict fast path)
        views = net.coefs() + net.intercepts()
        if len(live) == len(views) and all(_same_view(a, b) for a, b in zip(live, views)):
            self._views = live
            return
        if len(live) != len(views):
            raise ValueError(f"coefs_ and intercepts_ must hold {self.n_layers_ - 1} arrays "
                             f"each, got {len(self.coefs_)} and {len(self.intercepts_)}")
        for i, (a, b) in enumerate(zip(live, views)):
            if np.shape(a) != b.shape:
                raise ValueError(f"parameter array {i} has shape {np.shape(a)}, expected "
                                 f"{b.shape}")
        self._theta = np.concatenate([np.asarray(a, dtype=self._theta.dtype).ravel()
                                      for a in live])
        self._bind_views()

    def _initialize(self, layer_units, dtype, random_state):
        self.n_iter_ = 0
        self.t_ = 0
        self.n_layers_ = len(layer_units)
        self.out_activation_ = self._output_activation()
        hidden = _HIDDEN_CODES[self.activation]
        acts = [hidden] * (self.n_layers_ - 2) + [_OUTPUT_CODES[self.out_activation_]]
        net = Network(layer_units, acts, dtype, self.backend)
        factor = 2.0 if self.activation == "logistic" else 6.0
        net.init_glorot(random_state, [factor] * (self.n_layers_ - 1))
        self._sizes, self._acts = net.sizes, net.acts
        self._theta = net.theta
        self._net = net
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
        hidden = self._hidden_sizes()
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X, Y = self._validate_input(X, y, incremental, reset=first_pass)
        if first_pass:
            dtype = self._fit_dtype(X)
        else:
            self._sync_theta()
            dtype = self._theta.dtype.type
        X = self._dense(X, dtype)
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
            raise ValueError(f"the fitted network has layer sizes {list(self._sizes)}, but "
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
    def _dense(X, dtype):
        # Sparse input is densified here (once per call): the kernels read dense rows.
        if sp.issparse(X):
            X = X.toarray()
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
        work = np.empty(int(net.engine.workspace_size(net.sizes, X.shape[0])), dtype=dtype)
        grad = np.empty_like(net.theta)

        def loss_and_grad(packed):
            net.theta[...] = packed
            loss = net.engine.loss_grad(X, Yk, sw, net.theta, net.sizes, net.offsets,
                                        net.acts, hyper, work, grad)
            return float(loss), grad.astype(np.float64)  # a copy: scipy keeps it

        iprint = 1 if (self.verbose is True or self.verbose >= 1) else -1
        result = scipy.optimize.minimize(
            loss_and_grad,
            net.theta.astype(np.float64),
            method="L-BFGS-B",
            jac=True,
            options={
                "maxfun": self.max_fun,
                "maxiter": self.max_iter,
                "gtol": self.tol,
                **_get_additional_lbfgs_options_dict("iprint", iprint),
            },
        )
        self.n_iter_ = _check_optimize_result("lbfgs", result, self.max_iter)
        self.loss_ = result.fun
        net.theta[...] = result.x

    def _fit_stochastic(self, X, Y, sample_weight, incremental, random_state):
        net = self._network()
        dtype = net.dtype
        if not incremental or getattr(self, "_optimizer", None) is None:
            self._optimizer = _OptimizerState(self, net.theta.shape[0], dtype)
        opt = self._optimizer
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
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

        X_train = np.ascontiguousarray(X_train, dtype=dtype)
        Y_train = np.ascontiguousarray(Y_train, dtype=dtype)
        sw_train = (np.ones(n_samples, dtype=dtype) if sw_train is None
                    else np.ascontiguousarray(sw_train, dtype=dtype))
        trainer = Trainer(net, batch_size, opt.code, state=(opt.m, opt.v))
        hyper = opt.hyper(dtype, self.alpha)
        sample_idx = np.arange(n_samples, dtype=np.int64)
        try:
            self.n_iter_ = 0
            for _ in range(self.max_iter):
                if self.shuffle:
                    sample_idx = _shuffle(sample_idx, random_state=random_state)
                hyper[K.HYPER_LR] = opt.learning_rate
                total = trainer.epoch(X_train, Y_train, sw_train, sample_idx, hyper, opt.steps)
                opt.steps += n_batches
                self.n_iter_ += 1
                self.loss_ = total / n_samples
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
                        break
                    self._no_improvement_count = 0
                if incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warnings.warn(
                        "Stochastic Optimizer: Maximum iterations (%d) reached and the "
                        "optimization hasn't converged yet." % self.max_iter,
                        ConvergenceWarning,
                    )
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.")

        if early_stopping:
            # Restore the best weights; afterwards the "best" snapshot is the live
            # buffer itself (None), as in scikit-learn, until a better score copies it.
            if self._best_theta is not None:
                net.theta[...] = self._best_theta
            self._best_theta = None

    def _update_no_improvement_count(self, early_stopping, X_val, y_val, sw_val):
        if early_stopping:
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

    def _check_predict_input(self, X):
        # A finite float ndarray of the right width needs none of validate_data's
        # conversions, and skipping it takes ~100 us off every predict call: single-row
        # latency. Everything else (lists, sparse, frames, bad values) goes through it.
        if (type(X) is np.ndarray and X.ndim == 2 and X.dtype.kind == "f"
                and X.shape[0] > 0 and X.shape[1] == self.n_features_in_
                and "feature_names_in_" not in self.__dict__ and np.isfinite(X).all()):
            return X
        return validate_data(self, X, accept_sparse=["csr", "csc"], reset=False)

    def _forward(self, X, check_input=True):
        """Output activations for ``X`` (2-D), from the current parameters."""
        if check_input:
            X = self._check_predict_input(X)
        self._sync_theta()
        net = self._network()
        return net.predict(self._dense(X, net.dtype))

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
            Training data. Sparse CSR/CSC input is converted to a dense array.
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
    Sparse input is accepted and densified once per call (no sparse kernels yet).
    """

    _is_classifier = True
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
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
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
        return X, self._label_binarizer.transform(y).astype(bool)

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
    Sparse input is accepted and densified once per call (no sparse kernels yet).
    Unlike scikit-learn, ``loss="poisson"`` rejects negative targets with a
    ``ValueError`` (scikit-learn documents ``y >= 0`` but trains to a NaN loss).
    """

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
