"""The one place numba options and numba-level machinery live.

Every kernel in ``fastnn.kernels`` is compiled through these decorators so that
fastmath flags, the error model and caching are set once. Below them: the intrinsics
the kernels build their views with (no reference counts), a bit cast, the direct BLAS
gemm calls, and Adam's step on AVX-512's estimates; each has a plain-Python twin that
runs under ``NUMBA_DISABLE_JIT=1``.

Kernels and helpers compile through pipelines of ours: numba's, plus one step before
lowering. A kernel's (:class:`_PrivateHelperCopies`) keeps its results the same whether
it was compiled in the process or loaded from the cache; a helper's
(:class:`_LinkOnlyHelper`) skips the optimization and machine code that only kernels'
copies of it would ever use. Helpers compile without numba's reference counting
(:func:`inline`), and a kernel's compile runs with Python's full garbage collections
held back (:func:`_full_collections_paused`).

Caching is numba's on-disk cache with four changes, made in :class:`_KernelCache`:

- An entry is valid only for the exact source of *all* ``kernels/*.py`` files. Numba
  keys a cache on the defining file alone, so an edit to a helper in ``dense.py`` would
  leave ``epoch.py``'s compiled kernels stale.
- An entry that cannot be read (truncated, written by another numba, built against a
  module name that no longer exists) is treated as a miss and recompiled, with one
  warning, instead of raising from the kernel call.
- Where no cache directory is writable (read-only install and ``NUMBA_CACHE_DIR``),
  kernels compile in memory, with one warning, instead of failing at import.
- A cached entry is rebuilt without numba's refresh of all its typing and lowering
  registries (~0.3 s of a warm start).
"""

import contextlib
import ctypes
import gc
import glob
import hashlib
import importlib.machinery
import importlib.util
import inspect
import os
import sys
import warnings
import weakref

import llvmlite.binding
import llvmlite.ir
import numba
import numpy as np
from numba.core import cgutils
from numba.core.caching import FunctionCache
from numba.core.compiler import CompilerBase, DefaultPassBuilder
from numba.core.compiler_lock import global_compiler_lock
from numba.core.compiler_machinery import AnalysisPass, LoweringPass, register_pass
from numba.core.runtime import rtsys
from numba.core.typed_passes import AnnotateTypes
from numba.core.untyped_passes import TranslateByteCode
from numba.extending import intrinsic

from ._codes import ADAM_EPS_FLOOR

# No nnan/ninf: the API's finiteness checks and the divergence guard still see NaN.
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}
# error_model="numpy": x / 0 gives inf instead of raising, so division loops vectorize.
_OPTS = dict(nogil=True, fastmath=FASTMATH, error_model="numpy")


class KernelCacheWarning(UserWarning):
    """The on-disk kernel cache could not be used; kernels still work."""


def _sources_digest():
    here = os.path.dirname(os.path.abspath(__file__))
    digest = hashlib.sha256()
    for name in sorted(os.listdir(here)):
        if name.endswith(".py"):
            with open(os.path.join(here, name), "rb") as fh:
                digest.update(name.encode() + b"\0" + fh.read())
    return ("fastnn-kernels", digest.hexdigest())


_SOURCES_STAMP = _sources_digest()
_warned = set()


def _warn_once(key, message):
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, KernelCacheWarning, stacklevel=3)


class _KernelCache(FunctionCache):
    def __init__(self, py_func):
        super().__init__(py_func)
        self._cache_file._source_stamp = _SOURCES_STAMP

    def load_overload(self, sig, target_context):
        # numba's FunctionCache.load_overload first refreshes the whole target context:
        # it imports and installs every typing and lowering registry, ~0.3 s, most of a
        # warm start. Rebuilding a cached entry needs only the runtime's symbols (the NRT);
        # a compile still refreshes, in numba's compiler and on a lowering miss.
        try:
            rtsys.initialize(target_context)
            with self._guard_against_spurious_io_errors():
                return self._load_overload(sig, target_context)
        except Exception as exc:  # any unreadable entry: recompile rather than fail
            _warn_once("load", f"fastnn: ignored an unreadable kernel cache entry in "
                               f"{self.cache_path!r} ({type(exc).__name__}: {exc}); recompiling")
            return None

    def save_overload(self, sig, data):
        try:
            super().save_overload(sig, data)
        except Exception as exc:
            _warn_once("save", f"fastnn: could not write the kernel cache in "
                               f"{self.cache_path!r} ({type(exc).__name__}: {exc})")


def _optimize_defined_functions(library):
    # numba runs its function passes on each module it adds to a library with a new pass
    # builder for every function, declarations included: ~40 modules and a few hundred
    # builders in a cold W-compile. The same passes with one builder per module, over
    # the defined functions only, give the same machine code (run_epochs' instructions
    # compared for W-tiny and W-large) in less time. Only where numba builds its function
    # passes with that API (0.68 here: no required argument); elsewhere its own step stays.
    codegen = library._codegen
    factory = getattr(codegen, "_function_pass_manager", None)
    if (factory is None or not hasattr(codegen, "_data_layout")
            or any(p.default is inspect.Parameter.empty and p.kind is p.POSITIONAL_OR_KEYWORD
                   for p in inspect.signature(factory).parameters.values())):
        return

    def optimize(ll_module):
        ll_module.data_layout = codegen._data_layout
        defined = [fn for fn in ll_module.functions if not fn.is_declaration]
        if defined:
            fpm, pb = factory()
            for fn in defined:
                fpm.run(fn, pb)

    library._optimize_functions = optimize


def _library_of(state):
    if state.library is None:  # as numba's NativeLowering would create it
        state.library = state.targetctx.codegen().create_library(state.func_id.func_qualname)
        state.library.enable_object_caching()
    return state.library


@register_pass(mutates_CFG=False, analysis_only=False)
class _LinkOnlyHelper(LoweringPass):
    """A helper's code runs only as the copies linked into kernels: no code of its own.

    numba optimizes each helper's module (with every helper it calls linked in) and
    compiles it to machine code, although kernels link the helper's IR and optimize it
    again with their own, and (see :class:`_PrivateHelperCopies`) call only that copy.
    Here the helper's library is finalized without either step; the JIT engine gets just
    its environment pointers, which numba writes when it registers the helper.

    Helpers compile without numba's reference counting (``_nrt=False``, see
    :func:`inline`); a helper that returned an array (or anything holding one) would hand
    its caller a reference it never took, and one whose code calls the reference counting
    would allocate: both are refused here with a TypeError.
    """

    _name = "fastnn_link_only_helper"

    def __init__(self):
        LoweringPass.__init__(self)

    def run_pass(self, state):
        if state.targetctx.data_model_manager[state.return_type].contains_nrt_meminfo():
            raise TypeError(
                f"fastnn.kernels helper {state.func_id.func_qualname} returns "
                f"{state.return_type}: helpers run without reference counts and may not "
                f"return arrays")
        library = _library_of(state)
        if not all(hasattr(library, name) for name in (
                "_optimize_final_module", "_finalize_final_module", "_final_module",
                "_codegen", "_finalized")):
            return False  # another numba: the helper compiles as numba does

        def define_environments_only():
            module = library._final_module
            # numba shares the routines it compiles internally (a flatten, a copy) between
            # code with and without reference counting: one compiled for a kernel first
            # would let a helper allocate, and leak, without a compile error
            counted = sorted({fn.name for fn in module.functions if fn.name.startswith("NRT_")})
            if counted:
                raise TypeError(
                    f"fastnn.kernels helper {state.func_id.func_qualname} calls numba's "
                    f"reference counting ({', '.join(counted)}): helpers run without it, so "
                    f"they may not allocate; take the buffer from the caller")
            stub = llvmlite.binding.parse_assembly("\n".join(
                str(gv) for gv in module.global_variables
                if not gv.is_declaration and gv.name.startswith("_ZN08NumbaEnv")))
            stub.triple, stub.data_layout = module.triple, module.data_layout
            library._codegen._engine.add_module(stub)
            library._codegen._engine.finalize_object()
            library._finalized = True

        _optimize_defined_functions(library)
        library._optimize_final_module = lambda: None
        library._finalize_final_module = define_environments_only
        return False  # the IR is unchanged


