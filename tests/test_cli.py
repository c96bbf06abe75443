"""``python -m fastnn demo`` and ``python -m fastnn bench`` run and report."""

import json
import re
import subprocess
import sys

import pytest


def run(*args):
    return subprocess.run([sys.executable, "-m", "fastnn", *args], capture_output=True,
                          text=True, timeout=600)


def test_demo_reports_accuracy_and_speed_ratio():
    result = run("demo", "--epochs", "60")
    assert result.returncode == 0, result.stderr
    accuracies = re.findall(r"(numba|numpy): test accuracy (\d\.\d+)", result.stdout)
    assert [name for name, _ in accuracies] == ["numba", "numpy"]
    assert all(float(acc) >= 0.9 for _, acc in accuracies)
    assert re.search(r"epoch\s+60/60\s+loss", result.stdout)
    assert re.search(r"numba is \d+\.\d+x faster per epoch", result.stdout)


def test_bench_prints_ratios_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    result = run("bench", "--workloads", "W-tiny", "--repeats", "2", "--no-peers",
                 "--json", str(out))
    assert result.returncode == 0, result.stderr
    assert re.search(r"W-tiny\s+numba .* \d+\.\d\dx", result.stdout)
    data = json.loads(out.read_text())
    row = data["workloads"]["W-tiny"]
    assert row["numpy"]["speedup_vs_numpy"] == pytest.approx(1.0)
    assert row["numba"]["median_s"] > 0 and data["machine"]["cores"] >= 1


@pytest.mark.parametrize("args, message", [
    (("bench", "--workloads", "W-huge"), "unknown workload 'W-huge'"),
    (("demo", "--epochs", "0"), "--epochs must be >= 1"),
])
def test_bad_cli_arguments(args, message):
    result = run(*args)
    assert result.returncode == 2
    assert message in result.stderr
