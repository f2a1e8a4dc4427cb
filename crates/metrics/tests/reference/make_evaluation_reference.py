#!/usr/bin/env python3
"""Reference values for cxr-metrics' evaluation statistics (tests/it/evaluation.rs).

Run from anywhere:

    pip install numpy scipy statsmodels
    python3 crates/metrics/tests/reference/make_evaluation_reference.py

It writes evaluation_reference.json beside itself, with the package versions used
under "versions". The Rust tests read the committed JSON and never need Python.

Where each figure comes from:

- Wilson interval: statsmodels.stats.proportion.proportion_confint(count, nobs,
  alpha=1 - confidence, method="wilson"), with the edge cases count = 0 and
  count = nobs.
- McNemar: statsmodels.stats.contingency_tables.mcnemar([[0, b], [c, 0]],
  exact=True) for the exact p-value and exact=False, correction=True for the
  chi-square statistic and its p-value. For b = c = 0 statsmodels' chi-square form
  divides by zero (statistic inf, p 0); that case stores only the exact p and the
  statsmodels chi-square output as strings, for the record.
- AUC heterogeneity: statsmodels.stats.meta_analysis.combine_effects(auc, var):
  Q is res.q and its p-value res.test_homogeneity().pvalue (= chi2.sf(q, k - 1)).
- Proportion heterogeneity: scipy.stats.chi2_contingency(table, correction=False)
  on the k x 2 table of (successes, failures). A table with a zero column makes
  scipy raise; that case stores scipy's message.
- chi2_sf: scipy.stats.chi2.sf(x, df) over a grid of df (1 to 100000) and x: small
  and moderate x, x around df, and x = chi2.isf(10^-e, df) for tails down to
  10^-100 (x is stored as the double scipy returned, sf as scipy evaluates it there).
  Each row is [df, x, scipy sf, mpmath sf]: mpmath's gammainc(df/2, x/2, inf,
  regularized=True) at 40 digits, because scipy's own value is off by up to ~1e-12
  relative in far tails at large df.
"""
import json
import platform
from pathlib import Path

import mpmath
import numpy as np
import scipy
import statsmodels
from scipy.stats import chi2, chi2_contingency
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.meta_analysis import combine_effects
from statsmodels.stats.proportion import proportion_confint


def wilson_cases():
    cases = [
        (0, 1, 0.95), (1, 1, 0.95), (0, 10, 0.95), (10, 10, 0.95),
        (3, 10, 0.95), (57, 234, 0.95), (390, 624, 0.95), (117, 234, 0.95),
        (1, 2, 0.5), (5, 20, 0.9), (5, 20, 0.99), (5, 20, 0.999999),
        (0, 58, 0.99), (58, 58, 0.9), (1, 1000000, 0.95), (999999, 1000000, 0.95),
        (12, 17, 0.8), (4, 9, 1e-6),
    ]
    out = []
    for count, nobs, confidence in cases:
        low, high = proportion_confint(count, nobs, alpha=1 - confidence, method="wilson")
        out.append({
            "successes": count, "n": nobs, "confidence": confidence,
            "estimate": count / nobs, "low": float(low), "high": float(high),
        })
    return out


def mcnemar_cases():
    pairs = [
        (0, 0), (0, 1), (1, 0), (5, 5), (3, 12), (12, 3), (10, 14), (10, 15),
        (0, 24), (0, 30), (40, 20), (200, 150), (1000, 1100), (500, 2000),
        (2, 9), (7, 8),
    ]
    out = []
    for b, c in pairs:
        table = [[0, b], [c, 0]]
        ex = mcnemar(table, exact=True)
        case = {"b": b, "c": c, "p_exact": float(ex.pvalue)}
        if b + c == 0:
            with np.errstate(divide="ignore"):
                chi = mcnemar(table, exact=False, correction=True)
            case["statsmodels_chi2"] = {"statistic": str(float(chi.statistic)), "pvalue": str(float(chi.pvalue))}
        else:
            chi = mcnemar(table, exact=False, correction=True)
            case["statistic"] = float(chi.statistic)
            case["p_chi2"] = float(chi.pvalue)
        out.append(case)
    return out