@register_pass(mutates_CFG=False, analysis_only=False)
class _PrivateHelperCopies(LoweringPass):
    """A kernel's object code calls its own copies of the functions it links in.

    numba links each compiled callee into a kernel as a weak (linkonce_odr) definition.
    Where the same function also has a standalone copy in the JIT engine, the JIT linker
    binds the kernel's calls to that copy instead: separately optimized code, whose
    float32 rounding differed in the last bits, so a fit in the process that filled the
    cache gave other weights than the same fit in every later process. Our helpers no
    longer get standalone code (:class:`_LinkOnlyHelper`), but numba's own overload
    implementations (``min``, ``max``, ...) do, and so would our helpers on a numba where
    that step stands aside. Made internal just before the object code is emitted (after
    all optimization), the copies bind locally whatever else is loaded.
    """

    _name = "fastnn_private_helper_copies"

    def __init__(self):
        LoweringPass.__init__(self)

    def run_pass(self, state):
        library = _library_of(state)
        emit_object = getattr(library, "_finalize_final_module", None)
        if emit_object is None:  # a numba without this step: results as numba links them
            return False

        def internalize_then_emit():
            for fn in library._final_module.functions:
                if not fn.is_declaration and fn.linkage == llvmlite.binding.Linkage.linkonce_odr:
                    fn.linkage = llvmlite.binding.Linkage.internal
            emit_object()

        _optimize_defined_functions(library)
        library._finalize_final_module = internalize_then_emit
        return False  # the IR is unchanged


@register_pass(mutates_CFG=False, analysis_only=True)
class _ContiguousArrays(AnalysisPass):
    """A kernel compiles for C-contiguous arrays only.

    Its views and its BLAS calls take every array as C-ordered rows; numba would compile
    a strided or Fortran-ordered argument all the same, and the kernel would return
    wrong numbers. The API always passes contiguous buffers; a direct call with another
    layout gets this TypeError (when numba types the new signature; the kernel's
    contiguous signatures run as before).
    """

    _name = "fastnn_contiguous_arrays"

    def __init__(self):
        AnalysisPass.__init__(self)

    def run_pass(self, state):
        for name, ty in zip(state.func_id.arg_names, state.args):
            if isinstance(ty, numba.types.Array) and ty.layout != "C":
                raise TypeError(
                    f"fastnn.kernels.{state.func_id.func_name}: {name} must be a C-contiguous "
                    f"array (np.ascontiguousarray makes one); got {ty}")
        return False


def _pipeline_with(lowering_step, first_step=None):
    class Pipeline(CompilerBase):
        def define_pipelines(self):
            # No SSA form before typing: our kernels and helpers never give a name values
            # of two types, so numba types and lowers them the same without it (the same
            # machine code), and skips its reconstruction and the larger IR it makes.
            self.state.flags.enable_ssa = False
            pipeline = DefaultPassBuilder.define_nopython_pipeline(self.state)
            if first_step is not None:
                pipeline.add_pass_after(first_step, TranslateByteCode)
            pipeline.add_pass_after(lowering_step, AnnotateTypes)  # just before lowering
            pipeline.finalize()
            return [pipeline]
    return Pipeline


_KernelCompiler = _pipeline_with(_PrivateHelperCopies, _ContiguousArrays)
_HelperCompiler = _pipeline_with(_LinkOnlyHelper)


@contextlib.contextmanager
def _full_collections_paused():
    # A kernel's compile allocates ~0.5 M container objects (numba's IR and types,
    # llvmlite's values), and Python's cyclic collector made full passes over the whole
    # growing heap: six in a cold W-compile, 0.72-0.82 s of its ~5.5 s. Young
    # collections still free the compile's short-lived cycles; full passes wait for
    # the usual rule after it (the W-tiny compile's peak memory 332 MB instead of 305).
    # Taken under numba's compiler lock, which compiles hold anyway, so two kernel
    # compiles never save and restore the thresholds across each other; a threshold
    # another thread sets meanwhile stays. (A CPython that ignores the third threshold
    # compiles as before.)
    paused = 1 << 30
    with global_compiler_lock:
        young, middle, full = gc.get_threshold()
        try:
            gc.set_threshold(young, middle, paused)
            yield
        finally:
            now = gc.get_threshold()
            if now[2] == paused:
                gc.set_threshold(now[0], now[1], full)


def kernel(fn):
    """Compile ``fn`` lazily, per dtype, with an on-disk cache."""
    dispatcher = numba.njit(fn, pipeline_class=_KernelCompiler, **_OPTS)
    if not hasattr(dispatcher, "py_func"):  # NUMBA_DISABLE_JIT=1: njit returned fn itself
        return dispatcher
    unpaused, this = type(dispatcher).compile, weakref.ref(dispatcher)  # weak: no cycle

    def compile_paused(sig):
        # every signature comes here before its first call (from Python, or typed inside
        # another jitted function): the cache lookup and load, typing, lowering, LLVM
        # and the cache save
        with _full_collections_paused():
            return unpaused(this(), sig)

    dispatcher.compile = compile_paused
    try:
        dispatcher._cache = _KernelCache(dispatcher.py_func)
    except RuntimeError as exc:  # numba found no writable cache location
        _warn_once("locate", f"fastnn: kernels will compile without an on-disk cache ({exc}); "
                             "set NUMBA_CACHE_DIR to a writable directory to cache them")
    return dispatcher


_HELPER_OPTS = dict(no_cpython_wrapper=True, no_cfunc_wrapper=True,
                    pipeline_class=_HelperCompiler, _nrt=False)


def inline_exact(fn):
    """Like :func:`inline`, without the reassociation and approximation flags: for
    arithmetic whose rounding is the point (a split constant, a polynomial)."""
    return numba.njit(fn, **_HELPER_OPTS, **dict(_OPTS, fastmath={"nsz", "contract"}))


def inline(fn):
    """Compile ``fn`` as a helper of kernels: it has no cache entry of its own.

    Helpers are called from kernels only, so they get neither a CPython nor a C-function
    wrapper: building those for ~26 helpers was about a tenth of a cold W-compile (median
    of five fresh processes 10.7 s without them, 12.2 s with).

    Nor numba's reference counting (NRT): a helper allocates nothing, and its caller
    holds every array it is passed for the whole call. numba still lowered an incref or
    a decref for each loop step and array view (``run_epochs``' machine code called
    ``NRT_incref``/``NRT_decref`` from 33 places, now 14), and that lowering was ~7% of a
    cold W-compile's profile. A helper that allocates fails its compile (numba's typing or
    lowering, or :class:`_LinkOnlyHelper` where numba reused a routine compiled with
    reference counts), and so does one that returns an array numba's own check lets
    through (its argument, or an array in a tuple).
    """
    return numba.njit(fn, **_HELPER_OPTS, **_OPTS)


def inline_ir(fn):
    """Like :func:`inline`, but spliced into each caller's numba IR before typing.

    For large helpers with one call site per kernel, which LLVM leaves as calls. For
    ``_loss_and_grad`` and ``_forward``: a W-tiny epoch 0.93x the time (20/20 pairs)
    and, before :class:`_LinkOnlyHelper`, a cold W-compile 0.78x. Not for large helpers
    called from several places, each typed anew: splicing the optimizer, loss,
    derivative and dense helpers as well made a W-tiny epoch 1.19x slower. And for the
    few-line ones (a test, a copy, a row's max, a BLAS call), where typing them anew at
    each call costs less than a compile of their own (~20-70 ms each): ten of them took
    a cold W-compile from 38 compiled functions to 28 and 0.97x the time (median of 14
    alternations), a W-tiny epoch even (quiet-round minima 21.10-22.24 us vs 21.05-21.63);
    the four BLAS calls then 0.94x (5.72 vs 6.06 s, medians of 8, 7/8 faster), W-small
    even (3.25-3.30 vs 3.25-3.30 ms, minima of 6 rounds).
    """
    return numba.njit(fn, inline="always", no_cpython_wrapper=True, no_cfunc_wrapper=True,
                      **_OPTS)


# min and max of two numbers, as Python's builtins pick (b only where it compares strictly
# smaller / greater): the builtins compile numba's overload once per signature, ~25 ms of
# a cold start each; these are spliced into the caller.
@inline_ir
def lesser(a, b):
    return b if b < a else a


@inline_ir
def greater(a, b):
    return b if b > a else a


# The per-operation kernels' shape checks (the engine kernels take what fastnn's API has
# checked): a mismatch wrote or read past an array's end, or crashed the process.
@inline_ir
def require_shape(a, shape, message):
    if a.shape != shape:
        raise ValueError(message)


@inline_ir
def require_length(a, n, message):
    if a.shape[0] != n:
        raise ValueError(message)


# Views without reference counts. A kernel's every view (a reshape, a slice) increments
# and later decrements its base array's count with a locked instruction, and reshape
# calls a C helper of numba's besides: without both, a W-tiny epoch takes 0.74x the time
# (median of 30 alternating pairs in one process). A borrowed view carries no count:
# the caller's argument keeps the memory alive for the call, so such a view must never
# outlive it (be returned or stored).

