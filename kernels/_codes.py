"""Integer codes and buffer indices shared by the kernels and the API.

Plain constants, no numba: ``import fastnn`` reads them without loading the compiler.
"""

# Activation of a layer (``acts`` array). The output layer's code also fixes the loss.
IDENTITY = 0
RELU = 1
LOGISTIC = 2
TANH = 3
SOFTMAX = 4
EXP = 5  # log-link output of the Poisson regressor

# Positions in the float64 ``hyper`` array that the epoch kernels read.
HYPER_LR = 0
HYPER_MOMENTUM = 1
HYPER_BETA_1 = 2
HYPER_BETA_2 = 3
HYPER_EPSILON = 4
HYPER_ALPHA = 5
HYPER_GSCALE = 6
HYPER_CLIP_EPS = 7
N_HYPER = 8

# Optimizer of the fused epoch.
OPT_SGD = 0
OPT_NESTEROV = 1
OPT_ADAM = 2
