"""``fastnn.warmup()``: compile (or load from the cache) the kernels fits and predicts use."""

import time

import numpy as np

__all__ = ["warmup"]


def _csr(x):
    import scipy.sparse

    return scipy.sparse.csr_matrix(x)


def warmup(dtypes=("float64", "float32"), *, sparse=False):
    """Compile ahead the kernels behind ``fit``, ``predict``, ``evaluate`` and the
    compiled predictor, for each dtype, and the two the estimators add (their predict
    output check and their shuffles), so the first real call does not pay for them. On a
    machine with two cores, also the two-thread training epoch.

    With a filled cache this only loads the compiled code (well under a second); in a
    fresh environment it compiles, which takes several seconds per dtype.

    Parameters
    ----------
    dtypes : sequence of {"float64", "float32"} (or np.float64, np.float32), or one of them
    sparse : bool, default=False
        Also the CSR twins that sparse input runs on (a cold first sparse fit and
        predict took 5.8 and 1.4 s on an AMD EPYC).

    Returns
    -------
    dict
        Seconds spent per dtype.
    """
    from fastnn import _split, kernels
    from fastnn._network import Network, make_hyper
    from fastnn._validation import check_dtype
    from fastnn.model import Dense, Sequential

    if isinstance(dtypes, (str, type, np.dtype)):  # warmup("float32"), warmup(np.float32)
        dtypes = (dtypes,)
    dtypes = [np.dtype(check_dtype(d)).name for d in dtypes]
    rng = np.random.default_rng(0)
    X = rng.standard_normal((8, 3))
    labels = np.arange(8) % 2
    spent = {}
    for dtype in dtypes:
        start = time.perf_counter()
        # one model per output kind: each loss kernel and every engine entry point
        for layers, loss, y in [
            ([Dense(4, "relu"), Dense(2, "softmax")], "categorical_crossentropy", labels),
            ([Dense(4, "tanh"), Dense(1, "sigmoid")], "binary_crossentropy", labels),
            ([Dense(4, "sigmoid"), Dense(1, "linear")], "mse", X[:, 0]),
        ]:
            model = Sequential(layers, loss=loss, dtype=dtype, seed=0)
            for rows in ([X, _csr(X)] if sparse else [X]):
                model.fit(rows, y, epochs=1, batch_size=4, validation_data=(rows, y))
                model.loss_and_gradients(rows, y)
            model.compile_predictor()(np.ascontiguousarray(X, dtype=dtype))
        if _split.two_threads():  # the two-thread epoch, which larger fits may take
            net = Network([3, 32, 2], [kernels.RELU, kernels.SOFTMAX], dtype, "numba")
            net.init_glorot(rng, [6.0, 6.0])
            zeros = np.zeros(net.theta.shape[0], dtype)
            _split.SplitRunner(net, 4).epochs(
                X.astype(dtype), np.eye(2, dtype=dtype)[labels], np.ones(8, dtype),
                np.arange(8)[None, :], make_hyper(dtype, lr=1e-3), 0, kernels.OPT_ADAM, zeros,
                zeros.copy(), np.empty(1))
        kernels.all_finite(np.zeros((1, 2), dtype=dtype))
        if not spent:  # the estimators' shuffle kernel has one signature for every dtype
            state = np.random.RandomState(0).get_state(legacy=False)["state"]
            kernels.shuffled_orders(state["key"], state["pos"], np.arange(4),
                                    np.empty((1, 4), dtype=np.int64))
        spent[dtype] = time.perf_counter() - start
    return spent