def _borrowed_codegen(context, builder, sig, args):
    view = context.make_array(sig.return_type)(context, builder, value=args[0])
    view.meminfo = cgutils.get_null_value(view.meminfo.type)
    view.parent = cgutils.get_null_value(view.parent.type)
    return view._getvalue()


@intrinsic
def _borrowed(typingctx, arr):
    if isinstance(arr, numba.types.Array):
        return arr(arr), _borrowed_codegen
    return None


def _new_view(context, builder, view_type, data, shape, strides_in_items):
    # An array struct over existing memory, without a meminfo (no reference count).
    # Imported here, at compile time: numba.np.arrayobj costs ~45 ms of a warm start.
    from numba.np.arrayobj import populate_array

    itemsize = context.get_constant(
        numba.types.intp, context.get_abi_sizeof(context.get_data_type(view_type.dtype)))
    view = context.make_array(view_type)(context, builder)
    populate_array(view, data=data, shape=cgutils.pack_array(builder, shape),
                   strides=cgutils.pack_array(builder, [builder.mul(s, itemsize)
                                                        for s in strides_in_items]),
                   itemsize=itemsize, meminfo=None)
    return view._getvalue()


def _rows_codegen(context, builder, sig, args):
    buf = context.make_array(sig.args[0])(context, builder, value=args[0])
    start, rows, cols = (context.cast(builder, val, ty, numba.types.intp)
                         for val, ty in zip(args[1:], sig.args[1:]))
    if context.enable_boundscheck:  # NUMBA_BOUNDSCHECK=1: the view must lie inside buf
        room = builder.add(cgutils.unpack_tuple(builder, buf.shape, 1)[0], start.type(1))
        cgutils.do_boundscheck(context, builder, start, room)
        cgutils.do_boundscheck(context, builder, builder.add(start, builder.mul(rows, cols)), room)
    return _new_view(context, builder, sig.return_type,
                     builder.gep(buf.data, [start], inbounds=True), [rows, cols],
                     [cols, start.type(1)])


@intrinsic
def _rows_view(typingctx, buf, start, rows, cols):
    if (isinstance(buf, numba.types.Array) and buf.ndim == 1 and buf.layout == "C"
            and all(isinstance(t, numba.types.Integer) for t in (start, rows, cols))):
        return numba.types.Array(buf.dtype, 2, "C")(buf, start, rows, cols), _rows_codegen
    return None


def _flat_codegen(context, builder, sig, args):
    src = context.make_array(sig.args[0])(context, builder, value=args[0])
    return _new_view(context, builder, sig.return_type, src.data, [src.nitems],
                     [src.nitems.type(1)])


@intrinsic
def _flat_view(typingctx, arr):
    if isinstance(arr, numba.types.Array) and arr.layout == "C":
        return numba.types.Array(arr.dtype, 1, "C")(arr), _flat_codegen
    return None


def flat_view(arr):
    """A C-ordered array's elements as one borrowed 1-D view (no copy)."""
    return arr.reshape(-1)


@intrinsic
def _float_from_bits(typingctx, bits):
    if isinstance(bits, numba.types.Integer) and bits.bitwidth == 64:
        def codegen(context, builder, sig, args):
            return builder.bitcast(args[0], llvmlite.ir.DoubleType())
        return numba.types.float64(bits), codegen
    return None


def float_from_bits(bits):
    """The float64 whose IEEE-754 bit pattern is the int64 ``bits``."""
    return np.int64(bits).view(np.float64)


# A value LLVM cannot trace back to how it was computed: an empty inline asm that takes
# it in a register and hands it back. Under reassoc, Adam's b * v + c * g**2 with c = 1 - b
# in sight became g**2 + b * (v - g**2): a g**2 that overflows gave inf - inf = NaN, where
# the formula gives inf (seen on AVX2, whose exact loop is compiled from that source).
@intrinsic
def _opaque_float(typingctx, value):
    if isinstance(value, numba.types.Float):
        def codegen(context, builder, sig, args):
            ty = context.get_value_type(sig.args[0])
            return builder.asm(llvmlite.ir.FunctionType(ty, [ty]), "", "=x,0", [args[0]],
                               side_effect=False)
        return value(value), codegen
    return None


def opaque_float(value):
    """``value`` unchanged; compiled, the optimizer cannot see how it was computed."""
    return value


# Two threads training one network (kernels/split.py) meet at barriers: a counter each,
# written with release and read with acquire ordering, so that what a thread wrote before
# its count is visible to the other once it sees the count.
@intrinsic
def _load_acquire(typingctx, arr, idx):
    if (isinstance(arr, numba.types.Array) and arr.dtype == numba.types.int64
            and arr.ndim == 1 and isinstance(idx, numba.types.Integer)):
        def codegen(context, builder, sig, args):
            a = context.make_array(sig.args[0])(context, builder, args[0])
            ptr = cgutils.get_item_pointer(context, builder, sig.args[0], a, [args[1]])
            return builder.load_atomic(ptr, ordering="acquire", align=8)
        return numba.types.int64(arr, idx), codegen
    return None


@intrinsic
def _store_release(typingctx, arr, idx, value):
    if (isinstance(arr, numba.types.Array) and arr.dtype == numba.types.int64
            and arr.ndim == 1 and isinstance(idx, numba.types.Integer)
            and value == numba.types.int64):
        def codegen(context, builder, sig, args):
            a = context.make_array(sig.args[0])(context, builder, args[0])
            ptr = cgutils.get_item_pointer(context, builder, sig.args[0], a, [args[1]])
            builder.store_atomic(args[2], ptr, ordering="release", align=8)
            return context.get_dummy_value()
        return numba.types.void(arr, idx, value), codegen
    return None


@intrinsic
def _yield_cpu(typingctx):
    # libc's sched_yield, linked from the process (cached code too)
    def codegen(context, builder, sig, args):
        fnty = llvmlite.ir.FunctionType(llvmlite.ir.IntType(32), [])
        builder.call(cgutils.get_or_insert_function(builder.module, fnty, "sched_yield"), [])
        return context.get_dummy_value()
    return numba.types.void(), codegen


def load_acquire(arr, idx):
    """``arr[idx]`` (int64), read with acquire ordering."""
    return arr[idx]


def store_release(arr, idx, value):
    """``arr[idx] = value`` (int64), written with release ordering."""
    arr[idx] = value


def yield_cpu():
    """Let the scheduler run another thread on this core (``sched_yield``)."""
    os.sched_yield()


# The L2 term's sums of squares where one fit may run on one thread or two (kernels/
# epoch.py, kernels/split.py): one fixed order whatever the caller, in LLVM IR rather than
# a numba helper, which cost a cold first fit 0.15 s of compiling even where no split can
# run. Element c of a row goes to partial sum c % 16 (one vector of 16 doubles), each
# square rounded in the array's dtype and added in float64 without fusing; the 16
# partials are added in a fixed tree at the end.
_SQUARE_LANES = 16


@intrinsic
def _sum_squares16(typingctx, theta, start, rows, stride, width):
    if not (isinstance(theta, numba.types.Array) and theta.ndim == 1 and theta.layout == "C"
            and str(theta.dtype) in ("float32", "float64")
            and all(isinstance(a, numba.types.Integer) for a in (start, rows, stride, width))):
        return None

    def codegen(context, builder, sig, args):
        arr = context.make_array(sig.args[0])(context, builder, args[0])
        i64 = llvmlite.ir.IntType(64)
        start_, rows_, stride_, width_ = (context.cast(builder, v, t, numba.types.int64)
                                          for v, t in zip(args[1:], sig.args[1:]))
        item = context.get_value_type(sig.args[0].dtype)
        f64 = llvmlite.ir.DoubleType()
        lanes = llvmlite.ir.VectorType(f64, _SQUARE_LANES)
        acc = cgutils.alloca_once_value(builder, llvmlite.ir.Constant(lanes, None))
        chunks = builder.udiv(width_, llvmlite.ir.Constant(i64, _SQUARE_LANES))
        with cgutils.for_range(builder, rows_) as row:
            row_start = builder.add(start_, builder.mul(row.index, stride_))
            with cgutils.for_range(builder, chunks) as chunk:
                at = builder.add(row_start, builder.mul(
                    chunk.index, llvmlite.ir.Constant(i64, _SQUARE_LANES)))
                ptr = builder.gep(arr.data, [at])
                vec_ptr = builder.bitcast(
                    ptr, llvmlite.ir.VectorType(item, _SQUARE_LANES).as_pointer())
                x = builder.load(vec_ptr, align=1)
                sq = builder.fmul(x, x)
                if item != f64:
                    sq = builder.fpext(sq, lanes)
                builder.store(builder.fadd(builder.load(acc), sq), acc)
        total = builder.load(acc)
        parts = [builder.extract_element(total, llvmlite.ir.Constant(i64, k))
                 for k in range(_SQUARE_LANES)]
        while len(parts) > 1:
            parts = [builder.fadd(parts[k], parts[k + 1]) for k in range(0, len(parts), 2)]
        return parts[0]

    return numba.types.float64(theta, start, rows, stride, width), codegen


