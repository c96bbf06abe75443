"""Integer codes, buffer indices and numeric floors shared by the kernels and the API.

Plain constants, no numba: ``import fastnn`` reads them without loading the compiler.
"""

import math

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
# Nonzero: the L2 term sums the weights in the two-thread split's order (fastnn._split),
# so that a fit gives the same numbers on one thread or two.
HYPER_L2_HALVES = 8
N_HYPER = 9

# Optimizer of the fused epoch.
OPT_SGD = 0
OPT_NESTEROV = 1
OPT_ADAM = 2

# After every epoch, the epoch kernel sets optimizer state below the smallest normal
# number to zero. A moment whose gradients have become exactly 0 (a dead ReLU unit's
# weights) decays geometrically into the subnormal range and then stops at a fixed point
# of the decay (0.9 * 4 ulps rounds back to 4 ulps), never reaching 0; every later update
# of it is subnormal arithmetic, a microcode assist per vector: a W-small fit went from
# 2.5 to 5.9 ms per epoch after ~10k steps, with 959 moments stuck so. Adam's m and v are
# flushed only where epsilon >= ADAM_EPS_FLOOR: there sqrt(v) of any v below the floor
# is under a quarter ulp of epsilon, so sqrt(v) + epsilon is epsilon whether v is flushed
# or not, and a flushed m moves theta by at most lr * SMALLEST_NORMAL / epsilon. With a
# tinier epsilon both are kept. Once an epoch, not in every step: in the step, the
# selects made W-small's Adam update 1.13x slower (13.1 vs 11.6 us). The NumPy engine,
# the reference, keeps IEEE arithmetic: the engines differ in such entries by < 1e-307.
SMALLEST_NORMAL = {"float64": 2.0 ** -1022, "float32": 2.0 ** -126}
_MANTISSA_BITS = {"float64": 52, "float32": 23}
# sqrt(4 * smallest normal) * 2 ** (mantissa bits + 2); kernels/_jit.py's AVX-512 step
# keeps sqrt(v) on its estimates above the same floor
ADAM_EPS_FLOOR = {name: math.sqrt(4.0 * tiny) * 2.0 ** (_MANTISSA_BITS[name] + 2)
                  for name, tiny in SMALLEST_NORMAL.items()}
# the same, as plain floats for the kernels (numba reads them as compile-time constants)
SMALLEST_NORMAL_F64, SMALLEST_NORMAL_F32 = SMALLEST_NORMAL["float64"], SMALLEST_NORMAL["float32"]
ADAM_EPS_FLOOR_F64, ADAM_EPS_FLOOR_F32 = ADAM_EPS_FLOOR["float64"], ADAM_EPS_FLOOR["float32"]
