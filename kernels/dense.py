"""Dense layer kernels: ``z = x @ w + b`` and its two backward products."""

from ._jit import dot_into, dot_nt_into, dot_t_into, inline, kernel

# All three products go to BLAS (kernels/_jit.py's direct gemm calls, into preallocated
# buffers): OpenBLAS's small-matrix kernels beat our hand loops at the sizes the
# workloads use, down to iris' 16x16x16 (delta @ w.T: 700 ns BLAS vs 926 ns loops) and
# 16x16x3; `python benchmarks/matmul_threshold.py` keeps the loops and re-measures.


@inline
def _matmul_bias(x, w, b, out):
    dot_into(x, w, out)
    for i in range(x.shape[0]):
        for j in range(w.shape[1]):
            out[i, j] += b[j]


@inline
def _grad_params(x, delta, w, alpha, denom, scale, grad_w, grad_b):
    # grad_w = (x.T @ delta + alpha * w) / denom ; grad_b = delta.sum(0) / denom; with
    # scale False only the sums: the epoch kernel's optimizer step applies the rest as
    # it streams the parameters anyway (optim._batch_grad), saving a pass over grad.
    n, n_in = x.shape
    n_out = delta.shape[1]
    dot_t_into(x, delta, grad_w)
    if scale:
        for k in range(n_in):
            for j in range(n_out):
                grad_w[k, j] = (grad_w[k, j] + alpha * w[k, j]) / denom
    for j in range(n_out):
        grad_b[j] = 0
    for i in range(n):
        for j in range(n_out):
            grad_b[j] += delta[i, j]
    if scale:
        for j in range(n_out):
            grad_b[j] /= denom


@kernel
def dense_forward(x, w, b, out):
    """Affine map of a batch: ``out = x @ w + b``.

    Parameters
    ----------
    x : ndarray of shape (n_samples, n_in)
    w : ndarray of shape (n_in, n_out)
    b : ndarray of shape (n_out,)
    out : ndarray of shape (n_samples, n_out)
        Overwritten with the pre-activation ``z``.
    """
    _matmul_bias(x, w, b, out)


@kernel
def dense_backward(x, delta, w, alpha, denom, grad_w, grad_b):
    """Parameter gradients of a dense layer, with an L2 term.

    ``grad_w = (x.T @ delta + alpha * w) / denom`` and
    ``grad_b = delta.sum(axis=0) / denom``; ``denom`` is the batch's
    ``sum(sample_weight)``, so a mean loss gets a mean gradient.

    Parameters
    ----------
    x : ndarray of shape (n_samples, n_in)
        The layer's input (the previous layer's activation).
    delta : ndarray of shape (n_samples, n_out)
        dL/dz of this layer, unscaled (per-sample weights already applied).
    w : ndarray of shape (n_in, n_out)
    alpha, denom : float
    grad_w : ndarray of shape (n_in, n_out)
        Overwritten.
    grad_b : ndarray of shape (n_out,)
        Overwritten.
    """
    _grad_params(x, delta, w, alpha, denom, True, grad_w, grad_b)


@kernel
def dense_backward_input(delta, w, out):
    """Back-propagate ``delta`` through the weights: ``out = delta @ w.T``.

    Parameters
    ----------
    delta : ndarray of shape (n_samples, n_out)
    w : ndarray of shape (n_in, n_out)
    out : ndarray of shape (n_samples, n_in)
        Overwritten with dL/da of the layer's input.
    """
    dot_nt_into(delta, w, out)
