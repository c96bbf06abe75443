"""One training epoch per workload, numba engine vs the NumPy baseline."""

from fastnn._workloads import executed_flops, gemm_peak

from .common import WORKLOADS, load, make_model, make_pair, median_seconds, skip_in_quick_mode


class TrainEpoch:
    """Seconds per fit of the workload's ``epochs`` epochs (W-large: one epoch of ~1-2 s)."""

    params = (["W-tiny", "W-small", "W-large"],)
    param_names = ["workload"]
    timeout = 900
    number = 1            # one fit per sample: W-large's is already seconds long
    repeat = (3, 7, 60.0)  # min, max samples, and the time after which asv stops adding
    warmup_time = 0       # setup has compiled the kernels already

    def setup(self, workload):
        skip_in_quick_mode(workload)
        spec = WORKLOADS[workload]
        self.X, self.y, self.X_test, self.y_test = load(workload)
        self.fast, self.slow = make_pair(workload)
        self.kw = dict(epochs=spec.epochs, batch_size=spec.batch_size)
        self.fast.fit(self.X, self.y, epochs=1, batch_size=spec.batch_size)  # compile here

    def time_fastnn(self, workload):
        self.fast.fit(self.X, self.y, **self.kw)

    def time_numpy(self, workload):
        self.slow.fit(self.X, self.y, **self.kw)

    def peakmem_fit(self, workload):
        # Process peak RSS: includes the data set (and, for W-large, its generation).
        self.fast.fit(self.X, self.y, **self.kw)

    def peakmem_fit_numpy(self, workload):
        self.slow.fit(self.X, self.y, **self.kw)

    def track_speedup(self, workload):
        def fast():
            self.fast.fit(self.X, self.y, **self.kw)

        def slow():
            self.slow.fit(self.X, self.y, **self.kw)

        return median_seconds(slow) / median_seconds(fast)

    track_speedup.unit = "x (numpy / fastnn)"

    def track_test_accuracy(self, workload):
        # A fresh model trained for the workload's epochs; W-tiny and W-large have no
        # test split, so theirs is training accuracy (as WORKLOADS.md defines the metric).
        model = make_model(workload, "numba")
        model.fit(self.X, self.y, **self.kw)
        X, y = (self.X, self.y) if self.X_test is None else (self.X_test, self.y_test)
        return model.evaluate(X, y)["accuracy"]

    track_test_accuracy.unit = "accuracy"


class MachineLimit:
    """W-large against the machine: executed FLOP/s of a fit, and that as a fraction of
    the gemm peak measured in the same process (issue 4's goal: >= 0.8)."""

    params = (["W-large"],)
    param_names = ["workload"]
    timeout = 900
    number = 1
    repeat = 1  # each track_ call times several fits itself

    def setup(self, workload):
        skip_in_quick_mode(workload)
        spec = WORKLOADS[workload]
        self.X, self.y, _, _ = load(workload)
        self.model = make_model(workload, "numba")
        self.kw = dict(epochs=spec.epochs, batch_size=spec.batch_size)
        self.model.fit(self.X, self.y, **self.kw)  # compile here
        self.dtype = spec.dtype

    def _gflops(self, workload):
        seconds = median_seconds(lambda: self.model.fit(self.X, self.y, **self.kw))
        return executed_flops(workload) * self.kw["epochs"] / seconds / 1e9

    def track_executed_gflops(self, workload):
        return self._gflops(workload)

    track_executed_gflops.unit = "GFLOP/s"

    def track_fraction_of_gemm_peak(self, workload):
        return self._gflops(workload) / gemm_peak(self.dtype)

    track_fraction_of_gemm_peak.unit = "fraction of gemm peak"
