"""Numba engine: the engine functions of ``fastnn.kernels``, under the names the NumPy
engine uses, so a model switches engines by switching modules."""

from fastnn.kernels import (
    bce_loss,
    loss_grad,
    mse_loss,
    predict_forward,
    run_epochs,
    workspace_size,
    xent_loss,
)

__all__ = ["bce_loss", "loss_grad", "mse_loss", "predict_forward", "run_epochs",
           "workspace_size", "xent_loss"]
