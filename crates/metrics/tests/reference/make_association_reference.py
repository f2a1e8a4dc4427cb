#!/usr/bin/env python3
"""Reference values for cxr-metrics' association tests (tests/it/association.rs).

Run from anywhere:

    pip install numpy scipy statsmodels
    python3 crates/metrics/tests/reference/make_association_reference.py

It writes association_reference.json beside itself, with the package versions used
under "versions". The Rust tests read the committed JSON and never need Python.

Where each figure comes from:

- Fisher's exact test: scipy.stats.fisher_exact(table, alternative="two-sided");
  "odds_ratio" is its statistic (the sample odds ratio), null when b*c == 0.
- Cochran-Armitage trend test: statsmodels' Table(t).test_ordinal_association()
  on the 2 x k table (row 0: events, row 1: non-events; column scores 1..k or the
  given scores) gives the linear-by-linear statistic z_lbl, whose variance uses
  N - 1; the Cochran-Armitage z with the binomial variance p(1-p) is
  z_lbl * sqrt(N / (N - 1)). The script checks that against a direct numpy
  transcription of the Cochran-Armitage formula and stores z, chi2 = z^2 and the
  two-sided normal p-value.
- Logistic regression: statsmodels Logit(y, add_constant(x)).fit(); params, bse,
  Wald z, p-values and conf_int(alpha=0.05) of the slope.
- Quantiles: numpy.quantile (method="linear"); buckets: numpy.searchsorted(edges,
  x, side="left").
"""
import json
import math
import platform
from pathlib import Path

import numpy as np
import scipy
import statsmodels
import statsmodels.api as sm
from scipy.stats import fisher_exact, norm
from statsmodels.stats.contingency_tables import Table


def fisher_cases():
    tables = [
        [[3, 1], [1, 3]],
        [[8, 2], [1, 5]],
        [[0, 5], [5, 0]],
        [[12, 30], [4, 40]],
        [[1, 57], [9, 49]],
        [[20, 38], [11, 47]],
        [[5, 0], [3, 7]],
        [[0, 10], [0, 12]],
        [[100, 134], [80, 154]],
        [[2, 7], [8, 2]],
        [[7, 51], [7, 51]],
    ]
    out = []
    for t in tables:
        res = fisher_exact(np.array(t), alternative="two-sided")
        a, b = t[0]
        c, d = t[1]
        odds = None if b * c == 0 else float(res.statistic)
        out.append({"table": t, "odds_ratio": odds, "p_value": float(res.pvalue)})
    return out


def cochran_armitage_direct(events, totals, scores):
    x = np.asarray(events, float)
    n = np.asarray(totals, float)
    t = np.asarray(scores, float)
    big_n = n.sum()
    p = x.sum() / big_n
    stat = np.sum(t * (x - n * p))
    var = p * (1 - p) * (np.sum(n * t * t) - np.sum(n * t) ** 2 / big_n)
    return stat / math.sqrt(var)


def trend_cases():
    cases = [
        ([3, 5, 9, 14], [58, 59, 58, 59], None),
        ([14, 9, 5, 3], [58, 59, 58, 59], None),
        ([10, 10, 11, 9], [60, 60, 60, 60], None),
        ([1, 2, 4], [20, 25, 30], [0.0, 1.0, 3.0]),
        ([0, 0, 1, 6], [10, 10, 10, 10], None),
        ([30, 40, 45, 60, 70], [100, 100, 100, 100, 100], None),
    ]
    out = []
    for events, totals, scores in cases:
        k = len(events)
        s = list(range(1, k + 1)) if scores is None else scores
        table = np.array([events, [n - e for n, e in zip(totals, events)]], dtype=float)
        res = Table(table, shift_zeros=False).test_ordinal_association(row_scores=np.array([1.0, 0.0]), col_scores=np.array(s, float))
        big_n = float(sum(totals))
        z_lbl = float(res.zscore)
        z = z_lbl * math.sqrt(big_n / (big_n - 1))
        direct = cochran_armitage_direct(events, totals, s)
        assert abs(z - direct) < 1e-10, (events, z, direct)
        out.append({
            "events": events, "totals": totals, "scores": scores,
            "z_linear_by_linear": z_lbl, "z": z, "chi_square": z * z,
            "p_value": float(2 * norm.sf(abs(z))),
        })
    return out


