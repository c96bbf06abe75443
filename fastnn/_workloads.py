"""The benchmark workloads of WORKLOADS.md, built from fixed seeds.

Shared by ``python -m fastnn bench`` and the asv suites in ``benchmarks/``.
"""

from dataclasses import dataclass
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class Workload:
    name: str
    hidden: tuple
    dtype: str
    batch_size: int
    epochs: int
    lr: float


WORKLOADS = {
    "W-tiny": Workload("W-tiny", (16, 16), "float64", 16, 200, 0.01),
    "W-small": Workload("W-small", (128, 64), "float64", 32, 20, 1e-3),
    "W-large": Workload("W-large", (512, 256), "float32", 128, 1, 1e-3),
}


@lru_cache(maxsize=None)
def load(name):
    """``(X_train, y_train, X_test, y_test)`` of a workload (test arrays may be None)."""
    from sklearn.datasets import load_digits, load_iris, make_classification
    from sklearn.model_selection import train_test_split

    if name == "W-tiny":
        X, y = load_iris(return_X_y=True)
        X = (X - X.mean(axis=0)) / X.std(axis=0)
        return X, y, None, None
    if name == "W-small":
        X, y = load_digits(return_X_y=True)
        Xtr, Xte, ytr, yte = train_test_split(X / 16.0, y, test_size=0.2, random_state=0)
        return Xtr, ytr, Xte, yte
    if name == "W-large":
        X, y = make_classification(n_samples=60000, n_features=784, n_informative=64,
                                   n_classes=10, random_state=0)
        return X.astype(np.float32), y, None, None
    raise ValueError(f"unknown workload {name!r}; expected one of {sorted(WORKLOADS)}")


def make_model(name, backend, seed=0):
    """A fresh ``Sequential`` for workload ``name`` on ``backend``."""
    import fastnn

    spec = WORKLOADS[name]
    X, y, _, _ = load(name)
    n_classes = len(np.unique(y))
    layers = [fastnn.Dense(u, activation="relu") for u in spec.hidden]
    layers.append(fastnn.Dense(n_classes, activation="softmax"))
    return fastnn.Sequential(layers, optimizer=fastnn.optimizers.Adam(learning_rate=spec.lr),
                             loss="categorical_crossentropy", backend=backend,
                             dtype=spec.dtype, seed=seed)