def sum_squares16(theta, start, rows, stride, width):
    """The sum of squares of a ``rows`` x ``width`` block of the flat array ``theta`` (rows
    ``stride`` apart from ``start``; ``width`` a multiple of 16), in a fixed order:
    element c of a row into partial sum c % 16 (float64, each square rounded in
    ``theta``'s dtype), the partials added pairwise at the end."""
    parts = [0.0] * _SQUARE_LANES
    for r in range(rows):
        row = theta[start + r * stride : start + r * stride + width]
        for c in range(width):
            parts[c % _SQUARE_LANES] += float(row[c] * row[c])
    while len(parts) > 1:
        parts = [parts[k] + parts[k + 1] for k in range(0, len(parts), 2)]
    return parts[0]


def borrowed(arr):
    """``arr`` without its reference count, for use inside the running kernel only."""
    return arr


def rows_view(buf, start, rows, cols):
    """``buf[start : start + rows * cols]`` as a C-ordered (rows, cols) borrowed view."""
    return buf[start : start + rows * cols].reshape((rows, cols))


if not numba.config.DISABLE_JIT:  # the plain functions above are the JIT-off twins
    borrowed = _borrowed  # noqa: F811
    rows_view = _rows_view  # noqa: F811
    flat_view = _flat_view  # noqa: F811
    float_from_bits = _float_from_bits  # noqa: F811
    opaque_float = _opaque_float  # noqa: F811
    load_acquire = _load_acquire  # noqa: F811
    store_release = _store_release  # noqa: F811
    yield_cpu = _yield_cpu  # noqa: F811
    sum_squares16 = _sum_squares16  # noqa: F811


# BLAS products called directly. numba's np.dot reaches the same OpenBLAS gemm through
# its own checks and a C helper: 60-115 ns more per call, which at iris' sizes (16x4x16:
# 61 vs 120 ns, in a compiled loop) is half of each product and ~7 products per batch.
# The gemm is registered under a symbol of ours, so compiled code refers to it by name
# and the on-disk cache stays valid across processes, as numba does for its own helpers.
#
# Whose gemm: NumPy's, where its wheel's OpenBLAS is loaded (ILP64: 64-bit integer
# arguments), else SciPy's (the library numba's np.dot uses; 32-bit). Two OpenBLAS
# libraries each keep a worker thread spinning for a while after every threaded call,
# so a NumPy product and a kernel call in turn had two spinning workers on two cores:
# W-inferB's 10k-row predict took 150 ms right after a NumPy-backend predict and 60 ms
# after its own (the NumPy backend's 159 ms vs 90 ms, likewise). One library, one pool.
def _numpy_gemm():
    # {"float64": address, "float32": address} in the OpenBLAS that NumPy loaded, or None.
    # Only a library this process already has (its path in the memory map): opening
    # another copy would add a third thread pool, not share one.
    try:
        with open("/proc/self/maps") as fh:
            loaded = fh.read()
    except OSError:
        return None
    libs = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(np.__file__))),
                        "numpy.libs")
    for path in sorted(glob.glob(os.path.join(libs, "libscipy_openblas64_*"))):
        if os.path.realpath(path) not in loaded:
            continue
        try:
            lib = ctypes.CDLL(path)
            return {dtype: ctypes.cast(getattr(lib, f"scipy_{prefix}gemm_64_"),
                                       ctypes.c_void_p).value
                    for dtype, prefix in (("float64", "d"), ("float32", "s"))}
        except (OSError, AttributeError):
            continue
    return None


_CYTHON_BLAS = "scipy.linalg.cython_blas"


def _cython_blas():
    # The extension module alone: ``import scipy.linalg.cython_blas`` first runs
    # scipy.linalg's __init__, which imports most of SciPy (~0.23 s, a third of a warm
    # start). The module is loaded under its own name, so a later import of scipy.linalg
    # gets this same module object.
    module = sys.modules.get(_CYTHON_BLAS)
    if module is not None:
        return module
    scipy_spec = importlib.util.find_spec("scipy")
    for location in (scipy_spec.submodule_search_locations or []) if scipy_spec else []:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = os.path.join(location, "linalg", "cython_blas" + suffix)
            if os.path.isfile(path):
                loader = importlib.machinery.ExtensionFileLoader(_CYTHON_BLAS, path)
                spec = importlib.util.spec_from_file_location(_CYTHON_BLAS, path, loader=loader)
                module = importlib.util.module_from_spec(spec)
                loader.exec_module(module)
                sys.modules[_CYTHON_BLAS] = module
                return module
    return importlib.import_module(_CYTHON_BLAS)  # an unusual layout: the plain import


def _capsule_address(capsule):
    name = ctypes.pythonapi.PyCapsule_GetName
    name.restype, name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    pointer = ctypes.pythonapi.PyCapsule_GetPointer
    pointer.restype, pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    return pointer(capsule, name(capsule))


_gemm_addresses = _numpy_gemm()
if _gemm_addresses is not None:
    BLAS = "numpy-openblas-ilp64"
    _BLAS_INT_BITS = 64
    _GEMM = {"float64": "fastnn_dgemm_ilp64", "float32": "fastnn_sgemm_ilp64"}
else:
    BLAS = "scipy-lp64"
    _BLAS_INT_BITS = 32
    _GEMM = {"float64": "fastnn_dgemm", "float32": "fastnn_sgemm"}
    _gemm_addresses = {dtype: _capsule_address(_cython_blas().__pyx_capi__[prefix + "gemm"])
                       for dtype, prefix in (("float64", "d"), ("float32", "s"))}
for _dtype, _symbol in _GEMM.items():
    llvmlite.binding.add_symbol(_symbol, _gemm_addresses[_dtype])


class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


def _blas_core(address):
    # OpenBLAS's name for the kernels it picked on this CPU ("skylakex", "haswell", ...),
    # asked of the library that holds the gemm at address; "" where it cannot tell.
    try:
        libdl = ctypes.CDLL(None)
        info = _DlInfo()
        if not libdl.dladdr(ctypes.c_void_p(address), ctypes.byref(info)) or not info.dli_fname:
            return ""
        lib = ctypes.CDLL(info.dli_fname.decode())
    except (OSError, AttributeError):
        return ""
    for name in ("scipy_openblas_get_corename64_", "scipy_openblas_get_corename",
                 "openblas_get_corename64_", "openblas_get_corename"):
        corename = getattr(lib, name, None)
        if corename is not None:
            corename.restype = ctypes.c_char_p
            return (corename() or b"").decode(errors="replace").strip().lower()
    return ""


def _blas_thread_count(address):
    # The library's current thread count (threadpoolctl's limits change it), as a
    # function; one that answers 0 where the library cannot tell.
    try:
        libdl = ctypes.CDLL(None)
        info = _DlInfo()
        if not libdl.dladdr(ctypes.c_void_p(address), ctypes.byref(info)) or not info.dli_fname:
            return lambda: 0
        lib = ctypes.CDLL(info.dli_fname.decode())
    except (OSError, AttributeError):
        return lambda: 0
    for name in ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads",
                 "openblas_get_num_threads64_", "openblas_get_num_threads"):
        count = getattr(lib, name, None)
        if count is not None:
            count.restype, count.argtypes = ctypes.c_int, []
            return count
    return lambda: 0


# The kernels choose between BLAS call patterns by the core (kernels/dense.py).
BLAS_CORE = _blas_core(_gemm_addresses["float64"])
# How many threads the kernels' BLAS may use now: the budget of a fit's threads
# (fastnn._split trains on two only where it is at least 2).
blas_thread_count = _blas_thread_count(_gemm_addresses["float64"])
# Compiled code calls the library this process found, and chose by its core: a cache
# entry is valid for that pair.
_SOURCES_STAMP = (_SOURCES_STAMP[0], f"{_SOURCES_STAMP[1]}|{BLAS}|{BLAS_CORE}")