def logit_case(name, x, y):
    x = np.asarray(x, float)
    y = np.asarray(y, int)
    model = sm.Logit(y, sm.add_constant(x)).fit(disp=0, method="newton", maxiter=100, tol=1e-12)
    ci = model.conf_int(alpha=0.05)
    return {
        "name": name, "x": x.tolist(), "y": y.tolist(),
        "intercept": float(model.params[0]), "coef": float(model.params[1]),
        "se_intercept": float(model.bse[0]), "se_coef": float(model.bse[1]),
        "z": float(model.tvalues[1]), "p_value": float(model.pvalues[1]),
        "ci_low": float(ci[1, 0]), "ci_high": float(ci[1, 1]),
        "log_likelihood": float(model.llf),
    }


def logit_cases(rng):
    out = []
    # 1. a real effect: standardised measure, events more likely at low values
    x = rng.normal(0, 1, 234)
    y = (rng.random(234) < 1 / (1 + np.exp(-(-1.5 - 0.8 * x)))).astype(int)
    out.append(logit_case("effect_234", x, y))
    # 2. no effect
    x = rng.normal(0, 1, 390)
    y = (rng.random(390) < 0.1).astype(int)
    out.append(logit_case("null_390", x, y))
    # 3. skewed predictor on the raw scale (like a Laplacian variance)
    x = rng.lognormal(-3, 0.7, 150)
    y = (rng.random(150) < 1 / (1 + np.exp(-(0.5 - 20 * x)))).astype(int)
    out.append(logit_case("lognormal_150", x, y))
    # 4. small sample with ties
    out.append(logit_case("small_ties", [0, 0, 1, 1, 2, 2, 3, 3, 4, 4], [0, 0, 0, 1, 0, 1, 1, 0, 1, 1]))
    return out


def quantile_cases(rng):
    out = []
    for name, v in [
        ("random_50", rng.normal(size=50)),
        ("ties", np.array([1.0, 1.0, 1.0, 2.0, 2.0, 3.0, 10.0])),
        ("single", np.array([4.0])),
        ("two", np.array([5.0, 1.0])),
    ]:
        edges = np.quantile(v, [0.25, 0.5, 0.75], method="linear")
        probes = np.concatenate([v, edges, [v.min() - 1, v.max() + 1]])
        out.append({
            "name": name, "values": v.tolist(), "edges": edges.tolist(),
            "probes": probes.tolist(),
            "buckets": np.searchsorted(edges, probes, side="left").tolist(),
        })
    return out


def dump(obj, level=0):
    """JSON with objects indented and arrays on one line (small, readable diffs)."""
    if isinstance(obj, dict):
        pad = "  " * (level + 1)
        items = [f"{pad}{json.dumps(k)}: {dump(v, level + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + "  " * level + "}"
    if isinstance(obj, list) and any(isinstance(v, dict) for v in obj):
        pad = "  " * (level + 1)
        return "[\n" + ",\n".join(pad + dump(v, level + 1) for v in obj) + "\n" + "  " * level + "]"
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)


def main():
    rng = np.random.default_rng(20260607)
    ref = {
        "generator": "crates/metrics/tests/reference/make_association_reference.py",
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "statsmodels": statsmodels.__version__,
        },
        "fisher": fisher_cases(),
        "trend": trend_cases(),
        "logistic": logit_cases(rng),
        "quantiles": quantile_cases(rng),
    }
    path = Path(__file__).with_name("association_reference.json")
    path.write_text(dump(ref) + "\n")
    print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
