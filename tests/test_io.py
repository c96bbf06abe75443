"""Model files: round trips, and damaged or hostile files that must fail cleanly."""

import io
import json
import os
import pickle
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_array_equal
from sklearn.datasets import load_iris

import fastnn
from conftest import mutated
from fastnn import Dense, ModelFileError, Sequential
from fastnn.io import FORMAT_VERSION, write_model

X, Y = load_iris(return_X_y=True)
NAMES = load_iris().target_names[Y]


def fitted_model(**kw):
    model = Sequential([Dense(8, "relu"), Dense(3, "softmax")], seed=0, **kw)
    model.fit(X, NAMES, epochs=3, batch_size=16)
    return model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "iris.npz"
    fitted_model().save(path)
    return path


@pytest.mark.parametrize("kw", [{}, {"backend": "numpy"}, {"dtype": "float32"},
                                {"optimizer": fastnn.optimizers.SGD(0.1, momentum=0.9)}])
def test_round_trip_same_predictions_and_training(tmp_path, kw):
    model = fitted_model(**kw)
    model.save(tmp_path / "m.npz")
    again = fastnn.load(tmp_path / "m.npz")
    assert_array_equal(again.predict_proba(X), model.predict_proba(X))
    assert_array_equal(again.predict(X), model.predict(X))
    model.fit(X, NAMES, epochs=2, batch_size=16)  # optimizer state and rng came along
    again.fit(X, NAMES, epochs=2, batch_size=16)
    for a, b in zip(model.get_weights(), again.get_weights()):
        assert_array_equal(a, b)


def test_round_trip_regression_and_binary(tmp_path):
    reg = Sequential([Dense(4, "tanh"), Dense(2, "linear")], loss="mse", seed=1)
    reg.fit(X, np.c_[X[:, 0], X[:, 1]], epochs=2)
    reg.save(tmp_path / "reg.npz")
    assert_array_equal(fastnn.load(tmp_path / "reg.npz").predict(X), reg.predict(X))
    binary = Sequential([Dense(4, "relu"), Dense(1, "sigmoid")], loss="binary_crossentropy")
    binary.fit(X, Y == 1, epochs=2)
    binary.save(tmp_path / "bin.npz")
    assert_array_equal(fastnn.load(tmp_path / "bin.npz").predict(X), binary.predict(X))


def test_save_before_fit():
    with pytest.raises(ValueError, match="not fitted yet; call fit before save"):
        Sequential([Dense(3, "softmax")]).save("never.npz")


def test_failed_save_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    fitted_model().save(path)
    before = path.read_bytes()

    def broken_savez(fh, **arrays):
        fh.write(b"PK\x03\x04 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        fitted_model().save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.npz"]  # no temporary file left behind


def test_save_through_a_symlink_replaces_its_target_and_takes_bytes_paths(tmp_path, saved):
    # latest.npz -> run1.npz: the rename used to swap the link itself for a file,
    # leaving run1.npz with the old model; bytes paths failed on the temporary name
    (tmp_path / "runs").mkdir()
    target = tmp_path / "runs" / "run1.npz"
    target.write_bytes(saved.read_bytes())
    link = tmp_path / "latest.npz"
    link.symlink_to(target)
    model = fitted_model(optimizer=fastnn.optimizers.SGD(0.5))
    model.save(link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert_array_equal(fastnn.load(target).predict_proba(X), model.predict_proba(X))
    assert sorted(os.listdir(tmp_path / "runs")) == ["run1.npz"]  # no temporary file left
    model.save(os.fsencode(tmp_path / "bytes.npz"))
    assert_array_equal(fastnn.load(tmp_path / "bytes.npz").predict_proba(X),
                       model.predict_proba(X))


@pytest.mark.parametrize("labels", [np.array([b"setosa", b"versicolor", b"virginica"]),
                                    np.array([1 + 1j, 2 - 1j, 3j]),
                                    np.datetime64("2020-01-01") + np.arange(3).astype("m8[D]"),
                                    np.arange(3).astype("m8[s]")])
def test_labels_fit_accepts_are_saved_and_loaded(tmp_path, labels):
    # bytes, complex, datetime and duration labels fit; save refused them before, so a
    # fitted model could not be kept
    model = Sequential([Dense(8, "relu"), Dense(3, "softmax")], seed=0)
    model.fit(X, labels[Y], epochs=2)
    model.save(tmp_path / "m.npz")
    back = fastnn.load(tmp_path / "m.npz")
    assert back.classes_.dtype == labels.dtype
    assert_array_equal(back.predict(X), model.predict(X))


def test_compressed_members_are_refused_before_inflating(tmp_path, saved):
    # fastnn writes members stored: a deflated one could declare gigabytes from a small
    # file, and was inflated before anything checked what it held
    bomb = tmp_path / "bomb.npz"
    with zipfile.ZipFile(saved) as zin, zipfile.ZipFile(bomb, "w",
                                                        zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info))
    with pytest.raises(ModelFileError, match="member '.*' is compressed; fastnn model files "
                                             "are written uncompressed"):
        fastnn.load(bomb)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model file at"):
        fastnn.load(tmp_path / "nope.npz")