def _gemm_intrinsic(trans_a, trans_b):
    # gemm(a, b, c, m, n, k, lda, ldb, ldc): column-major c = op(a) @ op(b), alpha 1,
    # beta 0, Fortran calling convention (every argument by pointer; integers of the
    # library's width, _BLAS_INT_BITS).
    def codegen(context, builder, sig, args):
        dtype = sig.args[0].dtype
        real = context.get_value_type(dtype)
        i8, blas_int = llvmlite.ir.IntType(8), llvmlite.ir.IntType(_BLAS_INT_BITS)
        fnty = llvmlite.ir.FunctionType(llvmlite.ir.VoidType(), [
            i8.as_pointer(), i8.as_pointer(), blas_int.as_pointer(), blas_int.as_pointer(),
            blas_int.as_pointer(), real.as_pointer(), real.as_pointer(), blas_int.as_pointer(),
            real.as_pointer(), blas_int.as_pointer(), real.as_pointer(), real.as_pointer(),
            blas_int.as_pointer()])
        fn = cgutils.get_or_insert_function(builder.module, fnty, _GEMM[str(dtype)])

        def by_ref(value):
            return cgutils.alloca_once_value(builder, value)

        def int_ref(value, ty):
            wide = context.cast(builder, value, ty, numba.types.int64)
            return by_ref(wide if _BLAS_INT_BITS == 64 else builder.trunc(wide, blas_int))

        a, b, c = (context.make_array(ty)(context, builder, value=val).data
                   for ty, val in zip(sig.args[:3], args[:3]))
        m, n, k, lda, ldb, ldc = (int_ref(v, t) for v, t in zip(args[3:], sig.args[3:]))
        builder.call(fn, [by_ref(i8(ord(trans_a))), by_ref(i8(ord(trans_b))), m, n, k,
                          by_ref(real(1.0)), a, lda, b, ldb, by_ref(real(0.0)), c, ldc])
        return context.get_dummy_value()

    @intrinsic
    def gemm(typingctx, a, b, c, m, n, k, lda, ldb, ldc):
        arrays = (a, b, c)
        if (all(isinstance(t, numba.types.Array) for t in arrays)
                and str(a.dtype) in _GEMM and a.dtype == b.dtype == c.dtype
                and all(isinstance(t, numba.types.Integer) for t in (m, n, k, lda, ldb, ldc))):
            return numba.types.void(a, b, c, m, n, k, lda, ldb, ldc), codegen
        return None

    return gemm


_gemm_nn = _gemm_intrinsic("N", "N")
_gemm_nt = _gemm_intrinsic("N", "T")
_gemm_tn = _gemm_intrinsic("T", "N")


# Row-major products on C-contiguous 2-D arrays, as column-major gemm of the transposes.
@inline_ir
def _dot_into(a, b, out):
    _gemm_nn(b, a, out, b.shape[1], a.shape[0], a.shape[1], b.shape[1], a.shape[1], b.shape[1])


@inline_ir
def _dot_t_into(a, b, out):
    _gemm_nt(b, a, out, b.shape[1], a.shape[1], a.shape[0], b.shape[1], a.shape[1], b.shape[1])


@inline_ir
def _dot_nt_into(a, b, out):
    _gemm_tn(b, a, out, b.shape[0], a.shape[0], a.shape[1], b.shape[1], a.shape[1], b.shape[0])


@inline_ir
def _dot_nt_cols_into(a, b, out, start, stop):
    _gemm_tn(b[start:stop], a, out[:, start:stop], stop - start, a.shape[0], a.shape[1],
             b.shape[1], a.shape[1], out.shape[1])


def dot_into(a, b, out):
    """``out = a @ b`` for C-contiguous 2-D float arrays of one dtype."""
    np.dot(a, b, out)


def dot_t_into(a, b, out):
    """``out = a.T @ b`` (``a`` and ``b`` with the same number of rows)."""
    np.dot(a.T, b, out)


def dot_nt_into(a, b, out):
    """``out = a @ b.T`` (``a`` and ``b`` with the same number of columns)."""
    np.dot(a, b.T, out)


def dot_nt_cols_into(a, b, out, start, stop):
    """``out[:, start:stop] = a @ b[start:stop].T``, the other columns untouched."""
    out[:, start:stop] = a @ b[start:stop].T


if not numba.config.DISABLE_JIT:
    dot_into, dot_t_into, dot_nt_into = _dot_into, _dot_t_into, _dot_nt_into  # noqa: F811
    dot_nt_cols_into = _dot_nt_cols_into  # noqa: F811


# Small products in registers. A BLAS call costs its checks, a buffer lock and packing
# however small the product; where OpenBLAS has no small-matrix path (its Haswell
# kernels: AVX2 CPUs, AMD's among them) that was ~300 ns of iris' 16x4x16 forward
# product. Here each tile of TILE_ROWS rows by TILE_WIDTH vectors of out sums over k in
# vector registers, broadcasting one element of a per row and loading a row of b per
# vector, and is stored once. A full tile keeps 12 sums in flight, more than the 8 that
# two multiply-add pipes of latency 4 need (6 rows against 4, two alternations of the
# bench on the AMD EPYC: W-tiny 56.0-59.3 us per epoch vs 59.9-64.1, W-small 6.24-6.45
# ms vs 6.50-6.72). The rows past the last whole tile go in tiles of 4, 2 and 1 rows, the
# shorter ones wider to keep 8 sums (one row of W-infer1's 64x128: 1.08 us at 8 vectors
# vs 1.62 at 2): four tile heights, not one per leftover count, since every height is
# loops emitted at every product (a cold W-compile 10.6-12.3 s in three runs against
# 12.6-13.3 with all six; the epochs unchanged within the host's noise). The columns
# past the last whole tile go one vector at a time, the last partial vector masked.
# Vectors of 64 bytes where the CPU numba compiles for has AVX-512F, else 32 (LLVM
# splits a 64-byte vector in two on AVX2, so the tests run both widths on any CPU). On
# an AVX-512 Xeon, 32-byte tiles lost to OpenBLAS's SkylakeX small-matrix kernels from
# 16x16x16 up; 64-byte ones, alternating with them in one process: 16x4x16 67 vs 118 ns,
# 32x64x64 7.4 vs 11.1 us, 32x128x64 16.5 vs 22.5 us (n_out = 3, one masked vector of 8
# doubles instead of 4: 151 vs 135 ns), about even with BLAS; epochs, the two widths in
# two processes at once on the two cores: W-tiny 64-65 vs 68-71 us, W-small 5.4-5.8 vs
# 8.0 ms.
TILE_ROWS = 6
TILE_WIDTH = {6: 2, 4: 2, 2: 4, 1: 8}  # vectors per tile, by its rows
TILE_BYTES = None  # None: by the CPU, as above; a test compiles either width by setting it
# A row's leftover vectors in one loop, every one masked (True), or whole vectors and then
# a masked last one (False); None: by the CPU (masks cost nothing on AVX-512). A test
# compiles either layout by setting it.
TILE_MASKED_LOOP = None


def tile_bytes(context):
    return TILE_BYTES or (64 if _has_avx512(context) else 32)


