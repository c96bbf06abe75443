"""The training epoch on two threads (kernels/split.py, fastnn/_split.py): the same
numbers as the one-thread engine, the dispatch rule, the engine choice, and failures in
either thread.

With the JIT off (the coverage job) both engines run NumPy's products, which BLAS sums
in its own order per call: there the two agree within TOL instead of bit for bit.
"""

import os
import pickle
import threading

import numba
import numpy as np
import pytest
import scipy.sparse as sp
from conftest import DTYPES, TOL
from numpy.testing import assert_allclose, assert_array_equal

from fastnn import _split
from fastnn import kernels as K
from fastnn._network import Network, Trainer, blas_threads, make_hyper
from fastnn.kernels import _jit, split
from fastnn.kernels.dense import SMALL_GEMM_RANGE, TILE_MAX, TRANSPOSE_MAX
from test_kernels import HIDDEN, OPTS, OUTPUT, _data, _net

TWO_CORES = len(os.sched_getaffinity(0)) >= 2 and _jit.blas_thread_count() >= 2
needs_two = pytest.mark.skipif(not TWO_CORES, reason="the split needs two cores and a BLAS "
                                                     "thread budget of two")


@pytest.fixture(autouse=True)
def fresh_choice(monkeypatch):
    # every test starts with no timings and the split taken at any size
    monkeypatch.setattr(_split, "_RECORD", {})
    monkeypatch.setattr(_split, "SPLIT_MIN", 0)


