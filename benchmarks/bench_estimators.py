"""fastnn.MLPClassifier vs sklearn.neural_network.MLPClassifier fit time (issue 3).

Cases (``fastnn._workloads.ESTIMATOR_CASES``): ``MLPClassifier(hidden_layer_sizes=(128,
64), batch_size=32, max_iter=20)`` on digits (goal >= 7x) and the note's iris network
(hidden (16, 16), batch 16, lr 0.01, max_iter 200, standardized iris; goal >= 50x), and a
sparse text-like case (4000 x 20000 CSR, 50 values a row, hidden (64,), 3 epochs; no goal)
that tracks the CSR kernels. Both libraries get ``tol=0`` and ``n_iter_no_change >
max_iter``, so both run every epoch.
"""

from fastnn._workloads import ESTIMATOR_CASES, estimator_data, make_estimator

from .common import median_seconds, quiet_fit


class EstimatorFit:
    params = (list(ESTIMATOR_CASES),)
    param_names = ["case"]
    timeout = 600
    number = 1
    repeat = (3, 7, 30.0)

    def setup(self, case):
        self.X, self.y = estimator_data(case)
        quiet_fit(make_estimator(case, "fastnn"), self.X, self.y)  # compile here

    def time_fastnn(self, case):
        quiet_fit(make_estimator(case, "fastnn"), self.X, self.y)

    def time_sklearn(self, case):
        quiet_fit(make_estimator(case, "sklearn"), self.X, self.y)

    def track_speedup(self, case):
        def fit(library):
            return lambda: quiet_fit(make_estimator(case, library), self.X, self.y)

        return median_seconds(fit("sklearn")) / median_seconds(fit("fastnn"))

    track_speedup.unit = "x (sklearn / fastnn)"

    def track_n_iter(self, case):
        # Both must run max_iter epochs, or the fit-time ratio compares different work.
        est = quiet_fit(make_estimator(case, "fastnn"), self.X, self.y)
        return est.n_iter_

    track_n_iter.unit = "epochs"
