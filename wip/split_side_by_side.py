import time, statistics, numpy as np
import fastnn._split as S
from fastnn._workloads import load, make_model
X, y, _, _ = load("W-small")
models = {b: make_model("W-small", b) for b in ("numpy", "numba")}
for mm in models.values(): mm.fit(X, y, epochs=1, batch_size=32)
for f in ("split", "one", None): S.FORCE = f; models["numba"].fit(X, y, epochs=2, batch_size=32)
t = {"numpy": [], "one": [], "split": [], "adaptive": []}
for r in range(6):
    for mode in t:
        S.FORCE = {"one": "one", "split": "split"}.get(mode)
        m = models["numpy" if mode == "numpy" else "numba"]
        s = time.perf_counter(); m.fit(X, y, epochs=20, batch_size=32); t[mode].append((time.perf_counter() - s) / 20)
S.FORCE = None
med = {k: statistics.median(v) for k, v in t.items()}
for k, v in t.items():
    print(f"{k:8s} median {med[k]*1e3:.3f} ms/epoch  min {min(v)*1e3:.3f} max {max(v)*1e3:.3f}  NumPy/this {med['numpy']/med[k]:.2f}x")
