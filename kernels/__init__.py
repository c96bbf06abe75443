"""fastnn's Numba kernels (installed as ``fastnn.kernels``).

Kernels take C-contiguous float32/float64 arrays, ints and floats, write into their
last arguments and return ``None`` or one scalar. An array of another layout raises
``TypeError`` (their views and BLAS calls assume C order). The per-operation kernels
(activations, dense, losses, optimizer steps) raise ``ValueError`` when their arrays'
shapes disagree; the engine kernels (``run_epochs``, ``loss_grad``, ``predict_forward``,
their CSR twins) take what the API in ``fastnn`` has checked (shapes, dtypes, values,
the layout in ``sizes`` and ``offsets``) and do not check again.

The integer codes (``RELU``, ``OPT_ADAM``, ``HYPER_LR``...) load with this package; the
kernels themselves, and numba with them, load on first attribute access, so importing
fastnn stays cheap.
"""

import importlib

from ._codes import (
    EXP,
    HYPER_ALPHA,
    HYPER_BETA_1,
    HYPER_BETA_2,
    HYPER_CLIP_EPS,
    HYPER_EPSILON,
    HYPER_GSCALE,
    HYPER_L2_HALVES,
    HYPER_LR,
    HYPER_MOMENTUM,
    IDENTITY,
    LOGISTIC,
    N_HYPER,
    OPT_ADAM,
    OPT_NESTEROV,
    OPT_SGD,
    RELU,
    SOFTMAX,
    TANH,
)

_HOMES = {
    "activations": [
        "identity_forward", "relu_forward", "sigmoid_forward", "tanh_forward",
        "softmax_forward", "log_softmax_forward", "identity_backward", "relu_backward",
        "sigmoid_backward", "tanh_backward",
    ],
    "dense": [
        "dense_forward", "dense_backward", "dense_backward_input",
    ],
    "epoch": ["all_finite", "loss_grad", "loss_grad_csr", "predict_forward",
              "predict_forward_csr", "run_epochs", "run_epochs_csr", "workspace_size"],
    "loss": [
        "softmax_xent_grad", "sigmoid_bce_grad", "mse_grad", "exp_poisson_grad", "xent_loss",
        "bce_loss", "mse_loss", "poisson_loss",
    ],
    "optim": ["sgd_update", "nesterov_update", "adam_update"],
    "shuffle": ["shuffled_orders"],
    "split": ["run_epochs_split"],
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = sorted(
    ["EXP", "HYPER_ALPHA", "HYPER_BETA_1", "HYPER_BETA_2", "HYPER_CLIP_EPS", "HYPER_EPSILON",
     "HYPER_GSCALE", "HYPER_L2_HALVES", "HYPER_LR", "HYPER_MOMENTUM", "IDENTITY", "LOGISTIC",
     "N_HYPER", "OPT_ADAM", "OPT_NESTEROV", "OPT_SGD", "RELU", "SOFTMAX", "TANH"] + list(_HOME_OF))


def __getattr__(name):
    module = _HOME_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'fastnn.kernels' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip this hook
    return value


def __dir__():
    return __all__
