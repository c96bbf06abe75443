"""Command line: ``python -m fastnn demo`` and ``python -m fastnn bench``."""

import argparse
import json
import math
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
    import fastnn

    Xtr, ytr, Xte, yte = _iris_split(args.seed)
    print(f"iris: {len(Xtr)} train / {len(Xte)} test samples (stratified, standardized); "
          f"network 4-16-16-3, ReLU + softmax, Adam lr={args.lr}, batch {args.batch_size}")
    per_epoch = {}
    for backend in ("numba", "numpy"):
        model = _iris_model(backend, args.lr, args.seed)
        print(f"\n[{backend}]")
        start = time.perf_counter()
        with warnings.catch_warnings():  # a divergence is reported below, in its place
            warnings.simplefilter("ignore", fastnn.DivergenceWarning)
            history = model.fit(Xtr, ytr, epochs=args.epochs, batch_size=args.batch_size,
                                validation_data=(Xte, yte))
        wall = time.perf_counter() - start
        ran = len(history["loss"])  # fewer than asked when training diverged (warned)
        for e in range(ran):
            if e == 0 or (e + 1) % args.log_every == 0 or e + 1 == ran:
                print(f"  epoch {e + 1:4d}/{args.epochs}  loss {history['loss'][e]:.5f}  "
                      f"val_loss {history['val_loss'][e]:.5f}  "
                      f"val_acc {history['val_accuracy'][e]:.3f}  "
                      f"{1e6 * history.seconds[e]:9.1f} us")
        if ran < args.epochs:
            print(f"  training diverged at epoch {ran + 1}: stopped with the weights of the "
                  "last finite epoch (lower --lr)")
        if ran == 0:
            return 1
        result = model.evaluate(Xte, yte)
        # The first epoch of the numba backend includes compiling (or loading) the kernels.
        per_epoch[backend] = statistics.median(history.seconds[1:] or history.seconds)
        print(f"  {backend}: test accuracy {result['accuracy']:.4f}, test loss "
              f"{result['loss']:.4f}, fit {wall:.3f} s (first epoch {history.seconds[0]:.3f} s), "
              f"median epoch {1e6 * per_epoch[backend]:.1f} us")
    if args.epochs == 1:
        print("\nspeed: one epoch only, and the numba one includes loading the kernels: run "
              "more epochs for a per-epoch comparison")
        return 0
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
        from fastnn.kernels import _jit

        info["kernels_blas"] = _jit.BLAS  # whose gemm the kernels call
    except ImportError:  # pragma: no cover - numba is a dependency
        pass
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = ", ".join(
            f"{p.get('internal_api')} {p.get('version')} ({p.get('num_threads')} threads, "
            f"{p.get('architecture')})" for p in threadpool_info() if p.get("user_api") == "blas")
        numpy_blas = [p for p in threadpool_info()
                      if p.get("user_api") == "blas" and "numpy" in p.get("filepath", "")]
        if numpy_blas:  # the BLAS the NumPy backend calls
            info["numpy_blas"] = f"{numpy_blas[0]['internal_api']} {numpy_blas[0]['version']}"
        info["threadpools"] = ", ".join(
            f"{p.get('internal_api')} ({p.get('num_threads')} threads)" for p in threadpool_info())
    except ImportError:
        info["blas"] = "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in fh
                               if line.startswith("model name"))
    except (OSError, StopIteration):
        info["cpu"] = platform.processor() or "unknown"
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "NUMBA_NUM_THREADS"):
        if var in os.environ:
            info[var] = os.environ[var]
    return info


# --- bench ------------------------------------------------------------------------------
# Goals of issue 4 (ratios vs the NumPy backend, measured side by side) and issue 3
# (scikit-learn time / fastnn time). Printed next to the numbers with met / NOT met.
TRAIN_GOALS = {"W-tiny": 50.0, "W-small": 4.0, "W-large": 1.7, "W-inferB": 1.0}
PEAK_FRACTION_GOAL = 0.8      # W-large's executed FLOP/s against the machine's gemm peak
INFER1_GOAL_S = 2e-6          # W-infer1 through a compiled predictor
COMPILE_GOALS_S = {"warm": 0.5, "cold": 5.0}
ESTIMATOR_GOALS = {"digits (128,64)": 7.0, "iris (16,16)": 50.0, "predict_proba 1 row": 10.0}
ALL_WORKLOADS = ("W-tiny", "W-small", "W-large", "W-infer1", "W-inferB", "W-compile")
QUICK_SKIPS = ("W-large", "W-inferB")  # both build the 60000 x 784 data set (~9 s)


