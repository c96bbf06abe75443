"""Inference: W-infer1 (one-row predict_proba latency) and W-inferB (rows per second)."""

from fastnn._workloads import INFER_WORKLOADS, compiled_predictor, infer_rows, make_infer_model

from .common import median_seconds, quiet_fit, skip_in_quick_mode


class PredictOneRow:
    """W-infer1: seconds per ``predict_proba`` of one digits row (the W-small model)."""

    def setup(self):
        from fastnn._workloads import estimator_data, make_estimator

        self.x = infer_rows("W-infer1")
        self.fast = make_infer_model("W-infer1", "numba")
        self.slow = make_infer_model("W-infer1", "numpy")
        X, y = estimator_data("digits (128,64)")
        self.est = quiet_fit(make_estimator("digits (128,64)", "fastnn"), X, y)
        self.sk = quiet_fit(make_estimator("digits (128,64)", "sklearn"), X, y)
        for fn in (self.fast.predict_proba, self.est.predict_proba):
            fn(self.x)  # compile here

    def time_fastnn(self):
        self.fast.predict_proba(self.x)

    def time_numpy(self):
        self.slow.predict_proba(self.x)

    def time_fastnn_estimator(self):
        self.est.predict_proba(self.x)

    def time_sklearn_estimator(self):
        self.sk.predict_proba(self.x)

    def track_speedup(self):
        return (median_seconds(lambda: self._calls(self.slow.predict_proba))
                / median_seconds(lambda: self._calls(self.fast.predict_proba)))

    track_speedup.unit = "x (numpy / fastnn)"

    def track_speedup_vs_sklearn(self):
        # Issue 3's goal: >= 10x lower latency than scikit-learn's estimator.
        return (median_seconds(lambda: self._calls(self.sk.predict_proba))
                / median_seconds(lambda: self._calls(self.est.predict_proba)))

    track_speedup_vs_sklearn.unit = "x (sklearn / fastnn estimator)"

    def _calls(self, fn, n=200):
        for _ in range(n):
            fn(self.x)


class PredictOneRowCompiled:
    """W-infer1 through ``model.compile_predictor()`` (issue 4's goal: <= 2 us)."""

    def setup(self):
        self.x = infer_rows("W-infer1")
        self.fast = make_infer_model("W-infer1", "numba")
        self.slow = make_infer_model("W-infer1", "numpy")
        self.predict = compiled_predictor(self.fast)
        if self.predict is None:
            raise NotImplementedError("Sequential has no compile_predictor()")
        self.predict_numpy = compiled_predictor(self.slow)
        self.predict(self.x)

    def time_fastnn(self):
        self.predict(self.x)

    def time_numpy(self):
        self.predict_numpy(self.x)


class PredictBatch:
    """W-inferB: ``predict_proba`` of 10000 rows through the W-large float32 network."""

    timeout = 600
    rows = INFER_WORKLOADS["W-inferB"].rows

    def setup(self):
        skip_in_quick_mode("W-inferB")
        self.x = infer_rows("W-inferB")
        self.fast = make_infer_model("W-inferB", "numba")
        self.slow = make_infer_model("W-inferB", "numpy")
        self.fast.predict_proba(self.x)  # compile here

    def time_fastnn(self):
        self.fast.predict_proba(self.x)

    def time_numpy(self):
        self.slow.predict_proba(self.x)

    def track_rows_per_second(self):
        return self.rows / median_seconds(lambda: self.fast.predict_proba(self.x))

    track_rows_per_second.unit = "rows/s (fastnn)"

    def track_rows_per_second_numpy(self):
        return self.rows / median_seconds(lambda: self.slow.predict_proba(self.x))

    track_rows_per_second_numpy.unit = "rows/s (numpy)"

    def track_speedup(self):
        return (median_seconds(lambda: self.slow.predict_proba(self.x))
                / median_seconds(lambda: self.fast.predict_proba(self.x)))

    track_speedup.unit = "x (numpy / fastnn)"