class _Vectors:
    """The vector operations the IR kernels below emit, on vectors of ``lanes`` elements
    of ``dtype``: LLVM's own fma and masked load and store, which it lowers to the best
    the CPU has (on AVX-512 a masked lane costs nothing more)."""

    def __init__(self, context, builder, dtype, lanes):
        ir = llvmlite.ir
        self.builder, self.lanes = builder, lanes
        self.real = context.get_value_type(dtype)
        self.size = context.get_abi_sizeof(self.real)
        self.intp = context.get_value_type(numba.types.intp)
        self.vec = ir.VectorType(self.real, lanes)
        self.index_vec = ir.VectorType(self.intp, lanes)
        self.zero = ir.Constant(self.vec, None)
        self.lane = ir.Constant(self.index_vec, list(range(lanes)))  # 0, 1, ..., lanes - 1
        self._i32 = ir.IntType(32)
        self._align = self._i32(self.size)
        self._ptr = self.vec.as_pointer()
        mask_ty = ir.VectorType(ir.IntType(1), lanes)
        width = f"v{lanes}f{self.size * 8}"
        module = builder.module
        self._fma = cgutils.get_or_insert_function(
            module, ir.FunctionType(self.vec, [self.vec] * 3), f"llvm.fma.{width}")
        self._masked_load = cgutils.get_or_insert_function(
            module, ir.FunctionType(self.vec, [self._ptr, self._i32, mask_ty, self.vec]),
            f"llvm.masked.load.{width}.p0")
        self._masked_store = cgutils.get_or_insert_function(
            module, ir.FunctionType(ir.VoidType(), [self.vec, self._ptr, self._i32, mask_ty]),
            f"llvm.masked.store.{width}.p0")
        self.sqrt = cgutils.get_or_insert_function(
            module, ir.FunctionType(self.vec, [self.vec]), f"llvm.sqrt.{width}")
        self._broadcast = ir.Constant(ir.VectorType(self._i32, lanes), [0] * lanes)

    def const(self, value):
        return llvmlite.ir.Constant(self.vec, [value] * self.lanes)

    def splat(self, value, vty=None):
        """``value`` in every lane of a vector of type ``vty`` (default: of reals)."""
        vty = vty or self.vec
        undef = llvmlite.ir.Constant(vty, llvmlite.ir.Undefined)
        one = self.builder.insert_element(undef, value, self._i32(0))
        return self.builder.shuffle_vector(one, undef, self._broadcast)

    def below(self, start, limit):
        """The mask of lanes ``start + i < limit``."""
        return self.builder.icmp_signed("<", self.builder.add(self.splat(start, self.index_vec),
                                                              self.lane),
                                        self.splat(limit, self.index_vec))

    def fma(self, a, b, c):
        return self.builder.call(self._fma, [a, b, c])

    def at(self, arr, offset):
        """A vector pointer to element ``offset`` of the flat data of ``arr``."""
        return self.builder.bitcast(self.builder.gep(arr.data, [offset], inbounds=True),
                                    self._ptr)

    def load(self, at, mask=None, passthru=None):
        """The vector at ``at``; with a mask, only its lanes (the rest ``passthru``)."""
        if mask is None:
            return self.builder.load(at, align=self.size)
        fill = self.zero if passthru is None else passthru
        return self.builder.call(self._masked_load, [at, self._align, mask, fill])

    def store(self, value, at, mask=None):
        if mask is None:
            self.builder.store(value, at, align=self.size)
        else:
            self.builder.call(self._masked_store, [value, at, self._align, mask])


def _loop_not_unrolled(module):
    # A loop's llvm.loop metadata, {itself, "llvm.loop.unroll.disable"}. LLVM unrolled
    # each tile's k loop about five times (310 multiply-adds in the machine code of the
    # product helper, whose tiles then had 62), while one step of a tile already holds
    # the multiply-add unit for 6-12 cycles: W-tiny and W-small epochs even without it,
    # a cold W-compile 0.91x (README, kernel notes). Unrolled, the column sums' additions
    # were also regrouped (the kernels' fastmath allows it), off the row-after-row order
    # they promise; a test holds them to it bit for bit.
    disable = module.add_metadata([llvmlite.ir.MetaDataString(module,
                                                              "llvm.loop.unroll.disable")])
    # llvmlite's add_metadata cannot build a node that lists itself; the node is made
    # directly and then pointed at itself. It prints as !N = !{ !N, !M }; llvmlite's
    # hash and == of it would recurse, so it is never passed to add_metadata or hashed.
    loop_id = llvmlite.ir.values.MDValue(module, [disable], name=str(len(module.metadata)))
    loop_id.operands = (loop_id, disable)  # a loop's ID is distinct: it refers to itself
    return loop_id


def _tile_codegen(transpose_a, column_sums=False, epilogue=None):
    # column_sums: (b, out) instead of (a, b, out), out = ones(1, len(b)) @ b as a 1-D
    # array: the one-row tile with 1 for a, whose multiply-adds are plain additions.
    # epilogue: (a, b, extra, flag, out), applied to each sum as it is stored:
    # "bias": out = a @ b + extra (a 1-D bias), then max(out, 0) where flag (ReLU);
    # "gate": out = a @ b where extra > 0 or not flag, else 0 (ReLU's derivative in
    # terms of its output extra, of out's shape). The sum is rounded first and the bias
    # added after, as the separate passes they replace did: the same bits.
    def codegen(context, builder, sig, args):
        dtype = sig.args[0].dtype
        lanes = tile_bytes(context) // np.dtype(str(dtype)).itemsize
        ops = _Vectors(context, builder, dtype, lanes)
        intp, zero = ops.intp, ops.zero
        arrays = [context.make_array(ty)(context, builder, value=val)
                  for ty, val in zip(sig.args, args) if isinstance(ty, numba.types.Array)]
        if epilogue:
            a, b, extra, out = arrays
            flag = context.cast(builder, args[3], sig.args[3], numba.types.boolean)
            # lanes kept as they are: all of them where the flag is off
            keep_all = ops.splat(builder.not_(flag), llvmlite.ir.VectorType(flag.type, lanes))
        else:
            a, b, out = [None, *arrays] if column_sums else arrays
        depth, n = cgutils.unpack_tuple(builder, b.shape, 2)
        if column_sums:
            m = intp(1)
            if context.enable_boundscheck:  # NUMBA_BOUNDSCHECK=1: out holds a row of b
                with builder.if_then(builder.icmp_signed(">", n, intp(0))):
                    cgutils.do_boundscheck(context, builder, builder.sub(n, intp(1)),
                                           cgutils.unpack_tuple(builder, out.shape, 1)[0])
        else:
            a_rows, a_cols = cgutils.unpack_tuple(builder, a.shape, 2)
            m = cgutils.unpack_tuple(builder, out.shape, 2)[0]
            # element (r, k) of op(a) sits at r * row_step + k * depth_step
            row_step, depth_step = (intp(1), a_cols) if transpose_a else (a_cols, intp(1))
            if context.enable_boundscheck:  # NUMBA_BOUNDSCHECK=1: the shapes agree
                for count, dim in ((m, a_cols if transpose_a else a_rows),
                                   (depth, a_rows if transpose_a else a_cols),
                                   (n, cgutils.unpack_tuple(builder, out.shape, 2)[1])):
                    with builder.if_then(builder.icmp_signed(">", count, intp(0))):
                        cgutils.do_boundscheck(context, builder, builder.sub(count, intp(1)),
                                               dim)
                if epilogue:  # a bias as long as a row of out; a gate of out's shape
                    extra_dims = cgutils.unpack_tuple(builder, extra.shape, sig.args[2].ndim)
                    counts = (n,) if epilogue == "bias" else (m, n)
                    for count, dim in zip(counts, extra_dims):
                        with builder.if_then(builder.icmp_signed(">", count, intp(0))):
                            cgutils.do_boundscheck(context, builder,
                                                   builder.sub(count, intp(1)), dim)

        def tile(i0, j0, rows, masks):
            # out[i0 : i0 + rows, j0 : j0 + len(masks) * lanes] = op(a)[i0 : i0 + rows] @ b
            entry = builder.basic_block
            loop = builder.append_basic_block("tile_k")
            done = builder.append_basic_block("tile_store")
            builder.cbranch(builder.icmp_signed(">", depth, intp(0)), loop, done)
            builder.position_at_end(loop)
            k = builder.phi(intp)
            k.add_incoming(intp(0), entry)
            sums = [[builder.phi(ops.vec) for _ in masks] for _ in range(rows)]
            for phi in (p for row in sums for p in row):
                phi.add_incoming(zero, entry)
            b_row = builder.add(builder.mul(k, n), j0)
            b_vecs = []
            for v, mask in enumerate(masks):
                b_vecs.append(ops.load(ops.at(b, builder.add(b_row, intp(v * lanes))), mask))
            new = []
            if column_sums:
                new.append([builder.fadd(s, b_v) for b_v, s in zip(b_vecs, sums[0])])
            else:
                a_k = builder.mul(k, depth_step)
                for r in range(rows):
                    at = builder.add(builder.mul(builder.add(i0, intp(r)), row_step), a_k)
                    a_rk = ops.splat(builder.load(builder.gep(a.data, [at], inbounds=True)))
                    new.append([ops.fma(a_rk, b_v, s) for b_v, s in zip(b_vecs, sums[r])])
            k_next = builder.add(k, intp(1))
            last = builder.basic_block
            k.add_incoming(k_next, last)
            for r in range(rows):
                for phi, value in zip(sums[r], new[r]):
                    phi.add_incoming(value, last)
            back = builder.cbranch(builder.icmp_signed("<", k_next, depth), loop, done)
            back.set_metadata("llvm.loop", _loop_not_unrolled(builder.module))
            builder.position_at_end(done)
            results = []
            for r in range(rows):
                for value in new[r]:
                    result = builder.phi(ops.vec)
                    result.add_incoming(zero, entry)
                    result.add_incoming(value, last)
                    results.append(result)
            if epilogue == "bias":
                biases = [ops.load(ops.at(extra, builder.add(j0, intp(v * lanes))), mask)
                          for v, mask in enumerate(masks)]
            for r in range(rows):
                row = builder.add(builder.mul(builder.add(i0, intp(r)), n), j0)
                for v, mask in enumerate(masks):
                    value = results[r * len(masks) + v]
                    at = builder.add(row, intp(v * lanes))
                    if epilogue == "bias":
                        value = builder.fadd(value, biases[v])
                        test = value
                    elif epilogue == "gate":
                        test = ops.load(ops.at(extra, at), mask)
                    if epilogue:
                        keep = builder.or_(keep_all, builder.fcmp_ordered(">", test, zero))
                        value = builder.select(keep, value, zero)
                    ops.store(value, ops.at(out, at), mask)

        masks_free = _has_avx512(context) if TILE_MASKED_LOOP is None else TILE_MASKED_LOOP

        def row_block(i0, rows):
            step = lanes * TILE_WIDTH[rows]
            tiled = builder.mul(builder.sdiv(n, intp(step)), intp(step))
            with cgutils.for_range_slice(builder, intp(0), tiled, intp(step)) as (j0, _):
                tile(i0, j0, rows, [None] * TILE_WIDTH[rows])
            if masks_free:
                # the columns left, a vector at a time, the last one masked: one loop, not
                # a loop of whole vectors and a masked tile after it (fewer tiles to
                # compile; a mask on a whole vector costs nothing on AVX-512)
                with cgutils.for_range_slice(builder, tiled, n, intp(lanes)) as (j0, _):
                    tile(i0, j0, rows, [ops.below(j0, n)])
                return
            # AVX2's masked loads and stores are slower than plain ones: only the last
            # vector of a row takes them
            whole = builder.mul(builder.sdiv(n, intp(lanes)), intp(lanes))
            with cgutils.for_range_slice(builder, tiled, whole, intp(lanes)) as (j0, _):
                tile(i0, j0, rows, [None])
            with builder.if_then(builder.icmp_signed("<", whole, n)):
                tile(i0, whole, rows, [ops.below(whole, n)])

        if column_sums:
            row_block(intp(0), 1)
            return context.get_dummy_value()
        blocked = builder.mul(builder.sdiv(m, intp(TILE_ROWS)), intp(TILE_ROWS))
        with cgutils.for_range_slice(builder, intp(0), blocked, intp(TILE_ROWS)) as (i0, _):
            row_block(i0, TILE_ROWS)
        # the last m % TILE_ROWS rows in tiles of 4, 2 and 1 rows (each at most once)
        start = blocked
        for rows in (4, 2, 1):
            fits = builder.icmp_signed("<=", builder.add(start, intp(rows)), m)
            with builder.if_then(fits):
                row_block(start, rows)
            start = builder.select(fits, builder.add(start, intp(rows)), start)
        return context.get_dummy_value()

    return codegen


