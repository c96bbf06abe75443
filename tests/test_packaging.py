"""The wheel installs ``kernels/`` as ``fastnn.kernels`` and nothing named ``kernels``."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CHECK = textwrap.dedent("""
    import importlib.util, sys
    import numpy as np
    import fastnn, fastnn.kernels as K
    assert "site-packages" in K.__file__ and "{root}" not in K.__file__, K.__file__
    assert importlib.util.find_spec("kernels") is None, "a top-level 'kernels' was installed"
    out = np.empty((2, 3))
    K.dense_forward(np.ones((2, 4)), np.ones((4, 3)), np.arange(3.0), out)
    assert (out == np.array([[4.0, 5.0, 6.0]] * 2)).all(), out
    print("ok", K.__file__)
""")


@pytest.mark.slow
def test_wheel_installs_fastnn_kernels(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps",
                    "--no-build-isolation", "-q", "-w", str(wheels)], check=True, cwd=tmp_path)
    (wheel,) = wheels.glob("fastnn-*.whl")
    venv = tmp_path / "venv"
    # System site-packages provide numpy/numba/scipy/sklearn; the wheel itself goes
    # into the venv, whose site-packages come first on sys.path.
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                   check=True)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                    str(wheel)], check=True, cwd=tmp_path)
    env = {"PATH": "/usr/bin:/bin", "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")}
    result = subprocess.run([str(py), "-c", CHECK.replace("{root}", str(ROOT))], cwd=tmp_path,
                            capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert str(venv) in result.stdout
