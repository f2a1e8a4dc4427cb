#!/usr/bin/env python3
"""Reference values for cxr-metrics' bias-corrected temperature scaling
(`fit_bias_corrected_scaling`, tests/it/scaling.rs).

Run from anywhere:

    pip install scikit-learn   # pulls numpy, scipy
    python3 crates/metrics/tests/reference/make_scaling_reference.py

It writes scaling_reference.json beside itself, with the package versions used
under "versions". The Rust tests read the committed JSON and never need Python.

Where each figure comes from: scikit-learn's unpenalised logistic regression of the
labels on the logits with an intercept, `LogisticRegression(C=np.inf,
solver="newton-cholesky", tol=1e-14)` (C=inf is `penalty=None` without the 1.8
deprecation warning; Newton-Cholesky is an exact Newton solver, so the
coefficients are the MLE to about rounding). `scale` is `coef_[0, 0]`, `bias` is
`intercept_[0]`. As a check the script also fits each case with a plain numpy
Newton-Raphson and asserts the two agree to 1e-9 relative, and that the fitted
probabilities average the labels (the intercept's score equation).

Inputs are rounded to 12 significant digits *before* anything is computed, so the
stored logits are exactly the doubles the reference used.
"""
import json
import platform
from pathlib import Path

import numpy as np
import sklearn
from sklearn.linear_model import LogisticRegression

AGREE = 1e-9


def rounded(x):
    """12 significant digits: short in JSON, and what both sides compute on."""
    return np.array([float(f"{v:.12g}") for v in x])


def mixture(rng, n, prevalence, pos, neg):
    """n labelled logits: Bernoulli(prevalence) labels, N(*pos) / N(*neg) logits."""
    y = (rng.random(n) < prevalence).astype(np.int64)
    z = np.where(y == 1, rng.normal(pos[0], pos[1], n), rng.normal(neg[0], neg[1], n))
    return rounded(z), y


def sklearn_fit(z, y):
    lr = LogisticRegression(C=np.inf, solver="newton-cholesky", tol=1e-14, max_iter=1000)
    lr.fit(z[:, None], y)
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])


def numpy_newton(z, y):
    """Independent check: Newton-Raphson on (bias, scale), to convergence."""
    x = np.column_stack([np.ones_like(z), z])
    beta = np.array([np.log(y.mean() / (1 - y.mean())), 0.0])
    for _ in range(100):
        p = 1 / (1 + np.exp(-(x @ beta)))
        g = x.T @ (y - p)
        h = (x * (p * (1 - p))[:, None]).T @ x
        step = np.linalg.solve(h, g)
        beta = beta + step
        if np.max(np.abs(step)) < 1e-15 * (1 + np.max(np.abs(beta))):
            break
    return float(beta[1]), float(beta[0])


def cases(rng):
    specs = []
    # a fair classifier, balanced, 1000 logits
    specs.append(("mixture_1000", *mixture(rng, 1000, 0.5, (1.2, 1.1), (-1.2, 1.1))))
    # the validation situation: 524 logits, 74 % positives, unequal spreads and an
    # offset (what plain temperature scaling leaves biased)
    specs.append(("imbalanced_074_524", *mixture(rng, 524, 0.74, (4.0, 2.5), (-0.5, 1.6))))
    # heavy overlap: a weak model, a slope near 0.25
    specs.append(("overlap_2000", *mixture(rng, 2000, 0.4, (0.25, 1.0), (0.0, 1.0))))
    # overconfident logits far from 0, 300 items
    specs.append(("overconfident_300", *mixture(rng, 300, 0.3, (14.0, 6.0), (2.0, 6.0))))
    # heavy ties: logits on a coarse grid
    z, y = mixture(rng, 700, 0.6, (0.8, 1.0), (-0.4, 1.0))
    specs.append(("ties_700", rounded(np.round(z * 2) / 2), y))
    out = []
    for name, z, y in specs:
        scale, bias = sklearn_fit(z, y)
        check_scale, check_bias = numpy_newton(z, y)
        assert abs(scale - check_scale) <= AGREE * abs(scale), (name, scale, check_scale)
        assert abs(bias - check_bias) <= AGREE * max(abs(bias), 1e-3), (name, bias, check_bias)
        p = 1 / (1 + np.exp(-(scale * z + bias)))
        assert abs(p.mean() - y.mean()) < 1e-9, (name, p.mean(), y.mean())
        out.append({
            "name": name, "scale": scale, "bias": bias,
            "prevalence": float(y.mean()),
            "logits": z.tolist(), "labels": y.tolist(),
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
    rng = np.random.default_rng(20261205)
    ref = {
        "generator": "crates/metrics/tests/reference/make_scaling_reference.py",
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scikit-learn": sklearn.__version__,
        },
        "cases": cases(rng),
    }
    path = Path(__file__).with_name("scaling_reference.json")
    path.write_text(dump(ref) + "\n")
    print(f"wrote {path} ({path.stat().st_size} bytes)")
    for c in ref["cases"]:
        print(f"{c['name']}: scale {c['scale']!r}, bias {c['bias']!r} "
              f"(n {len(c['labels'])}, prevalence {c['prevalence']:.3f})")


if __name__ == "__main__":
    main()
