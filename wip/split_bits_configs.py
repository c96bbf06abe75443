import os, itertools, warnings, numpy as np
import fastnn
warnings.simplefilter("ignore")
rng = np.random.default_rng(0)
X = rng.standard_normal((203, 40))
yc = rng.integers(0, 4, 203); yb = rng.integers(0, 2, (203, 3)); yr = rng.standard_normal((203, 2))
def build(hidden, act, out, loss, opt):
    layers = [fastnn.Dense(h, activation=act) for h in hidden] + [fastnn.Dense(4 if out == "softmax" else (3 if out == "sigmoid" else 2), activation=out)]
    return fastnn.Sequential(layers, optimizer=opt, loss=loss, backend="numba", dtype="float64", seed=1)
worst = 0.0; n = 0; bad = set()
for hidden, act, (out, loss, y), optname, bs in itertools.product(
        [(32,), (64,), (128, 64), (96, 32, 64), (256, 128)], ["relu", "tanh", "sigmoid", "linear"],
        [("softmax", "categorical_crossentropy", yc), ("sigmoid", "binary_crossentropy", yb), ("linear", "mse", yr)],
        ["adam", "sgd", "nesterov"], [16, 50]):
    res = []
    for split in ("0", "1"):
        import fastnn._split as S; S.SPLIT_MIN = 0; S.FORCE = "split" if split == "1" else "one"
        opt = {"adam": fastnn.optimizers.Adam(learning_rate=0.01), "sgd": fastnn.optimizers.SGD(learning_rate=0.05, momentum=0.9),
               "nesterov": fastnn.optimizers.SGD(learning_rate=0.05, momentum=0.9, nesterov=True)}[optname]
        try:
            m = build(hidden, act, out, loss, opt)
        except Exception as e:
            print("build failed", hidden, act, out, optname, e); break
        h = m.fit(X, y, epochs=4, batch_size=bs)
        res.append((m.get_weights(), h.history["loss"]))
    if len(res) < 2: continue
    d = max(float(np.max(np.abs(a - b))) for a, b in zip(res[0][0], res[1][0]))
    dl = max(abs(a - b) for a, b in zip(res[0][1], res[1][1]))
    worst = max(worst, d); n += 1
    if d > 0 or dl > 0:
        print("MISMATCH", hidden, act, out, optname, bs, d, dl); bad.add(hidden)
print("configs", n, "worst weight diff", worst, "mismatched shapes", bad)