# Pause before each timed run, outside the timing. NumPy and the kernels use two different
# OpenBLAS builds, each with its own thread pool, and a pool keeps spinning for a while
# after its last call: whichever engine ran right after the other one lost a core. W-inferB
# measured 79k rows/s right after a NumPy call and 150k rows/s after a pause.
BLAS_SETTLE_S = 0.2


def _settle():
    time.sleep(BLAS_SETTLE_S)


def _time_fit(model, X, y, epochs, batch_size):
    _settle()
    # A tenth of the epochs first, untimed: after the pause the core runs slower for a
    # while, which a 4 ms W-tiny sample measured as 10% of its time (29 vs 26 us per
    # epoch, medians of 9; a 150 ms NumPy-backend sample, hardly). W-large's one-epoch
    # samples take a second each and get none.
    if epochs >= 10:
        model.fit(X, y, epochs=epochs // 10, batch_size=batch_size)
    start = time.perf_counter()
    model.fit(X, y, epochs=epochs, batch_size=batch_size)
    return (time.perf_counter() - start) / epochs


def _quiet_fit(est, X, y):
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        _settle()
        start = time.perf_counter()
        est.fit(X, y)
        return time.perf_counter() - start


def _sklearn_peer(spec, X, y, repeats):
    from sklearn.neural_network import MLPClassifier

    times = []
    for r in range(repeats):
        clf = MLPClassifier(hidden_layer_sizes=spec.hidden, solver="adam", alpha=0.0,
                            batch_size=spec.batch_size, learning_rate_init=spec.lr,
                            max_iter=spec.epochs, tol=0.0, n_iter_no_change=10**9,
                            random_state=r)
        seconds = _quiet_fit(clf, X.astype(np.float64) if spec.dtype == "float64" else X, y)
        times.append(seconds / clf.n_iter_)
    return times


def _summary(times):
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "repeats": len(times)}


def _calls_per_repeat(fn, x, seconds):
    start = time.perf_counter()
    fn(x)
    once = max(time.perf_counter() - start, 1e-7)
    return max(1, int(seconds / once))


def _time_calls(fns, x, repeats, seconds):
    """Seconds per call of each ``fns[name](x)``, repeats alternating between them."""
    calls = {name: _calls_per_repeat(fn, x, seconds) for name, fn in fns.items()}
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            k = calls[name]
            _settle()
            start = time.perf_counter()
            for _ in range(k):
                fn(x)
            times[name].append((time.perf_counter() - start) / k)
    return times


_FITTED = {}


def _fitted_estimator(case, library):
    """Estimators of ``ESTIMATOR_CASES`` fitted once per run (for predict timings)."""
    from fastnn._workloads import estimator_data, make_estimator

    if (case, library) not in _FITTED:
        est = make_estimator(case, library)
        _quiet_fit(est, *estimator_data(case))
        _FITTED[case, library] = est
    return _FITTED[case, library]


def _row(timings, base_key="numpy"):
    base = statistics.median(timings[base_key])
    row = {}
    for engine, times in timings.items():
        s = _summary(times)
        s["speedup_vs_numpy"] = base / s["median_s"]
        row[engine] = s
    return row


def _print_rows(name, row, goal=None, rows_per_call=None):
    for engine, s in row.items():
        if not isinstance(s, dict) or "median_s" not in s:
            continue
        if rows_per_call:  # throughput: rows per second, higher is faster
            cells = [f"{rows_per_call / s[k] / 1e3:.1f}k/s" for k in ("median_s", "max_s", "min_s")]
        else:
            cells = [_fmt(s[k]) for k in ("median_s", "min_s", "max_s")]
        note = ""
        if engine == "numba" and goal is not None:
            note = f"  goal >= {goal:g}x: {'met' if s['speedup_vs_numpy'] >= goal else 'NOT met'}"
        if "numpy_same_process_median_s" in s:
            note += "  (own process, vs its own NumPy baseline)"
        print(f"{name:9} {engine:14} {cells[0]:>12} {cells[1]:>11} {cells[2]:>11} "
              f"{s['speedup_vs_numpy']:8.2f}x{note}")


