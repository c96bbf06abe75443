"""Command line: ``python -m fastnn demo`` and ``python -m fastnn bench``."""

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings

import numpy as np

__all__ = ["main"]


def _iris_split(seed):
    from sklearn.datasets import load_iris
    from sklearn.model_selection import train_test_split

    X, y = load_iris(return_X_y=True)
    names = load_iris().target_names
    Xtr, Xte, ytr, yte = train_test_split(X, names[y], test_size=0.3, stratify=y,
                                          random_state=seed)
    mean, std = Xtr.mean(axis=0), Xtr.std(axis=0)  # standardize with training stats only
    return (Xtr - mean) / std, ytr, (Xte - mean) / std, yte


def _iris_model(backend, lr, seed):
    import fastnn

    return fastnn.Sequential(
        [fastnn.Dense(16, activation="relu"), fastnn.Dense(16, activation="relu"),
         fastnn.Dense(3, activation="softmax")],
        optimizer=fastnn.optimizers.Adam(learning_rate=lr), loss="categorical_crossentropy",
        backend=backend, dtype="float64", seed=seed)


def demo(args):
    """Train the note's iris network with both backends and compare them."""
    Xtr, ytr, Xte, yte = _iris_split(args.seed)
    print(f"iris: {len(Xtr)} train / {len(Xte)} test samples (stratified, standardized); "
          f"network 4-16-16-3, ReLU + softmax, Adam lr={args.lr}, batch {args.batch_size}")
    per_epoch = {}
    for backend in ("numba", "numpy"):
        model = _iris_model(backend, args.lr, args.seed)
        print(f"\n[{backend}]")
        start = time.perf_counter()
        history = model.fit(Xtr, ytr, epochs=args.epochs, batch_size=args.batch_size,
                            validation_data=(Xte, yte))
        wall = time.perf_counter() - start
        for e in range(args.epochs):
            if e == 0 or (e + 1) % args.log_every == 0 or e + 1 == args.epochs:
                print(f"  epoch {e + 1:4d}/{args.epochs}  loss {history['loss'][e]:.5f}  "
                      f"val_loss {history['val_loss'][e]:.5f}  "
                      f"val_acc {history['val_accuracy'][e]:.3f}  "
                      f"{1e6 * history.seconds[e]:9.1f} us")
        result = model.evaluate(Xte, yte)
        # The first epoch of the numba backend includes compiling (or loading) the kernels.
        per_epoch[backend] = statistics.median(history.seconds[1:] or history.seconds)
        print(f"  {backend}: test accuracy {result['accuracy']:.4f}, test loss "
              f"{result['loss']:.4f}, fit {wall:.3f} s (first epoch {history.seconds[0]:.3f} s), "
              f"median epoch {1e6 * per_epoch[backend]:.1f} us")
    ratio = per_epoch["numpy"] / per_epoch["numba"]
    print(f"\nspeed: numba {1e6 * per_epoch['numba']:.1f} us/epoch, numpy "
          f"{1e6 * per_epoch['numpy']:.1f} us/epoch -> numba is {ratio:.1f}x faster per epoch")
    return 0


def _machine():
    info = {"cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "machine": platform.machine()}
    try:
        import numba

        info["numba"] = numba.__version__
    except ImportError:  # pragma: no cover - numba is a dependency
        pass
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = ", ".join(
            f"{p.get('internal_api')} {p.get('version')} ({p.get('num_threads')} threads, "
            f"{p.get('architecture')})" for p in threadpool_info() if p.get("user_api") == "blas")
    except ImportError:
        info["blas"] = "unknown"
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "NUMBA_NUM_THREADS"):
        if var in os.environ:
            info[var] = os.environ[var]
    return info


def _time_fit(model, X, y, epochs, batch_size):
    start = time.perf_counter()
    model.fit(X, y, epochs=epochs, batch_size=batch_size)
    return (time.perf_counter() - start) / epochs


