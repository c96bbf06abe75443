"""Input checks shared by the model API and the estimators.

Everything a kernel will read is checked here, once per public call: dimensions,
dtypes, finiteness, contiguity. Messages name the argument and what was wrong with it.
"""

import numbers

import numpy as np

DTYPES = {"float32": np.float32, "float64": np.float64}


def check_dtype(dtype):
    """Normalize a dtype argument to ``np.float32`` or ``np.float64``."""
    try:
        key = np.dtype(dtype).name
    except TypeError:
        key = None
    if key not in DTYPES:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return DTYPES[key]


def is_sparse_matrix(a):
    """True for a SciPy sparse matrix or array (checked without importing SciPy)."""
    return hasattr(a, "toarray") or type(a).__module__.startswith("scipy.sparse")


def _as_numeric(a, name):
    if is_sparse_matrix(a):
        raise TypeError(f"{name} is a sparse matrix; pass a dense array (X.toarray())")
    arr = np.asarray(a)
    kind = arr.dtype.kind
    if kind in "biuf":
        return arr
    if kind == "c":
        raise TypeError(f"{name} has complex dtype {arr.dtype}; fastnn needs real numbers")
    if kind in "OUS":
        try:
            return arr.astype(np.float64)
        except (TypeError, ValueError):
            raise TypeError(
                f"{name} must hold numbers, got dtype {arr.dtype} with non-numeric values"
            ) from None
        except OverflowError:  # a Python int past float64's range (10**400)
            raise ValueError(f"{name} holds an integer too large for float64") from None
    raise TypeError(f"{name} must hold numbers, got dtype {arr.dtype}")


def check_finite(arr, name):
    """Raise ValueError when ``arr`` holds NaN or infinity."""
    # IEEE sums carry NaN and infinity through: a finite sum means finite elements, found
    # without the element-wise mask, an array the size of arr (47 MB for W-large's X:
    # 20-26 ms a fit with its fresh pages, against 10-12 ms for the sum). A sum that is
    # not finite may be large finite values overflowing: the element-wise test decides.
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(np.add.reduce(arr, axis=None)):
            return
    if not np.isfinite(arr).all():
        what = "NaN" if np.isnan(arr).any() else "infinity"
        if what == "infinity" and arr.dtype == np.float32:  # perhaps finite before the cast
            what += " (or values past float32's range, 3.4e38, which become infinity)"
        raise ValueError(f"{name} contains {what}; remove or impute non-finite values")


def check_X(X, dtype, name="X", n_features=None, finite=True, sparse=False):
    """Return ``X`` as a finite, C-contiguous 2-D array of ``dtype``.

    ``finite=False`` leaves the NaN and infinity test to the caller: for callers whose
    engine call makes that pass anyway (``predict_forward``). ``sparse=True`` lets a
    SciPy sparse matrix through as a CSR matrix of ``dtype`` (its stored values tested),
    for callers whose engine reads CSR rows; otherwise sparse input is refused.
    """
    if sparse and is_sparse_matrix(X):
        return _check_sparse_X(X, dtype, name, n_features, finite)
    arr = _as_numeric(X, name)
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D (n_samples, n_features), got an array of shape {arr.shape}"
        )
    if arr.shape[0] == 0:
        raise ValueError(f"{name} has 0 samples; at least 1 is required")
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has 0 features; at least 1 is required")
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(
            f"{name} has {arr.shape[1]} features, but the model was fitted with {n_features}"
        )
    if arr.dtype == dtype:  # no cast (errstate alone costs ~1 us of a one-row predict)
        out = np.ascontiguousarray(arr)
    else:
        with np.errstate(over="ignore"):  # past float32's range: infinity, reported so
            out = np.ascontiguousarray(arr, dtype=dtype)
    if finite:
        check_finite(out, name)
    return out


def check_sparse_structure(X, name):
    """Raise ValueError unless a CSR/CSC (or BSR) matrix's index arrays are consistent
    (every index inside the matrix, pointers in order). SciPy builds such a matrix from
    arrays without checking their values; the CSR kernels trust them, and SciPy's own
    ``tocsr`` of a broken CSC matrix crashed the process: so this runs first, on the
    matrix as given. (COO checks its indices when built; LIL and DOK cannot break so.)"""
    if not hasattr(X, "check_format"):
        return
    try:
        X.check_format(full_check=True)
    except ValueError as exc:
        raise ValueError(f"{name} is not a valid {X.format.upper()} matrix: {exc}") from None


def as_engine_csr(X, dtype, name):
    """A SciPy sparse matrix as the CSR kernels read it: its structure checked (on the
    matrix as given), CSR, of ``dtype``, with writeable arrays (read-only ones, as a
    joblib memmap gives, are another compiled signature); copies only where needed."""
    check_sparse_structure(X, name)
    arr = X.tocsr().astype(dtype, copy=False)
    if not all(a.flags.writeable for a in (arr.data, arr.indices, arr.indptr)):
        arr = arr.copy()
    return arr


def _check_sparse_X(X, dtype, name, n_features, finite):
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got a sparse array of "
                         f"shape {X.shape}")
    if X.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold numbers, got sparse dtype {X.dtype}")
    arr = as_engine_csr(X, dtype, name)
    for what, count in (("samples", arr.shape[0]), ("features", arr.shape[1])):
        if count == 0:
            raise ValueError(f"{name} has 0 {what}; at least 1 is required")
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(
            f"{name} has {arr.shape[1]} features, but the model was fitted with {n_features}"
        )
    if finite:
        check_finite(arr.data, name)
    return arr


def overflow_error(what, X, name="X"):
    """The ValueError for a non-finite result of finite (checked) input ``X``: the
    arithmetic overflowed. Callers raise it rather than return NaN (NaN probabilities
    make a silent accuracy of chance)."""
    return ValueError(f"{what} overflowed to a non-finite value; {name} holds values up to "
                      f"{abs(X).max():.3g}: scale the inputs")


def check_positive_int(value, name, minimum=1, maximum=None):
    """Return ``value`` as int, or raise if it is not an integer >= ``minimum`` (and
    <= ``maximum``, where given)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value!r}")
    return int(value)


def check_float(value, name, low=None, high=None, low_open=False, high_open=False):
    """Return ``value`` as float, or raise if it is not a real number in the range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        lo = "" if low is None else ("(" if low_open else "[") + f"{low}"
        hi = "" if high is None else f"{high}" + (")" if high_open else "]")
        raise ValueError(f"{name} must be in {lo or '(-inf'}, {hi or 'inf)'}, got {value!r}")
    return value
