"""The asv suite runs once in quick mode so it cannot rot."""

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
         "--machine", "ci"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "failed" not in result.stdout.lower(), result.stdout[-3000:]
    assert "bench_train.TrainEpoch.time_fastnn" in result.stdout
