"""fastnn's Numba kernels (installed as ``fastnn.kernels``).

Kernels take C-contiguous float32/float64 arrays, ints and floats, write into their
last arguments and return ``None`` or one scalar. They do not validate: the API in
``fastnn`` checks shapes, dtypes and values before any kernel runs.
"""

from .activations import (
    EXP,
    IDENTITY,
    LOGISTIC,
    RELU,
    SOFTMAX,
    TANH,
    identity_backward,
    identity_forward,
    log_softmax_forward,
    relu_backward,
    relu_forward,
    sigmoid_backward,
    sigmoid_forward,
    softmax_forward,
    tanh_backward,
    tanh_forward,
)
from .dense import BLAS_MIN_WORK, dense_backward, dense_backward_input, dense_forward
from .epoch import (
    HYPER_ALPHA,
    HYPER_BETA_1,
    HYPER_BETA_2,
    HYPER_CLIP_EPS,
    HYPER_EPSILON,
    HYPER_GSCALE,
    HYPER_LR,
    HYPER_MOMENTUM,
    N_HYPER,
    OPT_ADAM,
    OPT_NESTEROV,
    OPT_SGD,
    loss_grad,
    predict_forward,
    run_epoch,
    workspace_size,
)
from .loss import (
    bce_loss,
    exp_poisson_grad,
    mse_grad,
    mse_loss,
    poisson_loss,
    sigmoid_bce_grad,
    softmax_xent_grad,
    xent_loss,
)
from .optim import adam_update, nesterov_update, sgd_update

__all__ = [
    "BLAS_MIN_WORK", "EXP", "HYPER_ALPHA", "HYPER_BETA_1", "HYPER_BETA_2", "HYPER_CLIP_EPS",
    "HYPER_EPSILON", "HYPER_GSCALE", "HYPER_LR", "HYPER_MOMENTUM", "IDENTITY", "LOGISTIC",
    "N_HYPER", "OPT_ADAM", "OPT_NESTEROV", "OPT_SGD", "RELU", "SOFTMAX", "TANH",
    "adam_update", "bce_loss", "dense_backward", "dense_backward_input", "dense_forward",
    "exp_poisson_grad", "identity_backward", "identity_forward", "log_softmax_forward",
    "loss_grad", "mse_grad", "mse_loss", "nesterov_update", "poisson_loss", "predict_forward",
    "relu_backward", "relu_forward", "run_epoch", "sgd_update", "sigmoid_backward",
    "sigmoid_bce_grad", "sigmoid_forward", "softmax_forward", "softmax_xent_grad",
    "tanh_backward", "tanh_forward", "workspace_size", "xent_loss",
]
