"""The training engines side by side (not an asv suite): one thread, the two-thread
split, and the choice between them that fits make (fastnn/_split.py).

    python benchmarks/split_engines.py [--turns N] [--pause SECONDS]

In turns in one process: W-small epochs (beside the NumPy backend) and the digits
estimator case of issue 3 (``MLPClassifier((128, 64), batch_size=32, max_iter=20)``).
Prints medians, min-max and ratios. The engines give the same numbers; only their
times differ. ``--pause`` sleeps before each sample, as the bench does before an
estimator fit: after a sleep the split starts slow on the AMD EPYC host of the README.
"""

import argparse
import statistics
import time
import warnings


def _run(label, samples, fns, pause):
    times = {name: [] for name in fns}
    for _ in range(samples):
        for name, fn in fns.items():
            if pause:
                time.sleep(pause)
            times[name].append(fn())
    base = statistics.median(times[next(iter(times))])
    print(label)
    for name, values in times.items():
        med = statistics.median(values)
        print(f"  {name:12s} median {med * 1e3:8.3f} ms   min {min(values) * 1e3:8.3f}"
              f"   max {max(values) * 1e3:8.3f}   {base / med:5.2f}x the first row")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--pause", type=float, default=0.0)
    args = parser.parse_args(argv)

    from sklearn.exceptions import ConvergenceWarning

    from fastnn import _split
    from fastnn._workloads import (WORKLOADS, estimator_data, load, make_estimator,
                                   make_model)

    def forced(engine, fn):
        def timed():
            _split.FORCE = engine
            try:
                return fn()
            finally:
                _split.FORCE = None
        return timed

    spec = WORKLOADS["W-small"]
    X, y, _, _ = load("W-small")
    models = {backend: make_model("W-small", backend) for backend in ("numpy", "numba")}

    def epoch(backend):
        def timed():
            start = time.perf_counter()
            models[backend].fit(X, y, epochs=spec.epochs, batch_size=spec.batch_size)
            return (time.perf_counter() - start) / spec.epochs
        return timed

    case = "digits (128,64)"
    Xd, yd = estimator_data(case)

    def fit():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            start = time.perf_counter()
            make_estimator(case, "fastnn").fit(Xd, yd)
            return time.perf_counter() - start

    train = {"numpy": epoch("numpy"), "one thread": forced("one", epoch("numba")),
             "split": forced("split", epoch("numba")), "choice": epoch("numba")}
    estimator = {"one thread": forced("one", fit), "split": forced("split", fit),
                 "choice": fit}
    for fns in (train, estimator):  # compile outside the timing
        for fn in fns.values():
            fn()
    _run("W-small, seconds an epoch", args.turns, train, args.pause)
    _run(f"{case}, seconds a fit", args.turns, estimator, args.pause)


if __name__ == "__main__":
    main()
