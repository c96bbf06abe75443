import numpy as np, fastnn._split as S
from fastnn._workloads import load, make_model
X, y, _, _ = load("W-small")
res = {}
for mode in ("one", "split"):
    S.SPLIT_MIN = 10**18 if mode == "one" else 0
    m = make_model("W-small", "numba"); h = m.fit(X, y, epochs=3, batch_size=32)
    res[mode] = (np.concatenate([w.ravel() for w in m.get_weights()]), h.history["loss"])
a, b = res["one"][0], res["split"][0]
print("weights differing", int(np.sum(a != b)), "of", a.size, "max abs diff", float(np.max(np.abs(a - b))))
print("losses", res["one"][1], res["split"][1])
