"""Activation kernels and their derivatives.

Forward kernels map ``z`` to ``a`` elementwise (softmax: row-wise). Backward kernels
take the activation ``a`` (not ``z``: every derivative here is a function of the
output) and dL/da, and write dL/dz.

Activation codes (``IDENTITY`` ...) describe a layer to the fused kernels, the way
``sizes`` describes its width: one compiled epoch kernel serves every network.
"""

import numpy as np

from ._codes import EXP, IDENTITY, LOGISTIC, RELU, SOFTMAX, TANH
from ._jit import (
    flat_view,
    float_from_bits,
    inline,
    inline_exact,
    inline_ir,
    kernel,
    require_shape,
)

__all__ = ["EXP", "IDENTITY", "LOGISTIC", "RELU", "SOFTMAX", "TANH"]  # re-exported codes

# exp(x) = 2^k exp(r) with k = round(x / ln 2) and r = x - k ln 2 in [-ln2/2, ln2/2]; ln 2
# is split in two (Cody and Waite): _LN2_HI has its low 32 bits zero, so k * _LN2_HI is
# exact for every k here and r keeps its low bits. exp(r) is its Taylor series to r^13
# (truncation below 4e-18 relative on that interval).
_LOG2E = 1.4426950408889634
_LN2_HI = 0.6931471803691238
_LN2_LO = 1.9082149292705877e-10
_EXP_MIN = -708.3964185322641  # ln(2^-1022): below it 2^k leaves the normal range
_EXP_FLOOR = -746.0  # below ln(2^-1075) exp rounds to 0 even as a subnormal
_SUBNORMAL_SCALE = 2.0**-64  # 2^k = 2^(k + 64) * 2^-64: a normal power of two for every k
_INV_FACT = (1.0, 1.0, 1 / 2, 1 / 6, 1 / 24, 1 / 120, 1 / 720, 1 / 5040, 1 / 40320,
             1 / 362880, 1 / 3628800, 1 / 39916800, 1 / 479001600, 1 / 6227020800)


@inline_exact
def _exp_nonpositive(x, subnormal):
    # exp of x <= 0 (softmax's shifted logits) in plain arithmetic, so that a loop over
    # it vectorizes where libm's exp is a call per element (a tenth of an iris epoch).
    # Within 1 ulp of NumPy's exp (92% of results identical), NaN for NaN. Below _EXP_MIN
    # (exp's subnormal range): with subnormal, the subnormal result (p * 2^(k + 64),
    # normal, then one rounding into the subnormals by * 2^-64), as NumPy's exp gives it
    # and predict_proba must; else 0 (training, where a softmax term that small is
    # negligible and arithmetic on subnormals is slow). Above it the two scalings are
    # exact: the same bits either way.
    # Call it with a constant subnormal: the branches fold away.
    # xc: x clamped (NaN and -inf too) where 2^k, or 2^(k + 64), is still normal
    floor = _EXP_FLOOR if subnormal else _EXP_MIN
    xc = x if x >= floor else floor
    k = np.floor(xc * _LOG2E + 0.5)
    r = (xc - k * _LN2_HI) - k * _LN2_LO
    p = _INV_FACT[13]
    for n in range(12, -1, -1):
        p = p * r + _INV_FACT[n]
    if subnormal:
        y = (p * float_from_bits((np.int64(k) + 1087) << 52)) * _SUBNORMAL_SCALE
    else:
        y = p * float_from_bits((np.int64(k) + 1023) << 52)
        if x < _EXP_MIN:
            y = 0.0
    if x != x:
        y = x
    return y


@inline_ir
def _row_max(z, i):
    # softmax's shift: exp(z - max) <= 1 never overflows
    zmax = z[i, 0]
    for j in range(1, z.shape[1]):
        if z[i, j] > zmax:
            zmax = z[i, j]
    return zmax


# Elementwise activations and derivatives work in place on the whole block as one flat
# loop. Written out of place (out = f(z)) they were called with out = z, and LLVM's
# overlap check before its vector loop then always chose the scalar one: ReLU's
# derivative alone, branching per element, was ~15% of an iris epoch.

@inline_ir
def _same_buffer(a, b):
    return a.ctypes.data == b.ctypes.data


@inline_ir
def _copy_unless_same(src, dst):
    if not _same_buffer(src, dst):
        s = flat_view(src)
        d = flat_view(dst)
        for p in range(d.shape[0]):
            d[p] = s[p]


@inline_ir
def _relu_inplace(v):
    zero = v.dtype.type(0)
    for p in range(v.shape[0]):
        v[p] = v[p] if v[p] > zero else zero


@inline_ir
def _relu_derivative_inplace(a, g):
    # g *= ReLU'(z), in terms of ReLU's output a (flat views of one length)
    zero = g.dtype.type(0)
    for p in range(g.shape[0]):
        g[p] = g[p] if a[p] > zero else zero


@inline_ir
def _logistic_inplace(v):
    one = v.dtype.type(1)
    for p in range(v.shape[0]):
        v[p] = one / (one + np.exp(-v[p]))


@inline_ir
def _tanh_inplace(v):
    for p in range(v.shape[0]):
        v[p] = np.tanh(v[p])


def _shifted_exp_rows_with(subnormal):
    # subnormal: exp's subnormal results, or 0 there (see _exp_nonpositive); a constant
    # of each compiled helper (as a runtime flag it cost a W-tiny epoch ~2%)
    @inline
    def shifted_exp_rows(z, out):
        # out = exp(z - row max of z); out may be z. The exps run as one loop over the
        # block.
        for i in range(z.shape[0]):
            zmax = _row_max(z, i)
            for j in range(z.shape[1]):
                out[i, j] = z[i, j] - zmax
        v = flat_view(out)
        for p in range(v.shape[0]):
            v[p] = _exp_nonpositive(v[p], subnormal)

    return shifted_exp_rows


