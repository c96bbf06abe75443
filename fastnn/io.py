"""Model files: arrays plus a JSON header in an ``.npz``; loading never unpickles.

A file holds ``__header__`` (a uint8 array of UTF-8 JSON: format name, format version,
model kind, configuration) and named numeric or unicode arrays. Before any array is
read, every member's ``.npy`` header is parsed and checked: known names only, no object
dtype, shapes consistent with the member's byte size, and a total size cap, so a hostile
file can neither run code nor make the loader allocate absurd memory.
"""

import json
import os
import tempfile
import zipfile

import numpy as np

__all__ = ["FORMAT", "FORMAT_VERSION", "ModelFileError", "load", "read_model", "write_model"]

FORMAT = "fastnn-model"
FORMAT_VERSION = 1
# Largest array payload a model file may declare (bytes). A 784-512-256-10 float64 net
# with Adam state is ~20 MB; 4 GiB leaves room for wide nets without trusting a header.
MAX_BYTES = 4 * 2**30
_HEADER = "__header__"
# Array kinds a model file holds: numbers, and labels as unicode or bytes text, or
# datetimes and durations; never objects (which load through pickle)
STORABLE_KINDS = "biufcUSMm"


class ModelFileError(ValueError):
    """A model file is truncated, corrupted, hostile, or of an unsupported version."""


def _umask():
    mask = os.umask(0)  # reading the umask means setting it: set it straight back
    os.umask(mask)
    return mask


def _json_scalar(value):
    # NumPy scalars in a header (seed=np.int64(3), a learning rate of np.float32) as the
    # Python numbers they hold; anything else is not a setting a file can hold
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return value.item()
    raise TypeError(f"a model setting of type {type(value).__name__} ({value!r}) cannot be "
                    "saved; use a number, str or None")


def write_model(path, header, arrays):
    """Write ``header`` (JSON-able dict) and ``arrays`` to ``path`` atomically.

    The data goes to a temporary file in the same directory, is flushed to disk, then
    renamed over ``path``: a crash mid-save leaves the previous file intact.
    """
    # str, whatever the caller passed (bytes too); a symlink's target is what gets
    # replaced, or the rename would swap the link itself for a file
    path = os.path.realpath(os.fsdecode(os.fspath(path)))
    for name, arr in arrays.items():
        if name == _HEADER or not name.isidentifier():
            raise ValueError(f"invalid array name {name!r}")
        if np.asarray(arr).dtype.kind not in STORABLE_KINDS:
            raise TypeError(f"array {name!r} has dtype {np.asarray(arr).dtype}; only numeric, "
                            "text and datetime arrays can be saved")
    full = dict(header, format=FORMAT, format_version=FORMAT_VERSION)
    payload = {_HEADER: np.frombuffer(json.dumps(full, default=_json_scalar).encode("utf-8"),
                                      dtype=np.uint8)}
    payload.update({name: np.ascontiguousarray(arr) for name, arr in arrays.items()})
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".fastnn-", suffix=".tmp", dir=directory)
    try:
        # mkstemp makes the file 0600: give it the mode open() would (the umask's), or the
        # mode of the file it replaces, so other readers keep their access
        try:
            mode = os.stat(path).st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o666 & ~_umask()
        os.chmod(tmp, mode)
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _member_header(zf, info):
    with zf.open(info) as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        else:  # pragma: no cover - read_magic only returns the versions above
            raise ValueError(f"unsupported .npy version {version}")
        return shape, dtype, fh.tell()


def read_model(path):
    """Return ``(header, arrays)`` from a model file, validating it first.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ModelFileError
        The file is not a fastnn model file, is damaged, or declares unsafe content.
    """
    path = os.fsdecode(os.fspath(path))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no model file at {path!r}")
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ModelFileError(f"{path!r} is not a fastnn model file (not a valid npz: {exc})") \
            from None
    with zf:
        infos = {}
        total = 0
        for info in zf.infolist():
            name = info.filename[:-4] if info.filename.endswith(".npy") else None
            if name is None or not (name == _HEADER or name.isidentifier()):
                raise ModelFileError(f"{path!r} holds an unexpected member {info.filename!r}")
            if info.file_size > MAX_BYTES:
                raise ModelFileError(f"{path!r}: member {name!r} declares {info.file_size} "
                                     "bytes, over the model file limit")
            if info.compress_type != zipfile.ZIP_STORED:
                # fastnn writes members stored; a compressed one would be inflated (up to
                # MAX_BYTES from a file of a few MB) before any check of what it holds
                raise ModelFileError(f"{path!r}: member {name!r} is compressed; fastnn model "
                                     "files are written uncompressed")
            try:
                shape, dtype, offset = _member_header(zf, info)
            except Exception as exc:
                raise ModelFileError(f"{path!r}: member {name!r} has a damaged array header "
                                     f"({exc})") from None
            if dtype.hasobject or dtype.kind not in STORABLE_KINDS:
                raise ModelFileError(f"{path!r}: member {name!r} has dtype {dtype}; model files "
                                     "hold only numeric, text and datetime arrays")
            count = 1
            for dim in shape:
                count *= int(dim)
            nbytes = count * dtype.itemsize
            if nbytes + offset != info.file_size:
                raise ModelFileError(f"{path!r}: member {name!r} declares shape {shape} "
                                     f"({nbytes} bytes) but stores {info.file_size - offset}")
            total += nbytes
            infos[name] = info
        if total > MAX_BYTES:
            raise ModelFileError(f"{path!r} declares {total} bytes of arrays, over the limit")
        if _HEADER not in infos:
            raise ModelFileError(f"{path!r} is not a fastnn model file (no header)")
        arrays = {}
        try:
            for name, info in infos.items():
                with zf.open(info) as fh:
                    arrays[name] = np.lib.format.read_array(fh, allow_pickle=False)
        except Exception as exc:
            raise ModelFileError(f"{path!r} is damaged: {exc}") from None
    raw = arrays.pop(_HEADER)
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ModelFileError(f"{path!r} has a corrupted header ({exc})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ModelFileError(f"{path!r} is not a fastnn model file")
    version = header.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelFileError(f"{path!r} has format version {version!r}; this fastnn reads "
                             f"version {FORMAT_VERSION}")
    return header, arrays


def load(path):
    """Load a model saved with ``save``: a ``Sequential`` or a fastnn estimator."""
    header, arrays = read_model(path)
    kind = header.get("kind")
    try:
        if kind == "Sequential":
            from fastnn.model import Sequential

            return Sequential._from_file(header, arrays)
        if kind in ("MLPClassifier", "MLPRegressor"):
            from fastnn import estimators

            return getattr(estimators, kind)._from_file(header, arrays)
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, OverflowError) as exc:
        raise ModelFileError(f"{os.fspath(path)!r} has an inconsistent {kind} record: "
                             f"{exc!r}") from None
    raise ModelFileError(f"{os.fspath(path)!r} holds an unknown model kind {kind!r}")