def _sklearn_peer(spec, X, y, repeats):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    times = []
    for r in range(repeats):
        clf = MLPClassifier(hidden_layer_sizes=spec.hidden, solver="adam", alpha=0.0,
                            batch_size=spec.batch_size, learning_rate_init=spec.lr,
                            max_iter=spec.epochs, tol=0.0, n_iter_no_change=10**9,
                            random_state=r)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            start = time.perf_counter()
            clf.fit(X.astype(np.float64) if spec.dtype == "float64" else X, y)
        times.append((time.perf_counter() - start) / clf.n_iter_)
    return times


def _summary(times):
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "repeats": len(times)}


def bench(args):
    """Time one training epoch per workload for each engine, side by side, in one run."""
    from fastnn._workloads import WORKLOADS, load, make_model

    names = args.workloads.split(",") if args.workloads else list(WORKLOADS)
    for name in names:
        if name not in WORKLOADS:
            print(f"unknown workload {name!r}; choose from {', '.join(WORKLOADS)}",
                  file=sys.stderr)
            return 2
    machine = _machine()
    print("machine: " + ", ".join(f"{k}={v}" for k, v in machine.items()))
    results = {"machine": machine, "date": time.strftime("%Y-%m-%d"), "workloads": {}}
    header = f"{'workload':9} {'engine':8} {'median/epoch':>14} {'min':>11} {'max':>11} {'vs numpy':>9}"
    print(header)
    print("-" * len(header))
    for name in names:
        spec = WORKLOADS[name]
        X, y, _, _ = load(name)
        fast, slow = make_model(name, "numba"), make_model(name, "numpy")
        compile_start = time.perf_counter()
        fast.fit(X, y, epochs=1, batch_size=spec.batch_size)  # compile/load kernels first
        first = time.perf_counter() - compile_start
        timings = {"numba": [], "numpy": []}
        for _ in range(args.repeats):  # alternate so drift hits both engines alike
            timings["numba"].append(_time_fit(fast, X, y, spec.epochs, spec.batch_size))
            timings["numpy"].append(_time_fit(slow, X, y, spec.epochs, spec.batch_size))
        if not args.no_peers:
            timings["sklearn"] = _sklearn_peer(spec, X, y, args.peer_repeats)
        base = statistics.median(timings["numpy"])
        row = {"first_fit_epoch_s": first}
        for engine, times in timings.items():
            s = _summary(times)
            s["speedup_vs_numpy"] = base / s["median_s"]
            row[engine] = s
            print(f"{name:9} {engine:8} {_fmt(s['median_s']):>14} {_fmt(s['min_s']):>11} "
                  f"{_fmt(s['max_s']):>11} {s['speedup_vs_numpy']:8.2f}x")
        results["workloads"][name] = row
    print("times are per training epoch (a fit of the workload's epochs, divided); "
          "'vs numpy' = numpy-backend median / engine median, higher is faster")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
        print(f"wrote {args.json}")
    return 0


def _fmt(seconds):
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.3f} s"


def main(argv=None):
    """Entry point of ``python -m fastnn``."""
    parser = argparse.ArgumentParser(prog="python -m fastnn", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_demo = sub.add_parser("demo", help="train the note's iris network with both backends")
    p_demo.add_argument("--epochs", type=int, default=200)
    p_demo.add_argument("--batch-size", type=int, default=16)
    p_demo.add_argument("--lr", type=float, default=0.01)
    p_demo.add_argument("--seed", type=int, default=0)
    p_demo.add_argument("--log-every", type=int, default=20,
                        help="print every Nth epoch's metrics (default 20)")
    p_demo.set_defaults(func=demo)
    p_bench = sub.add_parser("bench", help="numba vs numpy (and peers) per workload")
    p_bench.add_argument("--workloads", default="",
                         help="comma-separated, e.g. W-tiny,W-small (default: all)")
    p_bench.add_argument("--repeats", type=int, default=7)
    p_bench.add_argument("--peer-repeats", type=int, default=3)
    p_bench.add_argument("--no-peers", action="store_true", help="skip scikit-learn")
    p_bench.add_argument("--json", default="", help="also write the results to this file")
    p_bench.set_defaults(func=bench)
    args = parser.parse_args(argv)
    for name in ("epochs", "batch_size", "repeats", "peer_repeats", "log_every"):
        if getattr(args, name, 1) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    return args.func(args)
