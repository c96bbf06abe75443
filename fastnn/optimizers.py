"""Optimizer configurations: what the fused epoch kernel updates ``theta`` with."""

from dataclasses import dataclass

from fastnn._validation import check_float

__all__ = ["SGD", "Adam", "get"]


@dataclass(frozen=True)
class SGD:
    """Mini-batch gradient descent, optionally with (Nesterov) momentum.

    ``theta -= learning_rate * grad`` when ``momentum == 0`` (the note's update).
    """

    learning_rate: float = 0.01
    momentum: float = 0.0
    nesterov: bool = False

    def __post_init__(self):
        check_float(self.learning_rate, "learning_rate", low=0.0, low_open=True)
        check_float(self.momentum, "momentum", low=0.0, high=1.0, high_open=True)
        if not isinstance(self.nesterov, bool):
            raise TypeError(f"nesterov must be a bool, got {self.nesterov!r}")


@dataclass(frozen=True)
class Adam:
    """Adam (Kingma & Ba, arXiv:1412.6980), defaults as in the paper except the rate."""

    learning_rate: float = 0.001
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-8

    def __post_init__(self):
        check_float(self.learning_rate, "learning_rate", low=0.0, low_open=True)
        check_float(self.beta_1, "beta_1", low=0.0, high=1.0, high_open=True)
        check_float(self.beta_2, "beta_2", low=0.0, high=1.0, high_open=True)
        check_float(self.epsilon, "epsilon", low=0.0, low_open=True)


_BY_NAME = {"sgd": SGD, "adam": Adam}


def get(optimizer):
    """Return an optimizer object for a name (``"sgd"``, ``"adam"``) or an instance."""
    if isinstance(optimizer, (SGD, Adam)):
        return optimizer
    if isinstance(optimizer, str) and optimizer.lower() in _BY_NAME:
        return _BY_NAME[optimizer.lower()]()
    raise ValueError(f"optimizer must be one of {sorted(_BY_NAME)} or an optimizer object, "
                     f"got {optimizer!r}")
