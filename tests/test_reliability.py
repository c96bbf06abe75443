"""Faults: interrupts, extreme values, threads, processes, read-only and broken caches."""

import hashlib
import os
import subprocess
import sys
import textwrap
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_array_equal
from sklearn.datasets import load_digits, load_iris

import fastnn
from fastnn import Dense, Sequential
from fastnn import _network as network_module
from fastnn._network import Trainer

ROOT = Path(__file__).resolve().parents[1]
X, Y = load_iris(return_X_y=True)
X = (X - X.mean(axis=0)) / X.std(axis=0)


def iris_model(**kw):
    return Sequential([Dense(16, "relu"), Dense(16, "relu"), Dense(3, "softmax")],
                      optimizer=fastnn.optimizers.Adam(0.01), seed=0, **kw)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_keyboard_interrupt_keeps_the_epochs_of_completed_calls(monkeypatch, backend):
    # fit runs 1 epoch in its first engine call, then the other 9 in one call (with a
    # call budget no epoch comes near: a NumPy-backend iris epoch of ~2 ms on a loaded
    # host once made the second call 6 epochs). Ctrl-C lands as that second call returns.
    monkeypatch.setattr(network_module, "CALL_SECONDS", 10.0)
    reference = iris_model(backend=backend)
    reference.fit(X, Y, epochs=1, batch_size=16)
    model = iris_model(backend=backend)
    real_epochs = Trainer.epochs
    calls = []

    def interrupted(self, x, y, sw, orders, *args):
        calls.append(len(orders))
        done = real_epochs(self, x, y, sw, orders, *args)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return done

    monkeypatch.setattr(Trainer, "epochs", interrupted)
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, Y, epochs=10, batch_size=16)
    assert calls == [1, 9]
    for a, b in zip(model.get_weights(), reference.get_weights()):
        assert_array_equal(a, b)
    assert len(model.history_["loss"]) == 1
    monkeypatch.setattr(Trainer, "epochs", real_epochs)
    model.fit(X, Y, epochs=1, batch_size=16)  # and the model trains on, optimizer intact
    reference.fit(X, Y, epochs=1, batch_size=16)
    for a, b in zip(model.get_weights(), reference.get_weights()):
        assert_array_equal(a, b)


def test_huge_inputs_do_not_overflow_softmax_or_loss():
    model = iris_model()
    history = model.fit(X * 1e150, Y, epochs=3, batch_size=16)
    assert np.isfinite(history["loss"]).all()
    proba = model.predict_proba(X * 1e150)
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert np.isfinite(model.evaluate(X * 1e150, Y)["loss"])


def test_predict_from_many_threads_matches_serial():
    Xd, yd = load_digits(return_X_y=True)
    model = Sequential([Dense(64, "relu"), Dense(10, "softmax")], seed=0)
    model.fit(Xd / 16, yd, epochs=2)
    chunks = [Xd[i : i + 97] / 16 for i in range(0, len(Xd), 97)]
    serial = [model.predict_proba(c) for c in chunks]
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(5):
            threaded = list(pool.map(model.predict_proba, chunks))
            for a, b in zip(serial, threaded):
                assert_array_equal(a, b)


_FIT_SCRIPT = textwrap.dedent("""
    import hashlib, numpy as np, fastnn
    from sklearn.datasets import load_digits
    X, y = load_digits(return_X_y=True)
    m = fastnn.Sequential([fastnn.Dense(128, "relu"), fastnn.Dense(64, "relu"),
                           fastnn.Dense(10, "softmax")], seed=0)
    m.fit(X / 16, y, epochs=2, batch_size=32)
    print(hashlib.sha256(b"".join(w.tobytes() for w in m.get_weights())).hexdigest())
""")


def _run(script, env=None, **kw):
    full = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=full, timeout=900, **kw)