_shifted_exp_rows = _shifted_exp_rows_with(False)  # the training losses'
_shifted_exp_rows_exact = _shifted_exp_rows_with(True)


@inline
def _softmax_rows(z, out):
    # the probabilities a user gets: NumPy's subnormals, not 0 (predict_log_proba of
    # them is finite, as in scikit-learn)
    _shifted_exp_rows_exact(z, out)
    for i in range(z.shape[0]):
        total = out.dtype.type(0)
        for j in range(z.shape[1]):
            total += out[i, j]
        for j in range(z.shape[1]):
            out[i, j] /= total


@inline
def _log_softmax_rows(z, out):
    for i in range(z.shape[0]):
        zmax = _row_max(z, i)
        # (z - zmax) - log(total), not z - (zmax + log(total)): the latter rounds log(total)
        # to the ulp of zmax (2e-4 at |z| = 1e4 in float32). The shifted values go through
        # out because under fastmath "reassoc" LLVM folds the two subtractions back into one.
        total = out.dtype.type(0)
        for j in range(z.shape[1]):
            d = z[i, j] - zmax
            out[i, j] = d
            total += np.exp(d)
        lse = np.log(total)
        for j in range(z.shape[1]):
            out[i, j] -= lse


@inline
def _activate_hidden(code, z):
    # A hidden layer's activation, in place. Softmax and exp are output activations only
    # (the API refuses them on hidden layers), and leaving them out of this helper keeps
    # softmax's code out of the training kernels, which never apply an output activation.
    v = flat_view(z)
    if code == RELU:
        _relu_inplace(v)
    elif code == LOGISTIC:
        _logistic_inplace(v)
    elif code == TANH:
        _tanh_inplace(v)


@inline
def _activate(code, z, out):
    # out may be z itself.
    if code == SOFTMAX:
        _softmax_rows(z, out)  # row-wise; reads each element before writing it
        return
    _copy_unless_same(z, out)
    if code == EXP:
        v = flat_view(out)
        for p in range(v.shape[0]):
            v[p] = np.exp(v[p])
    else:
        _activate_hidden(code, out)


@inline
def _derivative(code, a, grad, out):
    # out = grad * f'(z), with f'(z) written in terms of a = f(z); out may be grad.
    _copy_unless_same(grad, out)
    g = flat_view(out)
    f = flat_view(a)
    one = g.dtype.type(1)
    zero = g.dtype.type(0)
    if code == RELU:
        _relu_derivative_inplace(f, g)
    elif code == LOGISTIC:
        for p in range(g.shape[0]):
            g[p] = g[p] * f[p] * (one - f[p])
    elif code == TANH:
        for p in range(g.shape[0]):
            g[p] = g[p] * (one - f[p] * f[p])


@kernel
def identity_forward(z, out):
    """Copy ``z`` into ``out`` (linear output of a regressor)."""
    require_shape(out, z.shape, "out must have the shape of z")
    _activate(IDENTITY, z, out)


@kernel
def relu_forward(z, out):
    """``out = max(z, 0)``; ``out`` may be ``z``."""
    require_shape(out, z.shape, "out must have the shape of z")
    _activate(RELU, z, out)


@kernel
def sigmoid_forward(z, out):
    """Logistic sigmoid ``out = 1 / (1 + exp(-z))``; ``out`` may be ``z``."""
    require_shape(out, z.shape, "out must have the shape of z")
    _activate(LOGISTIC, z, out)


@kernel
def tanh_forward(z, out):
    """Hyperbolic tangent; ``out`` may be ``z``."""
    require_shape(out, z.shape, "out must have the shape of z")
    _activate(TANH, z, out)


@kernel
def softmax_forward(z, out):
    """Row-wise softmax, computed after subtracting each row's max (no overflow).

    Parameters
    ----------
    z : ndarray of shape (n_samples, n_classes)
    out : ndarray of shape (n_samples, n_classes)
        Overwritten with probabilities; rows sum to 1. May be ``z``.
    """
    require_shape(out, z.shape, "out must have the shape of z")
    _softmax_rows(z, out)


@kernel
def log_softmax_forward(z, out):
    """Row-wise log-softmax ``z - max - log(sum(exp(z - max)))``; never -inf from overflow."""
    require_shape(out, z.shape, "out must have the shape of z")
    _log_softmax_rows(z, out)


@kernel
def identity_backward(a, grad, out):
    """``out = grad`` (the identity's derivative is 1)."""
    require_shape(grad, a.shape, "grad must have the shape of a")
    require_shape(out, a.shape, "out must have the shape of a")
    _derivative(IDENTITY, a, grad, out)


@kernel
def relu_backward(a, grad, out):
    """``out = grad * (a > 0)``, ``a`` the ReLU output; ``out`` may be ``grad``."""
    require_shape(grad, a.shape, "grad must have the shape of a")
    require_shape(out, a.shape, "out must have the shape of a")
    _derivative(RELU, a, grad, out)


@kernel
def sigmoid_backward(a, grad, out):
    """``out = grad * a * (1 - a)``, ``a`` the sigmoid output; ``out`` may be ``grad``."""
    require_shape(grad, a.shape, "grad must have the shape of a")
    require_shape(out, a.shape, "out must have the shape of a")
    _derivative(LOGISTIC, a, grad, out)


@kernel
def tanh_backward(a, grad, out):
    """``out = grad * (1 - a**2)``, ``a`` the tanh output; ``out`` may be ``grad``."""
    require_shape(grad, a.shape, "grad must have the shape of a")
    require_shape(out, a.shape, "out must have the shape of a")
    _derivative(TANH, a, grad, out)