def auc_heterogeneity_cases():
    sets = [
        [(0.91, 0.0004), (0.84, 0.0009)],
        [(0.80, 0.001), (0.85, 0.002), (0.90, 0.0015)],
        [(0.93, 0.00012), (0.71, 0.0021), (0.88, 0.0007), (0.95, 0.0003), (0.62, 0.004)],
        [(0.87, 0.001), (0.87, 0.003), (0.87, 0.0005)],
        [(0.999, 1e-6), (0.5, 0.01), (0.7, 0.005)],
    ]
    out = []
    for groups in sets:
        eff = np.array([g[0] for g in groups])
        var = np.array([g[1] for g in groups])
        res = combine_effects(eff, var)
        test = res.test_homogeneity()
        assert test.df == len(groups) - 1
        out.append({
            "estimates": [list(g) for g in groups],
            "statistic": float(res.q), "df": int(test.df), "p_value": float(test.pvalue),
        })
    return out


def proportion_heterogeneity_cases():
    sets = [
        [(45, 58), (38, 58)],
        [(10, 20), (12, 25), (30, 40)],
        [(0, 15), (3, 20), (9, 25), (20, 30)],
        [(15, 15), (18, 20), (19, 25)],
        [(117, 234), (120, 234), (118, 234)],
        [(390, 624), (100, 300), (5, 50), (1, 1), (700, 1000)],
        [(0, 10), (0, 12)],
        [(10, 10), (12, 12), (1, 1)],
    ]
    out = []
    for groups in sets:
        table = np.array([[s, n - s] for s, n in groups])
        case = {"counts": [list(g) for g in groups]}
        try:
            res = chi2_contingency(table, correction=False)
            case.update(statistic=float(res.statistic), df=int(res.dof), p_value=float(res.pvalue))
        except ValueError as e:
            case["scipy_error"] = str(e)
        out.append(case)
    return out


def chi2_grid():
    out = []
    mpmath.mp.dps = 40
    for df in [1, 2, 3, 4, 5, 7, 10, 25, 30, 100, 1000, 10000, 100000]:
        xs = {1e-10, 1e-3, 0.1, 0.5, 1.0, 2.0, 5.0, 20.0}
        xs |= {df * f for f in (0.5, 0.9, 0.99, 1.0, 1.01, 1.1, 1.5, 2.0)}
        xs |= {float(df - 1), float(df + 1), float(df + 2)}
        xs |= {float(chi2.isf(10.0 ** -e, df)) for e in (1, 3, 5, 10, 20, 50, 100)}
        for x in sorted(v for v in xs if v > 0):
            sf = float(chi2.sf(x, df))
            if sf > 1e-300:
                exact = mpmath.gammainc(mpmath.mpf(df) / 2, mpmath.mpf(x) / 2, mpmath.inf, regularized=True)
                out.append([df, x, sf, float(exact)])
    return out


def dump(obj, level=0):
    """JSON with objects indented and arrays on one line (small, readable diffs)."""
    if isinstance(obj, dict):
        pad = "  " * (level + 1)
        items = [f"{pad}{json.dumps(k)}: {dump(v, level + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + "  " * level + "}"
    if isinstance(obj, list) and any(isinstance(v, (dict, list)) for v in obj):
        pad = "  " * (level + 1)
        return "[\n" + ",\n".join(pad + dump(v, level + 1) for v in obj) + "\n" + "  " * level + "]"
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)


def main():
    ref = {
        "generator": "crates/metrics/tests/reference/make_evaluation_reference.py",
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "statsmodels": statsmodels.__version__,
            "mpmath": mpmath.__version__,
        },
        "wilson": wilson_cases(),
        "mcnemar": mcnemar_cases(),
        "auc_heterogeneity": auc_heterogeneity_cases(),
        "proportion_heterogeneity": proportion_heterogeneity_cases(),
        "chi2_sf": chi2_grid(),
    }
    path = Path(__file__).with_name("evaluation_reference.json")
    path.write_text(dump(ref) + "\n")
    print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