@pytest.mark.slow
def test_bitwise_same_weights_across_thread_counts():
    digests = set()
    for threads in ("1", "2"):
        env = {"OPENBLAS_NUM_THREADS": threads, "NUMBA_NUM_THREADS": threads,
               "OMP_NUM_THREADS": threads}
        result = _run(_FIT_SCRIPT, env)
        assert result.returncode == 0, result.stderr
        digests.add(result.stdout.strip())
    assert len(digests) == 1


@pytest.mark.slow
def test_two_processes_filling_an_empty_cache(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    procs = [subprocess.Popen([sys.executable, "-c", _FIT_SCRIPT], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    assert outs[0][0] == outs[1][0]
    again = _run(_FIT_SCRIPT, {"NUMBA_CACHE_DIR": str(tmp_path / "cache")})  # the cache works
    assert again.returncode == 0 and again.stdout == outs[0][0], again.stderr


_WARM_SCRIPT = textwrap.dedent("""
    import hashlib, sys, numpy as np, fastnn
    X = np.random.default_rng(0).standard_normal((150, 4))  # not sklearn: it imports scipy.linalg
    y = np.arange(150) % 3
    digests = []
    for dtype in {dtypes}:
        m = fastnn.Sequential([fastnn.Dense(16, "relu"), fastnn.Dense(3, "softmax")],
                              dtype=dtype, seed=0)
        m.fit(X, y, epochs=3, batch_size=16)
        digests.append(hashlib.sha256(b"".join(w.tobytes() for w in m.get_weights())
                                      + m.predict_proba(X).tobytes()).hexdigest())
        if dtype == "float64":  # what the warm path skips: numba's registry refresh, scipy.linalg
            digests.append("registries=%d,scipy.linalg=%d" % ("numba.np.linalg" in sys.modules,
                                                             "scipy.linalg" in sys.modules))
    print(" ".join(digests))
""")


@pytest.mark.slow
def test_warm_start_loads_cached_kernels_and_still_compiles_new_ones(tmp_path):
    # A warm start rebuilds cached kernels without refreshing numba's typing and lowering
    # registries and without importing scipy.linalg (kernels/_jit.py); a kernel compiled
    # after that, in the same process, must still be right. And a fit gives the same
    # weights whether its kernel was compiled in the process or loaded from the cache
    # (float32 once differed in the last bits: kernels/_jit.py, _PrivateHelperCopies).
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    runs = {}
    for name, dtypes in (("compile f64", ["float64"]),
                         ("load f64, compile f32", ["float64", "float32"]),
                         ("load f32", ["float32"])):
        result = _run(_WARM_SCRIPT.format(dtypes=dtypes), env)
        assert result.returncode == 0, result.stderr[-3000:]
        runs[name] = result.stdout.split()
    expected = []
    data_x, data_y = np.random.default_rng(0).standard_normal((150, 4)), np.arange(150) % 3
    for dtype in ("float64", "float32"):
        m = Sequential([Dense(16, "relu"), Dense(3, "softmax")], dtype=dtype, seed=0)
        m.fit(data_x, data_y, epochs=3, batch_size=16)
        expected.append(hashlib.sha256(b"".join(w.tobytes() for w in m.get_weights())
                                       + m.predict_proba(data_x).tobytes()).hexdigest())
    f64, loaded_modules, f32 = runs["load f64, compile f32"]
    assert runs["compile f64"][0] == f64 == expected[0]
    assert loaded_modules == "registries=0,scipy.linalg=0"
    assert f32 == runs["load f32"][0] == expected[1]


_WARN_SCRIPT = textwrap.dedent("""
    import warnings
    warnings.simplefilter("always")
    with warnings.catch_warnings(record=True) as caught:
        import numpy as np, fastnn
        m = fastnn.Sequential([fastnn.Dense(4, "relu"), fastnn.Dense(3, "softmax")], seed=0)
        X = np.random.default_rng(0).standard_normal((30, 4))
        m.fit(X, np.arange(30) % 3, epochs=2)
        p = m.predict_proba(X)
    cache = [str(w.message) for w in caught if type(w.message).__name__ == "KernelCacheWarning"]
    print(len(cache), "|", cache[0] if cache else "", "|", bool(np.isfinite(p).all()))
""")


@pytest.mark.slow
def test_read_only_install_and_cache_dir(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    # Root ignores permission bits, so make the tree truly read-only with bind mounts in
    # a private mount namespace.
    script = tmp_path / "check.py"
    script.write_text(_WARN_SCRIPT)
    cmd = (f"mount --bind {ROOT} {ROOT} && mount -o remount,ro,bind {ROOT} && "
           f"mount --bind {cache} {cache} && mount -o remount,ro,bind {cache} && "
           f"NUMBA_CACHE_DIR={cache} XDG_CACHE_HOME={cache} HOME={cache} "
           f"{sys.executable} {script}")
    result = subprocess.run(["unshare", "-m", "sh", "-c", cmd], capture_output=True, text=True,
                            timeout=900, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    count, message, finite = (part.strip() for part in result.stdout.split("|"))
    assert count == "1", result.stdout
    assert "without an on-disk cache" in message
    assert finite == "True"


@pytest.mark.slow
def test_broken_cache_files_are_recompiled_not_fatal(tmp_path):
    cache = tmp_path / "cache"
    env = {"NUMBA_CACHE_DIR": str(cache)}
    first = _run(_WARN_SCRIPT, env)
    assert first.returncode == 0 and first.stdout.startswith("0 |"), first.stderr
    data_files = list(cache.rglob("*.nbc"))
    assert data_files
    for path in data_files:  # truncate every compiled entry
        path.write_bytes(path.read_bytes()[:40])
    second = _run(_WARN_SCRIPT, env)
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.startswith("1 |") and "unreadable kernel cache entry" in second.stdout
    assert second.stdout.strip().endswith("True")


def _digest(model):
    return hashlib.sha256(b"".join(w.tobytes() for w in model.get_weights())).hexdigest()


def _cast(values, dtype):
    with np.errstate(all="ignore"):  # nan/inf/1e300 into int, bool or float16 on purpose
        return values.astype(dtype)


_ARRAYS = st.one_of(
    st.tuples(st.integers(0, 6), st.integers(0, 5)).flatmap(
        lambda shape: st.sampled_from([np.float64, np.float32, np.float16, np.int64, np.bool_])
        .flatmap(lambda dt: st.builds(
            lambda values: _cast(np.array(values, dtype=np.float64).reshape(shape), dt),
            st.lists(st.sampled_from([0.0, 1.0, -2.5, 1e300, np.nan, np.inf, 3.0]),
                     min_size=shape[0] * shape[1], max_size=shape[0] * shape[1])))),
    st.just(np.array(["a", "b"])), st.just(np.zeros(3)), st.just(np.zeros((2, 2, 2))),
    st.just([[1, "x"]]), st.just(None))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(X=_ARRAYS, y=st.one_of(st.lists(st.integers(0, 2), max_size=6),
                              st.lists(st.sampled_from(["a", "b"]), max_size=6),
                              st.just(np.full(4, np.nan))))
def test_random_inputs_work_or_raise_clearly(X, y):
    model = Sequential([Dense(3, "tanh"), Dense(3, "softmax")], seed=0)
    try:
        with warnings.catch_warnings():
            # Diverging (a stop with a warning, weights kept finite) is an allowed outcome.
            warnings.simplefilter("ignore", fastnn.DivergenceWarning)
            model.fit(X, y, epochs=2, batch_size=2)
    except (ValueError, TypeError) as exc:
        assert str(exc)
        return
    assert all(np.isfinite(w).all() for w in model.get_weights())
    try:
        proba = model.predict_proba(X)
    except ValueError as exc:
        assert "overflowed" in str(exc)
        return
    assert np.isfinite(proba).all()
