#!/usr/bin/env python3
"""Reference values for cxr-metrics' label-shift tests (tests/it/prior.rs).

Run from anywhere:

    pip install abstention   # pulls numpy, scipy, scikit-learn
    python3 crates/metrics/tests/reference/make_prior_reference.py

It writes prior_reference.json beside itself, with the package versions used under
"versions". The Rust tests read the committed JSON and never need Python.

Where each figure comes from:

- EM prevalence: `abstention.label_shift.EMImbalanceAdapter` (Alexandari, Kundaje
  & Shrikumar 2020, "Maximum likelihood with bias-corrected calibration is
  hard-to-beat at label shift adaptation", ICML), which implements the EM of
  Saerens, Latinne & Decaestecker 2002. It is run with no calibrator and with
  `estimate_priors_from_valid_labels=True` on one-hot "validation" labels with
  exactly k positives of 100, so its source prior is k / 100 = train_prevalence
  (the same double as the literal). Its stopping rule: continue while any class's
  |change in frequency| > tolerance (cxr stops once |change| < tolerance);
  both sides run with the tight TOLERANCE below, so the estimates agree to far
  better than the tests' relative tolerance. The estimate is the adapter's
  multiplier for class 1 times the source prior; "iterations" counts its
  verbose "next it" lines (for information: not compared).
- Adapted probabilities: `abstention.label_shift.PriorShiftAdapterFunc` with
  multipliers [(1 - to) / (1 - from), to / from] applied to 1-D probabilities
  (Bayes' rule for a new prior, Saerens et al. 2002 eq. 2.4).

Inputs are rounded to 12 significant digits *before* anything is computed, so the
stored probabilities are exactly the doubles the reference used.
"""
import contextlib
import io
import json
import platform
from importlib.metadata import version
from pathlib import Path

import numpy as np
from abstention.label_shift import EMImbalanceAdapter, PriorShiftAdapterFunc

TOLERANCE = 1e-14
MAX_ITERATIONS = 100_000


def rounded(p):
    """12 significant digits: short in JSON, and what both sides compute on."""
    return np.array([float(f"{x:.12g}") for x in p])


def em_reference(probs, k_of_100):
    """EMImbalanceAdapter's estimate for source prior k / 100."""
    n_valid = 100
    labels = np.zeros((n_valid, 2))
    labels[:k_of_100, 1] = 1.0
    labels[k_of_100:, 0] = 1.0
    adapter = EMImbalanceAdapter(
        estimate_priors_from_valid_labels=True,
        verbose=True,
        tolerance=TOLERANCE,
        max_iterations=MAX_ITERATIONS,
    )
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        func = adapter(
            tofit_initial_posterior_probs=probs,
            valid_posterior_probs=labels,
            valid_labels=labels,
        )
    train = float(np.mean(labels, axis=0)[1])
    assert train == k_of_100 / 100
    iterations = sum(line.startswith("next it") for line in log.getvalue().splitlines())
    assert iterations < MAX_ITERATIONS, "abstention's EM did not converge"
    estimate = float(func.multipliers[1] * train)
    return train, estimate, iterations


def beta_mix(rng, n, prevalence, pos, neg):
    """n values: a `prevalence` share from Beta(*pos), the rest from Beta(*neg)."""
    n_pos = int(round(n * prevalence))
    p = np.concatenate([rng.beta(*pos, n_pos), rng.beta(*neg, n - n_pos)])
    rng.shuffle(p)
    return p


def calibrated(rng, n, prevalence, train_prevalence, separation):
    """Labels with `prevalence`; scores N(+-separation/2, 1); P(y=1|s) exact for
    prior `train_prevalence`."""
    y = rng.random(n) < prevalence
    s = rng.normal(np.where(y, separation / 2, -separation / 2), 1.0)
    logit = np.log(train_prevalence / (1 - train_prevalence)) + separation * s
    return 1 / (1 + np.exp(-logit))


def em_cases(rng):
    specs = []
    # a reasonable classifier, 25 % positives, trained at 50 %
    specs.append(("beta_mix_1000", beta_mix(rng, 1000, 0.25, (6, 2), (2, 6)), 50))
    # more positives than in training: calibrated at 20 %, 60 % positives
    specs.append(("calibrated_2000_up", calibrated(rng, 2000, 0.6, 0.2, 1.5), 20))
    # a weak classifier: slow (near-1 rate) EM
    specs.append(("weak_200", beta_mix(rng, 200, 0.4, (3, 2.5), (2.5, 3)), 50))
    # confident model: mass at and near 0 and 1, exact 0 and 1 included
    p = beta_mix(rng, 600, 0.35, (0.15, 0.05), (0.05, 0.15))
    p[:12] = [0.0, 1.0, 0.0, 1.0, 1e-15, 1 - 1e-12, 1e-300, 5e-324, 0.0, 1.0, 1e-9, 1 - 1e-9]
    rng.shuffle(p)
    specs.append(("extremes_600", p, 74))
    # the site-check situation: calibrated at the Kermany prior 0.74, new site at 0.3
    specs.append(("calibrated_1500", calibrated(rng, 1500, 0.3, 0.74, 2.0), 74))
    # small training prevalence, tiny set
    specs.append(("tiny_low_train_7", np.array([0.01, 0.02, 0.3, 0.05, 0.9, 0.04, 0.12]), 5))
    out = []
    for name, p, k in specs:
        p = rounded(p)
        assert np.all((p >= 0) & (p <= 1))
        train, estimate, iterations = em_reference(p, k)
        out.append({
            "name": name, "train_prevalence": train, "estimate": estimate,
            "abstention_iterations": iterations, "mean_prob": float(np.mean(p)),
            "probs": p.tolist(),
        })
    return out


def adapt_cases():
    probs = rounded([0.0, 1e-12, 0.01, 0.2, 0.5, 0.8, 0.99, 1 - 1e-12, 1.0, 0.123456789])
    out = []
    for from_prior, to_prior in [(0.5, 0.2), (0.74, 0.3), (0.1, 0.9), (0.3, 0.3), (0.27, 0.5)]:
        func = PriorShiftAdapterFunc(
            multipliers=np.array([(1 - to_prior) / (1 - from_prior), to_prior / from_prior]))
        adapted = func(probs)
        assert adapted.shape == probs.shape
        out.append({
            "from_prior": from_prior, "to_prior": to_prior,
            "probs": probs.tolist(), "adapted": [float(a) for a in adapted],
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
    rng = np.random.default_rng(20260619)
    ref = {
        "generator": "crates/metrics/tests/reference/make_prior_reference.py",
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "abstention": version("abstention"),
        },
        "tolerance": TOLERANCE,
        "max_iterations": MAX_ITERATIONS,
        "em": em_cases(rng),
        "adapt": adapt_cases(),
    }
    path = Path(__file__).with_name("prior_reference.json")
    path.write_text(dump(ref) + "\n")
    print(f"wrote {path} ({path.stat().st_size} bytes)")
    for c in ref["em"]:
        print(f"{c['name']}: train {c['train_prevalence']} -> {c['estimate']!r} "
              f"({c['abstention_iterations']} iterations, mean p {c['mean_prob']:.4f})")


if __name__ == "__main__":
    main()
