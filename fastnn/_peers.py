"""Peer MLPs (PyTorch, JAX) for ``python -m fastnn bench``, each run in its own process.

torch, JAX and OpenBLAS thread pools loaded in one process slowed fits 10-25x in our
measurements (WORKLOADS.md), so the report never imports a peer itself: it runs
``python -m fastnn._peers PEER --workloads ... --repeats N`` once per peer, and that
process times the peer *and* fastnn's NumPy backend side by side, alternating them, and
prints one JSON object. The peer's ratio is taken against that in-process baseline.

Peers implement the WORKLOADS.md recipe: ReLU hidden layers, softmax + categorical
cross-entropy, Adam (0.9, 0.999, 1e-8), Glorot-uniform weights and biases, shuffled
mini-batches, no L2. ``fastnn`` is a peer too (the numba backend in its own process),
which checks this harness against the in-process numbers.
"""

import argparse
import importlib
import importlib.util
import json
import statistics
import sys
import time

import numpy as np

from fastnn._workloads import INFER_WORKLOADS, WORKLOADS, infer_rows, load, make_model

PEERS = ("torch", "jax", "fastnn")
_MODULE = {"torch": "torch", "jax": "jax", "fastnn": "numba"}


def available(peer):
    """True when ``peer``'s library can be imported (checked without importing it)."""
    return importlib.util.find_spec(_MODULE[peer]) is not None


def _onehot(y, n_classes, dtype):
    out = np.zeros((len(y), n_classes), dtype=dtype)
    out[np.arange(len(y)), y] = 1
    return out


def _glorot(rng, sizes, dtype):
    params = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        bound = np.sqrt(6.0 / (n_in + n_out))
        params.append((rng.uniform(-bound, bound, (n_in, n_out)).astype(dtype),
                       rng.uniform(-bound, bound, n_out).astype(dtype)))
    return params


# --- PyTorch: eager, fused Adam where this torch has it -----------------------------------
class _TorchMLP:
    def __init__(self, sizes, dtype, lr, seed=0):
        import torch

        self.torch = torch
        torch.manual_seed(seed)
        self.dtype = getattr(torch, dtype)
        layers = []
        for i, (w, b) in enumerate(_glorot(np.random.default_rng(seed), sizes, dtype)):
            lin = torch.nn.Linear(w.shape[0], w.shape[1], dtype=self.dtype)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(w.T)))
                lin.bias.copy_(torch.from_numpy(b))
            layers.append(lin)
            if i < len(sizes) - 2:
                layers.append(torch.nn.ReLU())
        self.net = torch.nn.Sequential(*layers)
        kw = dict(lr=lr, betas=(0.9, 0.999), eps=1e-8)
        try:
            self.opt = torch.optim.Adam(self.net.parameters(), fused=True, **kw)
        except (RuntimeError, TypeError, ValueError):  # no fused CPU Adam in this torch
            self.opt = torch.optim.Adam(self.net.parameters(), **kw)

    def fit(self, X, y, epochs, batch_size):
        torch = self.torch
        X, y = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))
        n = X.shape[0]
        loss_fn = torch.nn.functional.cross_entropy
        for _ in range(epochs):
            order = torch.randperm(n)
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                self.opt.zero_grad(set_to_none=True)
                loss = loss_fn(self.net(X[idx]), y[idx])
                loss.backward()
                self.opt.step()

    def predict_proba(self, X):
        torch = self.torch
        with torch.inference_mode():
            return torch.softmax(self.net(torch.from_numpy(X)), dim=1).numpy()


