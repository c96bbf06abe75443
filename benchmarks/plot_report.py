"""Chart and README table from the JSON of ``python -m fastnn bench --json FILE``.

    python benchmarks/plot_report.py bench.json speed.png   # bar chart of ratios vs NumPy
    python benchmarks/plot_report.py bench.json --markdown  # the README speed table

The chart has one group of bars per workload: each engine's speed relative to fastnn's
NumPy backend measured in the same run (peers in their own process, against the NumPy
baseline of that process), on a log scale; 1x is the NumPy backend.
"""

import argparse
import json
import sys

ENGINE_ORDER = ("numba", "numba-compiled", "sklearn", "torch", "jax", "fastnn")
LABELS = {"numba": "fastnn (numba)", "numba-compiled": "fastnn compiled predictor",
          "sklearn": "scikit-learn", "torch": "PyTorch (own process)",
          "jax": "JAX (own process)", "fastnn": "fastnn (own process)"}


def ratios(report):
    """``{workload: {engine: ratio vs the NumPy backend}}`` for every timed engine."""
    out = {}
    for name, row in report["workloads"].items():
        engines = {e: s["speedup_vs_numpy"] for e, s in row.items()
                   if isinstance(s, dict) and "speedup_vs_numpy" in s and e != "numpy"}
        if engines:
            out[name] = engines
    return out


def plot(report, path):
    """Write a PNG bar chart of :func:`ratios` to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = ratios(report)
    if not data:
        raise ValueError("the report holds no workload with ratios to plot")
    names = list(data)
    engines = [e for e in ENGINE_ORDER if any(e in data[n] for n in names)]
    width = 0.8 / len(engines)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 + 1.5 * len(names)) + 2.2, 4.2))
    for i, engine in enumerate(engines):
        xs = [k + (i - (len(engines) - 1) / 2) * width for k, n in enumerate(names)
              if engine in data[n]]
        ys = [data[n][engine] for n in names if engine in data[n]]
        bars = ax.bar(xs, ys, width, label=LABELS.get(engine, engine))
        ax.bar_label(bars, labels=[f"{y:.2g}x" for y in ys], fontsize=7, padding=1)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("speed vs the NumPy backend (x, higher is faster)")
    machine = report.get("machine") or {}
    ax.set_title(f"fastnn bench {report.get('date', '')}: {_where(machine)}", fontsize=8)
    values = [v for row in data.values() for v in row.values()]
    ax.set_ylim(min(0.5, min(values) / 2), max(2.0, max(values)) * 3)
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _fmt(seconds):
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def _cell(row, engine):
    s = row.get(engine)
    if not isinstance(s, dict):
        return "-"
    if row.get("metric") == "throughput":
        return f"{row['rows'] / s['median_s'] / 1e3:.0f}k rows/s"
    return _fmt(s["median_s"]) + ("/epoch" if row.get("kind") == "train" else "")


def _where(machine):
    blas = machine.get("numpy_blas") or (machine.get("blas") or "BLAS unknown").split(" (")[0]
    return f"{machine.get('cpu', '?')}, {machine.get('cores', '?')} cores, {blas}"


def markdown(report):
    """The README speed table: workload, NumPy, fastnn, ratio, sklearn, date, machine, dtype."""
    where = _where(report.get("machine") or {})
    date = report.get("date", "")
    lines = ["| workload | NumPy backend | fastnn | ratio | scikit-learn | date | machine "
             "| dtype |", "|---|---|---|---|---|---|---|---|"]
    for name, row in report["workloads"].items():
        if row.get("kind") == "compile":
            fast = (f"warm {_fmt(row['warm']['median_s'])}, "
                    f"cold {_fmt(row['cold']['median_s'])}")
            lines.append(f"| {name} | - | {fast} | - | - | {date} | {where} | "
                         f"{row.get('dtype', '')} |")
            continue
        engine = "numba-compiled" if "numba-compiled" in row else "numba"
        fast = _cell(row, engine) + (" (compiled predictor)" if engine != "numba" else "")
        ratio = f"{row[engine]['speedup_vs_numpy']:.2f}x"
        lines.append(f"| {name} | {_cell(row, 'numpy')} | {fast} | {ratio} | "
                     f"{_cell(row, 'sklearn')} | {date} | {where} | {row.get('dtype', '')} |")
    estimators = report.get("estimators") or {}
    if estimators:
        lines += ["", "| estimators vs scikit-learn | fastnn | scikit-learn | speedup | goal |",
                  "|---|---|---|---|---|"]
        for case, row in estimators.items():
            goal = ("-" if row.get("met") is None else
                    f">= {row['goal_speedup']:g}x ({'met' if row['met'] else 'not met'})")
            lines.append(f"| {case} | {_fmt(row['fastnn']['median_s'])} | "
                         f"{_fmt(row['sklearn']['median_s'])} | {row['speedup']:.1f}x | {goal} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", help="JSON written by python -m fastnn bench --json")
    parser.add_argument("png", nargs="?", help="write the bar chart here")
    parser.add_argument("--markdown", action="store_true", help="print the README table")
    args = parser.parse_args(argv)
    if not args.png and not args.markdown:
        parser.error("give a PNG path, --markdown, or both")
    with open(args.report) as fh:
        report = json.load(fh)
    if args.png:
        plot(report, args.png)
        print(f"wrote {args.png}")
    if args.markdown:
        print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