def _tile_t_intrinsic():
    codegen = _tile_codegen(True)

    @intrinsic
    def tile_product(typingctx, a, b, out):
        arrays = (a, b, out)
        if (all(isinstance(t, numba.types.Array) and t.ndim == 2 and t.layout == "C"
                for t in arrays)
                and a.dtype == b.dtype == out.dtype and str(a.dtype) in _GEMM):
            return numba.types.void(a, b, out), codegen
        return None

    return tile_product


def _tile_epilogue_intrinsic(epilogue):
    codegen = _tile_codegen(False, epilogue=epilogue)
    extra_ndim = 1 if epilogue == "bias" else 2

    @intrinsic
    def tile_product_then(typingctx, a, b, extra, flag, out):
        arrays = (a, b, extra, out)
        if (all(isinstance(t, numba.types.Array) and t.layout == "C" for t in arrays)
                and a.ndim == b.ndim == out.ndim == 2 and extra.ndim == extra_ndim
                and a.dtype == b.dtype == extra.dtype == out.dtype
                and str(a.dtype) in _GEMM
                and isinstance(flag, (numba.types.Boolean, numba.types.Integer))):
            return numba.types.void(a, b, extra, flag, out), codegen
        return None

    return tile_product_then


def _column_sums_intrinsic():
    codegen = _tile_codegen(False, column_sums=True)

    @intrinsic
    def column_sums(typingctx, a, out):
        if (isinstance(a, numba.types.Array) and a.ndim == 2 and a.layout == "C"
                and isinstance(out, numba.types.Array) and out.ndim == 1 and out.layout == "C"
                and a.dtype == out.dtype and str(a.dtype) in _GEMM):
            return numba.types.void(a, out), codegen
        return None

    return column_sums


def column_sums_into(a, out):
    """``out = a.sum(axis=0)`` of a C-contiguous 2-D float array, in a register per
    column and row after row: the rounding of ``for i: out += a[i]`` (and NumPy's)."""
    out[:] = 0
    for row in a:
        out += row


def tile_dot_t_into(a, b, out):
    """``out = a.T @ b`` in register tiles, for C-contiguous 2-D float arrays of one dtype
    with the same number of rows (small products: no BLAS call). ``a @ b`` goes through the
    two below, which apply a bias or ReLU's derivative as the tiles store each sum (with
    ``relu`` / ``gated`` False, the plain product)."""
    np.dot(a.T, b, out)


def tile_dot_bias_into(a, b, bias, relu, out):
    """``out = a @ b + bias`` in register tiles, then ``max(out, 0)`` where ``relu``: the
    bits of the product followed by the separate bias and ReLU passes."""
    np.dot(a, b, out)
    out += bias
    if relu:
        np.copyto(out, 0, where=~(out > 0))


def tile_dot_gate_into(a, b, gate, gated, out):
    """``out = a @ b`` in register tiles, 0 where ``gated`` and not ``gate > 0``: a
    product times ReLU's derivative, written in terms of ReLU's output ``gate``."""
    np.dot(a, b, out)
    if gated:
        np.copyto(out, 0, where=~(gate > 0))


if not numba.config.DISABLE_JIT:
    tile_dot_t_into = _tile_t_intrinsic()  # noqa: F811
    tile_dot_bias_into = _tile_epilogue_intrinsic("bias")  # noqa: F811
    tile_dot_gate_into = _tile_epilogue_intrinsic("gate")  # noqa: F811
    column_sums_into = _column_sums_intrinsic()  # noqa: F811



# Adam's step on AVX-512, float64: every other vector without the divider. Exact, each
# parameter costs a square root and a divide, which share one unit that takes ~8-12
# cycles per 4 doubles: the step was ~40% of a W-small epoch's profile. AVX-512 has
# 14-bit estimates of 1/sqrt(x) and 1/x that run on the multiply-add ports; two Newton
# steps take them to float64's precision, within a few roundings, like the reciprocal
# that fastmath's arcp flag already put in place of the divide. The step alone, for
# W-small's 17k float64 parameters, all vectors on the estimates: 0.67-0.91x the time of
# the divider on a Xeon (alternating in one process, 10 or 11 of 11 pairs in each of five
# runs), about even with it on a Zen 4 EPYC. The two use different units, so the weights
# go in pairs of vectors, one on the estimates and one on the divider, which the CPU
# runs side by side: on the Zen 4, 13.3-14.2 us against 16.3-17.8 with the estimates
# alone (fresh processes in turn, 3 of 3 rounds; the divider alone 15.2-16.7); a W-small
# epoch 0.96x (minima 3.23-3.32 ms against 3.38-3.44, 5 of 5 rounds). Pairs of two
# estimated vectors and one divided were between (~14 us). float32's square root and
# divide are cheap (its estimates took 1.03x the time on the Xeon, 1.31x on the Zen 4),
# so float32 takes the divider throughout: W-large's 536k parameters 152-163 us against
# 213-220 (3 of 3).
# Special second moments (below) once had selects in every vector to fix their lanes up;
# now a vector holding one takes the divider instead, and the rest skip them: the
# float64 step 0.78-0.83x again (11 of 11 pairs, with and without a third of the
# gradients 0), a W-small epoch 0.91x (12/16), W-tiny 0.97x (16/20); accuracy as before
# (updates within 9e-17 of exact arithmetic, median; p99 3.8e-16).
_AVX512_LANES = {"float64": 8, "float32": 16}
# Per dtype, how the vectors of a group of weights take their step: True on the
# estimates, False on the divider. The biases and a partial last vector take the first.
_AVX512_GROUP = {"float64": (True, False), "float32": (False,)}
_NEWTON_STEPS = 2  # float64's: 14 -> 28 -> 53 bits


def _has_avx512(context):
    # the features numba compiles for: the host's, or those NUMBA_CPU_FEATURES names
    features = getattr(context.codegen(), "_tm_features", "") or ""
    return "+avx512f" in features.split(",")