def _fit(net, x, y, sw, orders, batch_size, hyper, opt, force, monkeypatch, calls=1):
    """Train a copy of ``net`` on ``force``'s engine ("split", "one", or None: the
    choice), the epochs of ``orders`` in ``calls`` engine calls."""
    monkeypatch.setattr(_split, "FORCE", force)
    copy = Network(net.sizes, net.acts, net.dtype, "numba")
    copy.theta[:] = net.theta
    trainer = Trainer(copy, batch_size, opt)
    orders = np.array(orders, np.int64)
    totals = np.empty(len(orders))
    per_call = len(orders) // calls
    t = 0
    for start in range(0, len(orders), per_call):
        part = orders[start : start + per_call]
        done = trainer.epochs(x, y, sw, part, hyper.copy(), t, totals[start : start + per_call])
        assert done == len(part)
        t += len(part) * -(-x.shape[0] // batch_size)
    return totals, copy.theta, trainer.m, trainer.v, trainer


def _assert_same(got, want, dtype):
    for name, a, b in zip(["loss", "theta", "m", "v"], got, want):
        if numba.config.DISABLE_JIT:
            assert_allclose(a, b, err_msg=name, **TOL[dtype])
        else:
            assert_array_equal(a, b, err_msg=name)


def _runs_split(monkeypatch):
    calls = []
    real = _split.SplitRunner.epochs

    def counted(self, *args):
        calls.append(1)
        return real(self, *args)

    monkeypatch.setattr(_split.SplitRunner, "epochs", counted)
    return calls


@needs_two
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hidden", sorted(HIDDEN))
@pytest.mark.parametrize("output", sorted(OUTPUT))
def test_split_gives_the_one_thread_numbers(rng, dtype, hidden, output, monkeypatch):
    # two hidden layers (the second's delta crosses between the threads), n = 37 with
    # batch 8 (a short last batch), sample weights, L2 alpha > 0, two epochs
    code, n_out = OUTPUT[output]
    net = _net(rng, [5, 32, 64, n_out], [HIDDEN[hidden], HIDDEN[hidden], code], dtype)
    x, y, sw = _data(rng, 37, net)
    hyper = make_hyper(dtype, lr=0.01, alpha=0.05, gscale=1.0 / n_out)
    orders = [rng.permutation(37), rng.permutation(37)]
    calls = _runs_split(monkeypatch)
    got = _fit(net, x, y, sw, orders, 8, hyper, K.OPT_ADAM, "split", monkeypatch)
    assert calls, "the split did not run"
    want = _fit(net, x, y, sw, orders, 8, hyper, K.OPT_ADAM, "one", monkeypatch)
    _assert_same(got[:4], want[:4], dtype)
    assert not np.array_equal(got[1], net.theta)  # training moved the weights


@needs_two
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opt", sorted(OPTS))
@pytest.mark.parametrize("blocks", [True, False])
def test_split_takes_the_one_thread_route_past_the_transpose_limit(rng, dtype, opt, blocks,
                                                                   monkeypatch):
    # 64 x 96 weights are past TRANSPOSE_MAX: delta @ w.T goes to BLAS in both engines, in
    # column blocks where the core is SkylakeX. With the JIT off both routes run on any
    # CPU (the limit is read at each call); compiled, the CPU's own route.
    from fastnn.kernels import dense

    for module in (dense, split):
        monkeypatch.setattr(module, "SMALL_GEMM_MAX", SMALL_GEMM_RANGE if blocks else 0)
    monkeypatch.setattr(split, "SPINS", 1)  # and the waits yield at once
    net = _net(rng, [7, 64, 96, 3], [K.RELU, K.TANH, K.SOFTMAX], dtype)
    assert 64 * 96 > TRANSPOSE_MAX
    x, y, sw = _data(rng, 21, net)
    hyper = make_hyper(dtype, lr=0.01, momentum=0.9, alpha=1e-3)
    orders = [rng.permutation(21), np.arange(21)]
    got = _fit(net, x, y, sw, orders, 16, hyper, OPTS[opt], "split", monkeypatch)
    want = _fit(net, x, y, sw, orders, 16, hyper, OPTS[opt], "one", monkeypatch)
    _assert_same(got[:4], want[:4], dtype)


@needs_two
def test_split_with_one_hidden_layer_and_no_l2(rng, monkeypatch):
    net = _net(rng, [4, 32, 3], [K.RELU, K.SOFTMAX], np.float64)
    x, y, sw = _data(rng, 19, net)
    hyper = make_hyper(np.float64, lr=0.05)
    orders = [rng.permutation(19)] * 3
    calls = _runs_split(monkeypatch)
    got = _fit(net, x, y, sw, orders, 4, hyper, K.OPT_SGD, "split", monkeypatch)
    assert calls
    want = _fit(net, x, y, sw, orders, 4, hyper, K.OPT_SGD, "one", monkeypatch)
    _assert_same(got[:4], want[:4], np.float64)


@needs_two
def test_the_choice_between_engines_changes_no_number(rng, monkeypatch):
    # six calls of one epoch each: the choice sends them to both engines
    net = _net(rng, [5, 32, 32, 3], [K.TANH, K.RELU, K.SOFTMAX], np.float64)
    x, y, sw = _data(rng, 30, net)
    hyper = make_hyper(np.float64, lr=0.01, alpha=0.1)
    orders = [rng.permutation(30) for _ in range(6)]
    calls = _runs_split(monkeypatch)
    got = _fit(net, x, y, sw, orders, 8, hyper, K.OPT_ADAM, None, monkeypatch, calls=6)
    assert 0 < len(calls) < 6  # both engines ran
    want = _fit(net, x, y, sw, orders, 8, hyper, K.OPT_ADAM, "one", monkeypatch, calls=6)
    _assert_same(got[:4], want[:4], np.float64)


@needs_two
def test_split_undoes_the_epoch_that_diverges(rng, monkeypatch):
    # as the one-thread engine: rows 20-39 hold inf, epoch 1 is undone, epoch 2 skipped
    net = _net(rng, [5, 32, 3], [K.RELU, K.SOFTMAX], np.float64)
    x, y, sw = _data(rng, 40, net)
    x[20:] = np.inf
    hyper = make_hyper(np.float64, lr=0.1, momentum=0.9)
    orders = np.array([np.arange(20), np.arange(20, 40), np.arange(20)], np.int64)
    results = []
    for force in ("split", "one"):
        monkeypatch.setattr(_split, "FORCE", force)
        copy = Network(net.sizes, net.acts, net.dtype, "numba")
        copy.theta[:] = net.theta
        trainer = Trainer(copy, 10, K.OPT_NESTEROV)
        totals = np.full(3, -1.0)
        with np.errstate(all="ignore"):
            done = trainer.epochs(x, y, sw, orders, hyper.copy(), 0, totals)
        assert done == 1
        assert np.isfinite(totals[0]) and totals[2] == -1.0
        results.append((copy.theta.copy(), trainer.m.copy(), trainer.v.copy()))
    for name, a, b in zip(["theta", "m", "v"], *results):
        assert_array_equal(a, b, err_msg=name)  # the first epoch's, restored in both


@needs_two
@pytest.mark.parametrize("failing", [0, 1])
def test_a_failure_in_either_thread_stops_both(rng, failing, monkeypatch):
    # The thread that fails raises its own error from the fit; the other, waiting at a
    # barrier, sees the abort flag and stops (no hang), and its RuntimeError is not the
    # one reported.
    real = K.run_epochs_split

    def failing_thread(me, *args):
        if me == failing:
            raise ValueError(f"thread {me} failed")
        return real(me, *args)

    monkeypatch.setattr(K, "run_epochs_split", failing_thread, raising=False)
    net = _net(rng, [5, 32, 3], [K.RELU, K.SOFTMAX], np.float64)
    x, y, sw = _data(rng, 20, net)
    monkeypatch.setattr(_split, "FORCE", "split")
    trainer = Trainer(net, 8, K.OPT_ADAM)
    with pytest.raises(ValueError, match=f"thread {failing} failed"):
        trainer.epochs(x, y, sw, np.array([np.arange(20)]), make_hyper(np.float64, lr=0.1), 0,
                       np.empty(1))
    assert not any(t.name == "fastnn-split" for t in threading.enumerate())


@needs_two
def test_the_other_thread_stopping_raises_at_the_barrier(rng, monkeypatch):
    # thread 1 never starts its kernel and raises the abort flag: thread 0's kernel, at
    # its first barrier, raises rather than wait forever
    monkeypatch.setattr(split, "SPINS", 1)
    net = _net(rng, [5, 32, 3], [K.RELU, K.SOFTMAX], np.float64)
    x, y, sw = _data(rng, 20, net)
    runner = _split.SplitRunner(net, 8)
    runner.flags[split.ABORT] = 1
    plan = runner.plan
    with pytest.raises(RuntimeError, match="the other training thread stopped"):
        K.run_epochs_split(
            0, x, y, sw, np.array([np.arange(20)]), 8, runner.theta[0], runner.grad[0],
            runner.m[0], runner.v[0], plan.sizes, plan.mine[0], plan.col0[0], plan.offsets[0],
            plan.offsets[1], net.acts, make_hyper(np.float64, lr=0.1), 0, K.OPT_ADAM,
            runner.work[0], plan.pos, np.empty(1), runner.theta[1], runner.work[1],
            runner.flags, runner.shared)


@needs_two
def test_a_trainer_pickles_without_its_threads_buffers(rng, monkeypatch):
    net = _net(rng, [5, 32, 3], [K.RELU, K.SOFTMAX], np.float64)
    x, y, sw = _data(rng, 20, net)
    monkeypatch.setattr(_split, "FORCE", "split")
    trainer = Trainer(net, 8, K.OPT_ADAM)
    hyper = make_hyper(np.float64, lr=0.1)
    orders = np.array([np.arange(20)])
    trainer.epochs(x, y, sw, orders, hyper, 0, np.empty(1))
    assert trainer._split is not None
    again = pickle.loads(pickle.dumps(trainer))
    assert "_split" not in again.__dict__
    totals = np.empty(1)
    assert again.epochs(x, y, sw, orders, hyper, 3, totals) == 1 and np.isfinite(totals[0])


# --- the dispatch rule and the choice --------------------------------------------------
def _in_order(sizes, batch_size=32, backend="numba", x=None, dtype=np.float64):
    net = Network(sizes, [K.RELU] * (len(sizes) - 2) + [K.SOFTMAX], dtype, backend)
    x = np.zeros((2, sizes[0]), dtype) if x is None else x
    return _split.in_split_order(net, x, batch_size)


def test_the_split_takes_the_fits_whose_numbers_are_the_one_threads(monkeypatch):
    monkeypatch.setattr(_split, "SPLIT_MIN", 400000)
    assert _in_order([64, 128, 64, 10])  # W-small: 545k multiply-adds a batch
    assert not _in_order([4, 32, 32, 3], 16)  # too little work a batch
    monkeypatch.setattr(_split, "SPLIT_MIN", 0)
    assert _in_order([4, 32, 32, 3], 16)
    assert not _in_order([64, 48, 10])  # widths not multiples of 32
    assert not _in_order([64, 128, 33, 10])
    assert not _in_order([64, 10])  # no hidden layer
    assert not _in_order([64, 128, 10], backend="numpy")
    assert not _in_order([64, 128, 10], x=sp.csr_matrix(np.zeros((2, 64))))
    assert 64 * 64 * 128 > TILE_MAX
    assert not _in_order([128, 128, 10], batch_size=64)  # a product past the tiles
    assert _in_order([128, 128, 10], batch_size=2)  # ... unless the rows are few
    assert 512 * 10 > TRANSPOSE_MAX
    assert not _in_order([8, 512, 10], batch_size=4)  # the output's delta @ w.T in BLAS


@needs_two
def test_a_budget_of_one_thread_keeps_the_fit_on_one():
    # n_threads=1, or a joblib worker's budget; the split's order holds all the same
    assert _split.two_threads()
    with blas_threads(1):
        assert not _split.two_threads()
        assert _in_order([64, 128, 64, 10])


def test_the_split_needs_two_cores(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert not _split.two_threads()


@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_an_estimators_numbers_do_not_depend_on_its_threads(alpha, monkeypatch):
    # n_threads=1 keeps the fit on one thread; None lets calls go to both engines. The L2
    # term sums in the split's order either way, so loss_curve_ is the same too.
    from sklearn.datasets import load_digits

    from fastnn import MLPClassifier

    X, y = load_digits(return_X_y=True)
    X, y = X[:300] / 16, y[:300]
    calls = _runs_split(monkeypatch)
    fits = []
    for n_threads in (1, None):
        clf = MLPClassifier(hidden_layer_sizes=(64, 32), batch_size=32, max_iter=4,
                            alpha=alpha, tol=0.0, random_state=0, n_threads=n_threads)
        with pytest.warns(Warning, match="Maximum iterations"):
            fits.append(clf.fit(X, y))
        if n_threads == 1:
            assert not calls
    assert calls or not TWO_CORES
    one, many = fits
    for a, b in zip(one.coefs_ + one.intercepts_ + [np.array(one.loss_curve_)],
                    many.coefs_ + many.intercepts_ + [np.array(many.loss_curve_)]):
        if numba.config.DISABLE_JIT:
            assert_allclose(a, b, **TOL[np.float64])
        else:
            assert_array_equal(a, b)


def test_the_choice_tries_both_then_takes_the_faster_and_times_the_other_again(monkeypatch):
    key = ("net",)
    monkeypatch.setattr(_split, "FORCE", None)
    assert _split.choose(key) == "split"
    _split.record(key, "split", 2.0)
    assert _split.choose(key) == "one"
    _split.record(key, "one", 1.0)
    picks = [_split.choose(key) for _ in range(_split.PROBE_EVERY)]
    # calls 3-10: the faster, except the PROBE_EVERY-th call overall
    assert picks == ["one"] * 5 + ["split"] + ["one"] * 2
    for seconds in (0.9, 0.8, 0.7, 0.6):  # the split's last KEEP times
        _split.record(key, "split", seconds)
    assert _split._RECORD[key]["split"] == [0.9, 0.8, 0.7, 0.6]
    assert _split.choose(key) == "split"
    for seconds in (5.0, 5.0, 5.0):  # one slow call is not enough to switch...
        _split.record(key, "split", seconds)
    assert _split.choose(key) == "split"
    _split.record(key, "split", 5.0)  # ... the best of the last KEEP is
    assert _split.choose(key) == "one"
    monkeypatch.setattr(_split, "FORCE", "split")
    assert _split.choose(key) == "split"


def test_workload_key_names_the_shape_dtype_and_batch():
    net = Network([4, 32, 3], [K.RELU, K.SOFTMAX], np.float32, "numba")
    assert _split.workload_key(net, 16) == ((4, 32, 3), "float32", 16)