def _bench_train(name, args):
    from fastnn._workloads import WORKLOADS, load, make_model

    spec = WORKLOADS[name]
    X, y, X_test, y_test = load(name)
    fast, slow = make_model(name, "numba"), make_model(name, "numpy")
    peak_before = None
    if name == "W-large":  # the gemm peak before the engines run, and again after them
        from fastnn._workloads import gemm_peak

        _settle()
        peak_before = gemm_peak(spec.dtype)
    compile_start = time.perf_counter()
    fast.fit(X, y, epochs=1, batch_size=spec.batch_size)  # compile/load kernels first
    first = time.perf_counter() - compile_start
    timings = {"numba": [], "numpy": []}
    for _ in range(args.repeats):  # alternate so drift hits both engines alike
        timings["numba"].append(_time_fit(fast, X, y, spec.epochs, spec.batch_size))
        timings["numpy"].append(_time_fit(slow, X, y, spec.epochs, spec.batch_size))
    if not args.no_peers:
        timings["sklearn"] = _sklearn_peer(spec, X, y, args.peer_repeats)
    row = {"kind": "train", "unit": "s/epoch", "dtype": spec.dtype, "first_fit_epoch_s": first,
           "goal_speedup": TRAIN_GOALS.get(name)}
    row.update(_row(timings))
    Xa, ya = (X, y) if X_test is None else (X_test, y_test)
    row["accuracy"] = {"numba": fast.evaluate(Xa, ya)["accuracy"],
                       "numpy": slow.evaluate(Xa, ya)["accuracy"],
                       "on": "train" if X_test is None else "test",
                       # after all timed fits; numba also had the warm-up epoch
                       "epochs": {"numba": 1 + args.repeats * spec.epochs,
                                  "numpy": args.repeats * spec.epochs}}
    if name == "W-large":
        row["machine_limit"] = _machine_limit(name, spec.dtype, row, peak_before)
    return row


def _machine_limit(name, dtype, row, peak_before):
    """Executed GFLOP/s of each engine against this machine's gemm peak (the goal is a
    fraction of it), and the epoch's products alone through the same BLAS.

    The peak is the best rate seen: a 2048^3 product before the engines ran
    (``peak_before``) and after, and the epoch's own products, which cannot outrun the
    machine's limit; a product timed in a slow phase of the host would otherwise lower
    the peak and flatter the fraction.
    """
    from fastnn._workloads import executed_flops, gemm_peak, products_seconds

    flops = executed_flops(name)
    _settle()
    peak_after = gemm_peak(dtype)
    limit = {"executed_gflop_per_epoch": flops / 1e9,
             "gemm_peak_measured_gflops": [peak_before, peak_after],
             "gemm_peak_1thread_gflops": gemm_peak(dtype, threads=1),
             "products_only_s": products_seconds(name), "goal_fraction": PEAK_FRACTION_GOAL}
    limit["products_only_gflops"] = flops / limit["products_only_s"] / 1e9
    limit["gemm_peak_gflops"] = max(peak_before, peak_after, limit["products_only_gflops"])
    for engine in ("numba", "numpy", "sklearn"):
        if engine in row:
            row[engine]["gflops"] = flops / row[engine]["median_s"] / 1e9
            row[engine]["fraction_of_peak"] = row[engine]["gflops"] / limit["gemm_peak_gflops"]
    return limit


