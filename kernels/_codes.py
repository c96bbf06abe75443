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
N_HYPER = 8

# Optimizer of the fused epoch.
OPT_SGD = 0
OPT_NESTEROV = 1
OPT_ADAM = 2

# Optimizer state below the smallest normal number is stored as zero. A moment whose
# gradients have become exactly 0 (a dead ReLU unit's weights) decays geometrically into
# the subnormal range and then stops at a fixed point of the decay (0.9 * 4 ulps rounds
# back to 4 ulps), never reaching 0; every later update of it is subnormal arithmetic,
# a microcode assist per vector: Adam's step on W-tiny's network took 2.9x as long and
# its epoch 2.5x (48 instead of 19 us) once 56 of its 403 first moments were stuck so.
# Adam flushes m and v only where epsilon >= ADAM_EPS_FLOOR: there sqrt(v) of any v
# below the floor is under a quarter ulp of epsilon, so sqrt(v) + epsilon is epsilon
# whether v is flushed or not, and a flushed m changes theta by at most
# lr * SMALLEST_NORMAL / epsilon. With a tinier epsilon both are kept exactly. The
# NumPy engine, the reference, keeps IEEE arithmetic: the engines then differ in such
# entries by less than 1e-307 (a flush there would cost the baseline 3 passes a step).
SMALLEST_NORMAL = {"float64": 2.0 ** -1022, "float32": 2.0 ** -126}
_MANTISSA_BITS = {"float64": 52, "float32": 23}
# sqrt(4 * smallest normal) * 2 ** (mantissa bits + 2); kernels/_jit.py's AVX-512 step
# keeps sqrt(v) on its estimates above the same floor
ADAM_EPS_FLOOR = {name: math.sqrt(4.0 * tiny) * 2.0 ** (_MANTISSA_BITS[name] + 2)
                  for name, tiny in SMALLEST_NORMAL.items()}
# the same, as plain floats for the kernels (numba reads them as compile-time constants)
SMALLEST_NORMAL_F64, SMALLEST_NORMAL_F32 = SMALLEST_NORMAL["float64"], SMALLEST_NORMAL["float32"]
ADAM_EPS_FLOOR_F64, ADAM_EPS_FLOOR_F32 = ADAM_EPS_FLOOR["float64"], ADAM_EPS_FLOOR["float32"]
