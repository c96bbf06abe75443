"""The asv suite runs once in quick mode so it cannot rot.

``FASTNN_BENCH_QUICK=1`` skips the W-large / W-inferB params (their data set alone takes
~9 s per benchmark process) and makes the track_ ratios take one repeat per engine: the
whole quick run stays around 2-3 minutes on the 2-core machine.
"""

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_asv_quick_dry_run(tmp_path):
    subprocess.run(["asv", "machine", "--yes", "--machine", "ci"], cwd=ROOT, check=True,
                   capture_output=True)
    result = subprocess.run(
        ["asv", "run", "--python=same", "--quick", "--dry-run", "--show-stderr",
         "--machine", "ci"], cwd=ROOT, capture_output=True, text=True, timeout=900,
        env=dict(os.environ, FASTNN_BENCH_QUICK="1"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "failed" not in result.stdout.lower(), result.stdout[-3000:]
    # asv shortens long names from the left ("...infer.PredictOneRow..."): match the tail.
    for name in ("bench_train.TrainEpoch.time_fastnn", "TrainEpoch.peakmem_fit",
                 "PredictOneRow.track_speedup_vs_sklearn", "PredictOneRowCompiled.time_fastnn",
                 "PredictBatch.track_rows_per_second",
                 "CompileCold.timeraw_import_and_first_fit",
                 "CompileWarm.timeraw_import_and_first_fit",
                 "EstimatorFit.track_speedup", "MachineLimit.track_fraction_of_gemm_peak"):
        assert name in result.stdout, name
    # Quick mode skips exactly the W-large data set's workloads, with the reason.
    assert "W-large is skipped when FASTNN_BENCH_QUICK=1" in result.stdout
    assert "W-inferB is skipped when FASTNN_BENCH_QUICK=1" in result.stdout