def _print_machine_limit(name, row):
    limit = row["machine_limit"]
    peak = limit["gemm_peak_gflops"]
    fast = row["numba"]
    met = fast["fraction_of_peak"] >= limit["goal_fraction"]
    print(f"{name:9} executed {limit['executed_gflop_per_epoch']:.0f} GFLOP/epoch: numba "
          f"{fast['gflops']:.0f} GFLOP/s = {100 * fast['fraction_of_peak']:.0f}% of the gemm "
          f"peak measured now ({peak:.0f} GFLOP/s on all threads, "
          f"{limit['gemm_peak_1thread_gflops']:.0f} on one; the best of a 2048^3 product "
          f"before and after the engines and the epoch's products); goal >= "
          f"{100 * limit['goal_fraction']:.0f}%: {'met' if met else 'NOT met'}")
    print(f"{'':9} the epoch's products alone through this BLAS: "
          f"{_fmt(limit['products_only_s'])} = {limit['products_only_gflops']:.0f} GFLOP/s "
          f"({100 * limit['products_only_gflops'] / peak:.0f}% of the peak); NumPy backend "
          f"{row['numpy']['gflops']:.0f} GFLOP/s")


def _bench_infer(name, args):
    from fastnn._workloads import INFER_WORKLOADS, compiled_predictor, infer_rows
    from fastnn._workloads import make_infer_model

    spec = INFER_WORKLOADS[name]
    x = infer_rows(name)
    fast, slow = make_infer_model(name, "numba"), make_infer_model(name, "numpy")
    fns = {"numba": fast.predict_proba, "numpy": slow.predict_proba}
    predictor = compiled_predictor(fast) if name == "W-infer1" else None
    if predictor is not None:
        fns["numba-compiled"] = predictor
    if not args.no_peers and name == "W-infer1":
        fns["sklearn"] = _fitted_estimator("digits (128,64)", "sklearn").predict_proba
    for fn in fns.values():
        fn(x)  # compile / warm up
    seconds = 0.02 if args.quick else 0.1
    if spec.metric == "throughput":
        seconds = 0.0  # one call per repeat is already ~50 ms
    timings = _time_calls(fns, x, args.repeats, seconds)
    row = {"kind": "infer", "metric": spec.metric, "rows": spec.rows, "dtype": spec.dtype,
           "unit": "s/call"}
    row.update(_row(timings))
    if spec.metric == "throughput":
        row["goal_speedup"] = TRAIN_GOALS.get(name)
        for key in timings:
            row[key]["rows_per_s"] = spec.rows / row[key]["median_s"]
    else:
        row["goal_compiled_s"] = INFER1_GOAL_S
        row["compiled_predictor"] = predictor is not None
    return row


def _bench_compile(args):
    import shutil
    import tempfile

    from fastnn._workloads import run_compile

    cache = tempfile.mkdtemp(prefix="fastnn-bench-cache-")
    times = {"cold": [], "warm": [], "cold_process": [], "warm_process": []}
    try:
        for _ in range(1 if args.quick else args.peer_repeats):  # ~5 s each
            shutil.rmtree(cache, ignore_errors=True)
            stmt, wall = run_compile(cache)  # an empty cache: compiles, and fills it
            times["cold"].append(stmt)
            times["cold_process"].append(wall)
        for _ in range(1 if args.quick else args.repeats):  # the cache the last cold run filled
            stmt, wall = run_compile(cache)
            times["warm"].append(stmt)
            times["warm_process"].append(wall)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    row = {"kind": "compile", "unit": "s", "dtype": "float64",
           "goal_s": dict(COMPILE_GOALS_S)}
    for key, t in times.items():
        row[key] = _summary(t)
    return row


