"""Numba engine: the engine functions of ``fastnn.kernels``, under the names the NumPy
engine uses, so a model switches engines by switching modules."""

from fastnn.kernels import (
    bce_loss,
    loss_grad,
    loss_grad_csr,
    mse_loss,
    predict_forward,
    predict_forward_csr,
    run_epochs,
    run_epochs_csr,
    workspace_size,
    xent_loss,
)

__all__ = ["bce_loss", "loss_grad", "loss_grad_csr", "mse_loss", "predict_forward",
           "predict_forward_csr", "run_epochs", "run_epochs_csr", "workspace_size", "xent_loss"]
