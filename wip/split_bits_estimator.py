import numpy as np, warnings, sys, fastnn._split as S
from sklearn.datasets import load_digits
from fastnn import MLPClassifier
warnings.simplefilter("ignore")
X, y = load_digits(return_X_y=True); X = X / 16
alpha = float(sys.argv[1]); dtype = sys.argv[2] if len(sys.argv) > 2 else "float64"
res = {}
for mode in ("flat", "one", "split"):
    S.SPLIT_MIN = 10**18 if mode == "flat" else 0
    S.FORCE = None if mode == "flat" else mode
    c = MLPClassifier(hidden_layer_sizes=(128, 64), batch_size=32, max_iter=8, random_state=0, alpha=alpha, dtype=dtype).fit(X, y)
    res[mode] = (np.concatenate([w.ravel() for w in c.coefs_ + c.intercepts_]), np.array(c.loss_curve_), c.n_iter_)
for a, b in (("one", "split"), ("flat", "one")):
    A, B = res[a], res[b]
    print(a, b, "weights differing", int(np.sum(A[0] != B[0])), "losses differing", int(np.sum(A[1] != B[1])), "of", A[1].size, "max rel", float(np.max(np.abs(A[1] - B[1]) / A[1])))
