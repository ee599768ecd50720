"""Monte Carlo coverage of the bias-corrected accuracy's interval (harness/stats/judge.py; Lee et al.
arXiv 2511.21140), at the issue's setting: q0 = 0.7, q1 = 0.9, n = 1,000 test items, 200 calibration
items of each class, 2,000 runs per true accuracy θ. Target: coverage of the 95 % interval in 94–96 %.

    python -m bench.judge [--runs 2000] [--theta 0.1 0.3 0.5 0.7 0.9] [--out FILE.json]

Pure statistics: no engine, a few seconds. The judge measurements on the engine are scripts/judge_measure.py.
"""
from __future__ import annotations

import argparse
import json
import sys

from harness.stats.judge import coverage


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=2000)
    ap.add_argument("--theta", type=float, nargs="+", default=[0.1, 0.3, 0.5, 0.7, 0.9])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    rows, ok = [], True
    print(f"{'theta':>6} {'runs':>5} {'coverage':>9} {'(95 % MC interval)':>20} {'mean width':>10}")
    for i, theta in enumerate(a.theta):
        r = coverage(theta=theta, q0=0.7, q1=0.9, n=1000, m0=200, m1=200, runs=a.runs, seed=a.seed + i)
        r["theta"] = theta
        rows.append(r)
        inside = 0.94 <= r["coverage"] <= 0.96
        ok &= inside
        print(f"{theta:>6.2f} {r['runs']:>5} {r['coverage']:>9.4f} "
              f"{'(%.3f-%.3f)' % (r['coverage_low'], r['coverage_high']):>20} {r['mean_width']:>10.4f}"
              f"{'' if inside else '  outside 94-96 %'}")
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"setting": {"q0": 0.7, "q1": 0.9, "n": 1000, "m0": 200, "m1": 200}, "rows": rows}, f, indent=1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