def _bench_subprocess_peers(names, args, results):
    """Each installed peer in its own process, beside a NumPy baseline in that process."""
    import subprocess

    from fastnn._peers import available

    peers = [p for p in args.peers.split(",") if p]
    runnable = [n for n in names if n not in ("W-compile",)]
    for peer in peers:
        if not available(peer):
            results["peers"][peer] = {"status": "not installed"}
            print(f"{peer}: not installed, skipped")
            continue
        cmd = [sys.executable, "-m", "fastnn._peers", peer, "--workloads", ",".join(runnable),
               "--repeats", str(args.peer_repeats)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            results["peers"][peer] = {"status": "failed", "stderr": proc.stderr[-2000:]}
            print(f"{peer}: failed in its process:\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        out = json.loads(proc.stdout)
        results["peers"][peer] = {"status": "ran", "version": out.get("version")}
        for name, pair in out["results"].items():
            s = dict(pair["peer"])
            s["numpy_same_process_median_s"] = pair["numpy"]["median_s"]
            s["speedup_vs_numpy"] = pair["numpy"]["median_s"] / s["median_s"]
            results["workloads"][name][peer] = s
            rows = results["workloads"][name].get("rows") \
                if results["workloads"][name].get("metric") == "throughput" else None
            _print_rows(name, {peer: s}, rows_per_call=rows)


def _bench_estimators(args):
    from fastnn._workloads import ESTIMATOR_CASES, estimator_data, infer_rows, make_estimator

    out = {}
    for case in ESTIMATOR_CASES:
        X, y = estimator_data(case)
        _quiet_fit(make_estimator(case, "fastnn"), X, y)  # compile outside the timing
        # One sample of a ~15 ms iris fit is mostly the host's noise on a shared machine:
        # a sample of the faster library is the mean of as many back-to-back fits as fill
        # ~0.1 s (as asv's `number`), a scikit-learn fit (~0.5 s) is one.
        number = {"fastnn": max(1, min(20, round(
            0.1 / _quiet_fit(make_estimator(case, "fastnn"), X, y)))), "sklearn": 1}
        times = {"fastnn": [], "sklearn": []}
        for _ in range(args.peer_repeats):
            for lib in times:
                times[lib].append(statistics.fmean(
                    _quiet_fit(make_estimator(case, lib), X, y) for _ in range(number[lib])))
        out[case] = {"metric": f"fit seconds (fastnn: mean of {number['fastnn']} fits a sample)",
                     **{k: _summary(v) for k, v in times.items()}}
    x = infer_rows("W-infer1")
    fns = {lib: _fitted_estimator("digits (128,64)", lib).predict_proba
           for lib in ("fastnn", "sklearn")}
    for fn in fns.values():
        fn(x)
    times = _time_calls(fns, x, args.repeats, 0.02 if args.quick else 0.1)
    out["predict_proba 1 row"] = {"metric": "seconds per call (digits (128,64) estimators)",
                                  **{k: _summary(v) for k, v in times.items()}}
    for case, row in out.items():
        row["speedup"] = row["sklearn"]["median_s"] / row["fastnn"]["median_s"]
        row["goal_speedup"] = ESTIMATOR_GOALS.get(case)
        row["met"] = None if row["goal_speedup"] is None else row["speedup"] >= row["goal_speedup"]
    return out


def bench(args):
    """Every workload: NumPy backend, fastnn and the peers, side by side, in one run."""
    from fastnn._workloads import INFER_WORKLOADS, WORKLOADS

    if args.json:
        # checked first: a full run takes minutes, and its results must have a place to go
        directory = os.path.dirname(os.path.abspath(args.json))
        problem = ("is a directory" if os.path.isdir(args.json) else
                   "is in a directory that does not exist" if not os.path.isdir(directory)
                   else "cannot be written" if not os.access(
                       args.json if os.path.exists(args.json) else directory, os.W_OK)
                   else None)
        if problem:
            print(f"--json: {args.json!r} {problem}", file=sys.stderr)
            return 2
    if args.quick:
        args.repeats = min(args.repeats, 2)
        args.peer_repeats = 1
        args.peers = ""
    if args.workloads:
        names = args.workloads.split(",")
    else:
        names = [n for n in ALL_WORKLOADS if not (args.quick and n in QUICK_SKIPS)]
    for name in names:
        if name not in ALL_WORKLOADS:
            print(f"unknown workload {name!r}; choose from {', '.join(ALL_WORKLOADS)}",
                  file=sys.stderr)
            return 2
    if args.no_peers:
        args.peers = ""
    results = {"machine": None, "date": time.strftime("%Y-%m-%d"), "quick": args.quick,
               "repeats": args.repeats, "peer_repeats": args.peer_repeats, "workloads": {},
               "peers": {}, "estimators": {}}
    header = (f"{'workload':9} {'engine':14} {'median':>12} {'min':>11} {'max':>11} "
              f"{'vs numpy':>9}")
    print(header)
    print("-" * len(header))
    for name in names:
        if name in WORKLOADS:
            row = _bench_train(name, args)
            results["workloads"][name] = row
            _print_rows(name, row, goal=row["goal_speedup"])
            if "machine_limit" in row:
                _print_machine_limit(name, row)
        elif name in INFER_WORKLOADS:
            row = _bench_infer(name, args)
            results["workloads"][name] = row
            rows = row["rows"] if row["metric"] == "throughput" else None
            _print_rows(name, row, goal=row.get("goal_speedup"), rows_per_call=rows)
            if "numba-compiled" in row:
                met = row["numba-compiled"]["median_s"] <= INFER1_GOAL_S
                print(f"{'':9} compiled predictor goal <= {INFER1_GOAL_S * 1e6:g} us: "
                      f"{'met' if met else 'NOT met'}")
            elif name == "W-infer1":
                print(f"{'':9} (the model has no compile_predictor(); no compiled row)")
        else:
            row = _bench_compile(args)
            results["workloads"][name] = row
            for key in ("cold", "warm"):
                s, p = row[key], row[key + "_process"]
                goal = COMPILE_GOALS_S[key]
                print(f"{name:9} {key:14} {_fmt(s['median_s']):>12} {_fmt(s['min_s']):>11} "
                      f"{_fmt(s['max_s']):>11} {'':>9}  whole process {_fmt(p['median_s'])}; "
                      f"goal <= {goal:g} s: {'met' if s['median_s'] <= goal else 'NOT met'}")
    if args.peers:
        _bench_subprocess_peers(names, args, results)
    print("training rows: seconds per epoch; W-infer1: seconds per call (1 row); W-inferB: "
          "rows/s (median, worst, best); W-compile: import fastnn + first W-tiny fit in a "
          "fresh process. 'vs numpy' = NumPy-backend median / engine median, higher is faster")
    if not args.no_peers:
        results["estimators"] = _bench_estimators(args)
        print("\nestimators vs scikit-learn (fastnn.MLPClassifier vs "
              "sklearn.neural_network.MLPClassifier, issue 3)")
        print(f"{'case':24} {'fastnn':>11} {'sklearn':>11} {'speedup':>9} {'goal':>7}")
        for case, row in results["estimators"].items():
            goal = ("      -" if row["met"] is None else
                    f"{row['goal_speedup']:6g}x  {'met' if row['met'] else 'NOT met'}")
            print(f"{case:24} {_fmt(row['fastnn']['median_s']):>11} "
                  f"{_fmt(row['sklearn']['median_s']):>11} {row['speedup']:8.1f}x {goal}")
    # Last, so the thread pools every engine loaded (BLAS, OpenMP) are all listed.
    results["machine"] = _machine()
    print("machine: " + ", ".join(f"{k}={v}" for k, v in results["machine"].items()))
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
                         help=f"comma-separated, from {','.join(ALL_WORKLOADS)} (default: all)")
    p_bench.add_argument("--repeats", type=int, default=7)
    p_bench.add_argument("--peer-repeats", type=int, default=3,
                         help="repeats of the slower peers, estimator fits and cold compiles")
    p_bench.add_argument("--peers", default="torch,jax",
                         help="peers run each in their own process when installed "
                              "(default torch,jax; 'fastnn' runs the numba engine that way)")
    p_bench.add_argument("--no-peers", action="store_true",
                         help="skip scikit-learn, the estimators section and the other peers")
    p_bench.add_argument("--quick", action="store_true",
                         help="smoke run: repeats <= 2, no W-large/W-inferB, no torch/jax")
    p_bench.add_argument("--json", default="", help="also write the results to this file")
    p_bench.set_defaults(func=bench)
    args = parser.parse_args(argv)
    for name in ("epochs", "batch_size", "repeats", "peer_repeats", "log_every"):
        if getattr(args, name, 1) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if not 0 < getattr(args, "lr", 1) < math.inf:
        parser.error(f"--lr must be a finite number > 0, got {args.lr}")
    if not 0 <= getattr(args, "seed", 0) < 2**32:  # scikit-learn's and NumPy's seed range
        parser.error(f"--seed must be in [0, 2**32), got {args.seed}")
    return args.func(args)