def test_truncated_file(tmp_path, saved):
    data = saved.read_bytes()
    for cut in (0, 10, len(data) // 2, len(data) - 1):
        bad = tmp_path / f"cut{cut}.npz"
        bad.write_bytes(data[:cut])
        with pytest.raises(ModelFileError):
            fastnn.load(bad)


def test_not_a_zip(tmp_path):
    path = tmp_path / "text.npz"
    path.write_text("hello")
    with pytest.raises(ModelFileError, match="not a valid npz"):
        fastnn.load(path)


def _rewrite(src, dst, header=None, extra=None, drop=()):
    """Copy a model file, replacing its header and adding raw members."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            name = info.filename[:-4]
            if name in drop:
                continue
            if name == "__header__" and header is not None:
                buf = io.BytesIO()
                np.lib.format.write_array(
                    buf, np.frombuffer(json.dumps(header).encode(), dtype=np.uint8))
                zout.writestr(info.filename, buf.getvalue())
            else:
                zout.writestr(info.filename, zin.read(info))
        for member, data in (extra or {}).items():
            zout.writestr(member, data)


def _header(path):
    with zipfile.ZipFile(path) as zf, zf.open("__header__.npy") as fh:
        return json.loads(np.lib.format.read_array(fh).tobytes())


def test_wrong_version(tmp_path, saved):
    header = _header(saved)
    header["format_version"] = FORMAT_VERSION + 1
    _rewrite(saved, tmp_path / "v.npz", header=header)
    with pytest.raises(ModelFileError, match=f"format version {FORMAT_VERSION + 1}"):
        fastnn.load(tmp_path / "v.npz")


def test_foreign_npz(tmp_path):
    np.savez(tmp_path / "plain.npz", a=np.arange(3))
    with pytest.raises(ModelFileError, match="not a fastnn model file"):
        fastnn.load(tmp_path / "plain.npz")


class _Boom:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_pickled_object_array_is_refused_without_running_it(tmp_path, saved, monkeypatch):
    monkeypatch.chdir(tmp_path)
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.array([_Boom()], dtype=object), allow_pickle=True)
    _rewrite(saved, tmp_path / "evil.npz", extra={"classes.npy": buf.getvalue()},
             drop=("classes",))
    with pytest.raises(ModelFileError, match="dtype object"):
        fastnn.load(tmp_path / "evil.npz")
    assert not (tmp_path / "PWNED").exists()
    raw = tmp_path / "raw.npz"  # a bare pickle renamed to .npz
    raw.write_bytes(pickle.dumps(_Boom()))
    with pytest.raises(ModelFileError):
        fastnn.load(raw)
    assert not (tmp_path / "PWNED").exists()


def test_header_claiming_a_huge_shape(tmp_path, saved):
    buf = io.BytesIO()
    np.lib.format.write_array_header_2_0(
        buf, {"descr": "<f8", "fortran_order": False, "shape": (10**12, 10**6)})
    _rewrite(saved, tmp_path / "huge.npz", extra={"theta2.npy": buf.getvalue() + b"\0" * 64})
    with pytest.raises(ModelFileError, match="declares shape"):
        fastnn.load(tmp_path / "huge.npz")


def test_weights_that_do_not_fit_the_architecture(tmp_path, saved):
    header = _header(saved)
    header["layers"][0][0] = 9
    _rewrite(saved, tmp_path / "arch.npz", header=header)
    with pytest.raises(ModelFileError, match="the architecture needs"):
        fastnn.load(tmp_path / "arch.npz")
    header = _header(saved)
    header["kind"] = "Transformer"
    _rewrite(saved, tmp_path / "kind.npz", header=header)
    with pytest.raises(ModelFileError, match="unknown model kind 'Transformer'"):
        fastnn.load(tmp_path / "kind.npz")
    header = _header(saved)
    header["layers"][0][1] = "swish"
    _rewrite(saved, tmp_path / "act.npz", header=header)
    with pytest.raises(ModelFileError, match="unknown activation 'swish'"):
        fastnn.load(tmp_path / "act.npz")


@pytest.mark.parametrize("field, value, message", [
    ("n_features", 30_000_000, r"weights have shape \(67,\) .* needs \(240000035,\)"),
    ("n_features", 10**13, "the architecture needs"),
    ("layers", [[10**12, "relu"], [3, "softmax"]], "the architecture needs"),
    ("batch_size", 10**15, r"batch_size 1000000000000000 needs a .* work buffer, over the "
                           r"model file limit"),
    ("t", 10**30, "optimizer steps is beyond any training run"),
])
def test_header_sizes_are_checked_before_anything_is_allocated(tmp_path, saved, field, value,
                                                               message):
    # a 3 KB file must not make the loader allocate what it does not hold (the first case
    # allocated and zeroed 1.8 GiB before the shape check came)
    import tracemalloc

    header = _header(saved)
    header[field] = value
    _rewrite(saved, tmp_path / "big.npz", header=header)
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError, match=message):
            fastnn.load(tmp_path / "big.npz")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10e6


def test_inconsistent_records_are_refused(tmp_path, saved):
    with np.load(saved) as z:
        arrays = {k: z[k] for k in z.files if k != "__header__"}
    header = _header(saved)
    for name, array, message in (
            ("classes", arrays["classes"][[2, 0, 1]], "not sorted and distinct"),
            ("opt_v", -np.abs(arrays["opt_v"]) - 1, "negative values"),
            ("opt_m", np.full_like(arrays["opt_m"], np.nan), "saved optimizer state")):
        forged = dict(arrays, **{name: array})
        write_model(tmp_path / "f.npz", {k: v for k, v in header.items()
                                         if k not in ("format", "format_version")}, forged)
        with pytest.raises(ModelFileError, match=message):
            fastnn.load(tmp_path / "f.npz")


def test_save_takes_numpy_scalars_text_labels_and_keeps_file_modes(tmp_path):
    import pandas as pd

    names = pd.Series(NAMES, dtype=object)  # text labels as Python objects (pandas)
    model = Sequential([Dense(8, "relu"), Dense(3, "softmax")], seed=np.int64(3),
                       optimizer=fastnn.optimizers.Adam(learning_rate=np.float32(0.01)))
    model.fit(X, names, epochs=2, batch_size=16)
    assert model.classes_.dtype == object
    old = os.umask(0o022)
    try:
        model.save(tmp_path / "new.npz")
        (tmp_path / "shared.npz").write_bytes(b"")
        os.chmod(tmp_path / "shared.npz", 0o640)
        model.save(tmp_path / "shared.npz")
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "new.npz").st_mode & 0o777 == 0o644  # as open() under umask 022
    assert os.stat(tmp_path / "shared.npz").st_mode & 0o777 == 0o640  # the replaced file's
    back = fastnn.load(tmp_path / "new.npz")
    assert back.seed == 3
    assert_array_equal(back.predict(X), model.predict(X))
    model.classes_ = np.array(["a", 1, 2.5], dtype=object)  # labels no file can hold
    with pytest.raises(TypeError, match=r"labels are Python objects that are not all str"):
        model.save(tmp_path / "mixed.npz")
    with pytest.raises(TypeError, match="a model setting of type set"):
        write_model(tmp_path / "x.npz", {"kind": "Sequential", "bad": {1}}, {})


def test_sparse_trained_wide_model_round_trips(tmp_path):
    # 2**18 features trained on CSR rows: the dense workspace of batch 2100 would pass the
    # file limit (554M elements); the file records the sparse one (~0.8M) it was trained with
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    n, d = 2100, 2**18
    X = sp.csr_matrix((rng.random(n * 5), rng.integers(0, d, n * 5),
                       np.arange(0, n * 5 + 1, 5)), shape=(n, d))
    y = np.arange(n) % 2
    model = Sequential([Dense(2, "softmax")], seed=0)
    model.fit(X, y, epochs=1, batch_size=n)
    model.save(tmp_path / "wide.npz")
    back = fastnn.load(tmp_path / "wide.npz")
    assert back._trainer.sparse and back._trainer.work.size == model._trainer.work.size
    back.fit(X, y, epochs=1, batch_size=n)
    model.fit(X, y, epochs=1, batch_size=n)
    assert_array_equal(back.get_weights()[0], model.get_weights()[0])


def test_write_model_refuses_object_arrays(tmp_path):
    with pytest.raises(TypeError, match="only numeric, text and datetime arrays"):
        write_model(tmp_path / "x.npz", {"kind": "Sequential"}, {"a": np.array([{}], object)})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_files_load_or_fail_cleanly(tmp_path, saved, data):
    path = tmp_path / "fuzz.npz"
    path.write_bytes(mutated(saved.read_bytes(), data))
    try:
        model = fastnn.load(path)
    except ModelFileError:
        return
    proba = model.predict_proba(X)  # a file that loads must give a working model
    assert np.isfinite(proba).all()