# --- JAX: one jitted epoch, mini-batches under lax.scan ---------------------------------
class _JaxMLP:
    def __init__(self, sizes, dtype, lr, seed=0):
        import jax

        if dtype == "float64":
            jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp

        self.jax, self.jnp = jax, jnp
        self.dtype = dtype
        self.params = [(jnp.asarray(w), jnp.asarray(b))
                       for w, b in _glorot(np.random.default_rng(seed), sizes, dtype)]
        self.m = jax.tree_util.tree_map(jnp.zeros_like, self.params)
        self.v = jax.tree_util.tree_map(jnp.zeros_like, self.params)
        self.t = 0
        self.lr = lr
        self.rng = np.random.default_rng(seed)
        self._epochs = {}

        def forward(params, x):
            for w, b in params[:-1]:
                x = jax.nn.relu(x @ w + b)
            w, b = params[-1]
            return x @ w + b

        def loss(params, x, yo):
            return -jnp.mean(jnp.sum(yo * jax.nn.log_softmax(forward(params, x)), axis=1))

        grad = jax.grad(loss)

        def step(carry, batch):
            params, m, v, t = carry
            x, yo = batch
            g = grad(params, x, yo)
            t = t + 1
            m = jax.tree_util.tree_map(lambda a, b: 0.9 * a + 0.1 * b, m, g)
            v = jax.tree_util.tree_map(lambda a, b: 0.999 * a + 0.001 * b * b, v, g)
            lr_t = lr * jnp.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
            params = jax.tree_util.tree_map(
                lambda p, a, b: p - lr_t * a / (jnp.sqrt(b) + 1e-8), params, m, v)
            return (params, m, v, t), None

        def epoch(params, m, v, t, xb, yb, xr, yr):
            (params, m, v, t), _ = jax.lax.scan(step, (params, m, v, t), (xb, yb))
            if xr.shape[0]:  # the last, shorter batch (shapes are static under jit)
                (params, m, v, t), _ = step((params, m, v, t), (xr, yr))
            return params, m, v, t

        self._epoch = jax.jit(epoch)
        self._predict = jax.jit(lambda params, x: jax.nn.softmax(forward(params, x), axis=1))

    def fit(self, X, y, epochs, batch_size):
        jnp = self.jnp
        n = X.shape[0]
        Y = _onehot(y, int(self.params[-1][1].shape[0]), X.dtype)
        full = (n // batch_size) * batch_size
        t = jnp.asarray(self.t, dtype=self.dtype)
        for _ in range(epochs):
            order = self.rng.permutation(n)
            xs, ys = X[order], Y[order]
            xb = xs[:full].reshape(-1, batch_size, X.shape[1])
            yb = ys[:full].reshape(-1, batch_size, Y.shape[1])
            self.params, self.m, self.v, t = self._epoch(
                self.params, self.m, self.v, t, xb, yb, xs[full:], ys[full:])
        self.jax.block_until_ready(self.params)
        self.t = int(t)

    def predict_proba(self, X):
        return np.asarray(self._predict(self.params, X))


def _peer_model(peer, name, seed=0):
    spec = WORKLOADS[name]
    X, y, _, _ = load(name)
    sizes = [X.shape[1], *spec.hidden, int(len(np.unique(y)))]
    if peer == "torch":
        return _TorchMLP(sizes, spec.dtype, spec.lr, seed)
    if peer == "jax":
        return _JaxMLP(sizes, spec.dtype, spec.lr, seed)
    if peer == "fastnn":
        return make_model(name, "numba", seed)
    raise ValueError(f"unknown peer {peer!r}; expected one of {PEERS}")


def _seconds(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _summary(times, scale=1.0):
    times = [t * scale for t in times]
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "repeats": len(times)}


def _calls(fn, x, seconds):
    """Calls of ``fn(x)`` that take about ``seconds`` (at least one)."""
    once = max(_seconds(lambda: fn(x)), 1e-7)
    return max(1, int(seconds / once))


def measure(peer, names, repeats, infer_seconds=0.05):
    """Seconds per epoch (training) or per call (inference) of ``peer`` and the NumPy backend.

    Both run alternately in this process; the first fit and call are untimed (compile).
    """
    out = {}
    for name in names:
        if name in WORKLOADS:
            spec = WORKLOADS[name]
            X, y, _, _ = load(name)
            peer_model, base = _peer_model(peer, name), make_model(name, "numpy")
            kw = dict(epochs=spec.epochs, batch_size=spec.batch_size)
            peer_model.fit(X, y, epochs=1, batch_size=spec.batch_size)  # compile / warm up
            times = {"peer": [], "numpy": []}
            for _ in range(repeats):
                times["peer"].append(_seconds(lambda: peer_model.fit(X, y, **kw)))
                times["numpy"].append(_seconds(lambda: base.fit(X, y, **kw)))
            scale = 1.0 / spec.epochs
        else:
            ispec = INFER_WORKLOADS[name]
            X, y, _, _ = load(ispec.model)
            train = WORKLOADS[ispec.model]
            peer_model, base = _peer_model(peer, ispec.model), make_model(ispec.model, "numpy")
            for model in (peer_model, base):
                model.fit(X[:2048], y[:2048], epochs=1, batch_size=train.batch_size)
            x = infer_rows(name)
            for model in (peer_model, base):
                model.predict_proba(x)  # compile / warm up before calibrating the loops
            calls = {"peer": _calls(peer_model.predict_proba, x, infer_seconds),
                     "numpy": _calls(base.predict_proba, x, infer_seconds)}
            times = {"peer": [], "numpy": []}
            for _ in range(repeats):
                for key, model in (("peer", peer_model), ("numpy", base)):
                    def loop(model=model, k=calls[key]):
                        for _ in range(k):
                            model.predict_proba(x)
                    times[key].append(_seconds(loop) / calls[key])
            scale = 1.0
        out[name] = {key: _summary(t, scale) for key, t in times.items()}
    return out


def _versions(peer):
    mod = importlib.import_module(_MODULE[peer])
    return {"version": getattr(mod, "__version__", "unknown")}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastnn._peers")
    parser.add_argument("peer", choices=PEERS)
    parser.add_argument("--workloads", required=True)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    names = args.workloads.split(",")
    result = {"peer": args.peer, "results": measure(args.peer, names, args.repeats)}
    result.update(_versions(args.peer))
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
