"""W-compile: ``import fastnn`` + the first W-tiny fit in a fresh interpreter.

asv runs each ``timeraw_`` benchmark's returned ``(stmt, setup)`` in a new process and
times ``stmt`` only. Cold: ``setup`` points ``NUMBA_CACHE_DIR`` at a new empty directory.
Warm: at a directory this class's ``setup`` filled by running the same code once.
"""

import shutil
import tempfile

from fastnn._workloads import compile_code, run_compile


class CompileCold:
    number = 1
    repeat = (2, 5, 60.0)
    warmup_time = 0
    timeout = 600

    def timeraw_import_and_first_fit(self):
        return compile_code(None)


class CompileWarm:
    number = 1
    repeat = (3, 7, 30.0)
    warmup_time = 0
    timeout = 600

    def setup(self):
        self.cache = tempfile.mkdtemp(prefix="fastnn-asv-warm-")
        run_compile(self.cache)  # a cold start that fills the cache

    def teardown(self):
        shutil.rmtree(self.cache, ignore_errors=True)

    def timeraw_import_and_first_fit(self):
        return compile_code(self.cache)