def _adam_avx512_codegen(context, builder, sig, args):
    dtype = str(sig.args[0].dtype)
    lanes, group = _AVX512_LANES[dtype], _AVX512_GROUP[dtype]
    ops = _Vectors(context, builder, sig.args[0].dtype, lanes)
    real, vec, intp, const, fma = ops.real, ops.vec, ops.intp, ops.const, ops.fma
    if any(group):
        suffix = "pd" if dtype == "float64" else "ps"
        estimate_ty = llvmlite.ir.FunctionType(vec, [vec, vec, llvmlite.ir.IntType(lanes)])
        rsqrt = cgutils.get_or_insert_function(builder.module, estimate_ty,
                                               f"llvm.x86.avx512.rsqrt14.{suffix}.512")
        rcp = cgutils.get_or_insert_function(builder.module, estimate_ty,
                                             f"llvm.x86.avx512.rcp14.{suffix}.512")
    b1, c1, b2, c2, neg_step, eps, alpha, inv = (
        ops.splat(context.cast(builder, val, ty, sig.args[0].dtype))
        for val, ty in zip(args[5:13], sig.args[5:13]))
    theta, grad, m, v = (context.make_array(ty)(context, builder, value=val)
                         for ty, val in zip(sig.args[:4], args[:4]))
    n = cgutils.unpack_tuple(builder, theta.shape, 1)[0]
    if context.enable_boundscheck:  # NUMBA_BOUNDSCHECK=1: grad, m and v as long as theta
        for arr in (grad, m, v):
            room = builder.add(cgutils.unpack_tuple(builder, arr.shape, 1)[0], intp(1))
            cgutils.do_boundscheck(context, builder, n, room)
    n_weights = context.cast(builder, args[4], sig.args[4], numba.types.intp)
    zero, one = ops.zero, const(1.0)
    info = np.finfo(dtype)
    all_lanes = llvmlite.ir.IntType(lanes)((1 << lanes) - 1)
    # The estimates take subnormals for 0 and have no answer for inf or NaN: a vector with
    # such a v' takes the exact square root and divide instead (rare: a gradient whose
    # square overflows, a NaN). The estimates see v' clamped to v_floor, whose half (in
    # the Newton step) is still normal: a subnormal operand costs a microcode assist of
    # ~100 cycles. v' = 0 stays on them (sqrt(v') = v' * y is 0 for any y), and so does a
    # v' below v_floor unless epsilon is tiny: sqrt(v') < sqrt(v_floor) is then below half
    # an ulp of epsilon, and sqrt(v') + epsilon rounds to epsilon whatever the root.
    v_floor = const(4.0 * float(info.smallest_normal))
    eps_scalar = context.cast(builder, args[10], sig.args[10], sig.args[0].dtype)
    eps_regular = builder.and_(
        builder.fcmp_ordered(">=", eps_scalar, real(ADAM_EPS_FLOOR[dtype])),
        builder.fcmp_ordered("<", eps_scalar, real(float("inf"))))
    careful_below = builder.select(eps_regular, zero, v_floor)
    infinity = const(float("inf"))
    mask_bits = llvmlite.ir.IntType(lanes)

    def update(p, active, all_weights, estimate):
        # lanes p .. p + lanes - 1; active: the mask of those below n (a partial last
        # vector), or None for a whole one; all_weights: every lane below n_weights;
        # estimate: on the estimates (where v' allows), else on the divider
        ptrs = [ops.at(arr, p) for arr in (theta, grad, m, v)]

        def store(value, x):
            ops.store(value, x, active)

        t_old, g, m_old, v_old = (ops.load(x, active, fill)
                                  for x, fill in zip(ptrs, (zero, zero, zero, one)))
        # weights (the first n_weights parameters) take the L2 term
        if all_weights:
            g = fma(alpha, t_old, g)
        else:
            g = builder.select(ops.below(p, n_weights), fma(alpha, t_old, g), g)
        g = builder.fmul(g, inv)
        m_new = fma(b1, m_old, builder.fmul(c1, g))
        v_new = fma(b2, v_old, builder.fmul(c2, builder.fmul(g, g)))
        store(m_new, ptrs[2])
        store(v_new, ptrs[3])

        def divided():
            den = builder.fadd(builder.call(ops.sqrt, [v_new]), eps)
            store(builder.fadd(t_old, builder.fdiv(builder.fmul(neg_step, m_new), den)),
                  ptrs[0])

        if not estimate:
            divided()
            return
        careful = builder.or_(builder.fcmp_unordered("uge", v_new, infinity),
                              builder.fcmp_ordered("<", v_new, careful_below))
        any_careful = builder.icmp_unsigned("!=", builder.bitcast(careful, mask_bits),
                                            mask_bits(0))
        with builder.if_else(any_careful, likely=False) as (exact, estimated):
            with exact:
                divided()
            with estimated:
                # y -> 1/sqrt(v): y *= 1.5 - 0.5 v y^2
                v_safe = builder.select(builder.fcmp_ordered("<", v_new, v_floor),
                                        v_floor, v_new)
                y = builder.call(rsqrt, [v_safe, zero, all_lanes])
                half_v = builder.fmul(const(-0.5), v_safe)
                for _ in range(_NEWTON_STEPS):
                    y = builder.fmul(y, fma(half_v, builder.fmul(y, y), const(1.5)))
                den = builder.fadd(builder.fmul(v_new, y), eps)
                # r -> 1/den: r += r (1 - den r)
                r = builder.call(rcp, [den, zero, all_lanes])
                neg_den = builder.fsub(zero, den)
                for _ in range(_NEWTON_STEPS):
                    r = fma(r, fma(neg_den, r, one), r)
                store(fma(builder.fmul(neg_step, m_new), r, t_old), ptrs[0])

    def whole(count, size):
        return builder.mul(builder.sdiv(count, intp(size)), intp(size))

    weights_end = whole(builder.select(builder.icmp_signed("<", n_weights, n), n_weights, n),
                        lanes)
    grouped = whole(weights_end, lanes * len(group))
    end = whole(n, lanes)
    with cgutils.for_range_slice(builder, intp(0), grouped, intp(lanes * len(group))) as (p, _):
        for at, estimate in enumerate(group):
            update(builder.add(p, intp(at * lanes)), None, True, estimate)
    if len(group) > 1:
        with cgutils.for_range_slice(builder, grouped, weights_end, intp(lanes)) as (p, _):
            update(p, None, True, group[0])
    with cgutils.for_range_slice(builder, weights_end, end, intp(lanes)) as (p, _):
        update(p, None, False, group[0])
    with builder.if_then(builder.icmp_signed("<", end, n)):
        update(end, ops.below(end, n), False, group[0])
    return context.get_dummy_value()


@intrinsic
def _adam_avx512(typingctx, theta, grad, m, v, n_weights, b1, c1, b2, c2, neg_step, eps,
                 alpha, inv):
    arrays = (theta, grad, m, v)
    if (all(isinstance(t, numba.types.Array) and t.layout == "C" and t.ndim == 1
            and t.dtype == theta.dtype for t in arrays)
            and str(theta.dtype) in _AVX512_LANES
            and isinstance(n_weights, numba.types.Integer)
            and all(isinstance(t, numba.types.Float)
                    for t in (b1, c1, b2, c2, neg_step, eps, alpha, inv))):
        return numba.types.none(theta, grad, m, v, n_weights, b1, c1, b2, c2, neg_step, eps,
                                alpha, inv), _adam_avx512_codegen
    return None


def adam_avx512(theta, grad, m, v, n_weights, b1, c1, b2, c2, neg_step, eps, alpha, inv):
    """One Adam step over all of ``theta``, in place, in AVX-512 vectors (see above):
    ``g = (grad + alpha * theta) * inv`` for the first ``n_weights`` parameters and
    ``grad * inv`` for the rest, then Adam's moments and step with the bias-corrected
    ``neg_step``. Used where :data:`ADAM_AVX512`; this JIT-off twin is exact."""
    g = grad.copy()
    g[:n_weights] += alpha * theta[:n_weights]
    g *= inv
    m[:] = b1 * m + c1 * g
    v[:] = b2 * v + c2 * (g * g)
    theta += neg_step * m / (np.sqrt(v) + eps)


# Whether kernels take Adam's step through adam_avx512: the CPU numba compiles for has
# AVX-512F. A compile-time constant for the kernels; numba's cache keys entries on the CPU
# and its features, so an entry never reaches a CPU it was not compiled for.
ADAM_AVX512 = True
if not numba.config.DISABLE_JIT:
    from numba.core.registry import cpu_target

    adam_avx512 = _adam_avx512  # noqa: F811
    ADAM_AVX512 = _has_avx512(cpu_target.target_context)
