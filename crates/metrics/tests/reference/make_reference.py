#!/usr/bin/env python3
"""Reference values for cxr-metrics' integration tests (tests/it/).

Run from anywhere:

    pip install numpy scipy scikit-learn
    python3 crates/metrics/tests/reference/make_reference.py

It writes sklearn_reference.json beside itself; the package versions used are
recorded inside the JSON under "versions". The Rust tests read the committed JSON
and never need Python. They compare every value with an absolute tolerance of
1e-12 (DeLong's z and p-value: 1e-9 relative, as they pass through a square root
and the normal tail).

Where each figure comes from:

- scikit-learn itself: roc_curve (drop_intermediate False and True),
  precision_recall_curve, roc_auc_score, average_precision_score, confusion_matrix,
  accuracy/precision/recall/f1 (zero_division=0), specificity (recall of class 0),
  brier_score_loss, and log_loss. cxr's log_loss clips p to [1e-15, 1 - 1e-15] as
  scikit-learn < 1.5 did (its old default eps=1e-15); current scikit-learn clips at
  machine epsilon, so the reference feeds it np.clip(p, 1e-15, 1 - 1e-15), after
  which its own clipping has no effect and the two definitions coincide.
- Calibration: torchmetrics is not installed here (it needs torch). ECE of
  P(positive) is computed by `torchmetrics_ce` below, an explicit numpy
  transcription of torchmetrics' `_binning_bucketize` + `_ce_compute`
  (functional/classification/calibration_error.py, torchmetrics 1.x):
  indices = bucketize(conf, boundaries, right=True) - 1 (numpy: searchsorted
  side="right"), n_bins + 1 slots so conf == 1 has its own, per-slot means with
  nan -> 0, weights count / total, ECE = sum |acc - conf| * weight ("l1"),
  MCE = max |acc - conf| ("max"). One deliberate difference: the boundaries are
  k / n_bins (correctly rounded), where torch.linspace may be one ulp off on some
  edges, differently on different CPUs. Top-label ECE/MCE (Guo et al. 2017) use the
  same binning on confidence max(p, 1 - p) against correctness of the call p >= 0.5.
- DeLong: `fast_delong` follows the published reference implementation of Sun & Xu
  (2014), yandexdataschool/roc_comparison (compare_auc_delong_xu.py: compute_midrank,
  fastDeLong, delong_roc_variance, delong_roc_test), with two changes: the sample
  (co)variance of a class with a single member is taken as 0 (numpy's cov gives NaN
  there), and the test's p-value is returned as p, not log10(p). As a check the
  script also computes DeLong's variance from its O(m*n) pairwise definition and
  asserts agreement. CI = auc -/+ norm.ppf(0.975) * sqrt(var), clipped to [0, 1].
"""
import json
import math
import platform
from pathlib import Path

import numpy as np
import scipy
import sklearn
from scipy.stats import norm
from sklearn import metrics as M

N_BINS = 15
LOG_LOSS_EPS = 1e-15


# ---------------------------------------------------------------- DeLong (Sun & Xu)
def compute_midrank(x):
    """Midranks (1-based, ties averaged), as roc_comparison's compute_midrank."""
    order = np.argsort(x)
    z = x[order]
    n = len(x)
    t = np.zeros(n, dtype=float)
    i = 0
    while i < n:
        j = i
        while j < n and z[j] == z[i]:
            j += 1
        t[i:j] = 0.5 * (i + j - 1)
        i = j
    out = np.empty(n, dtype=float)
    out[order] = t + 1
    return out


def cov_rows(a):
    """np.cov over rows (ddof=1), 0 when there is a single observation."""
    k, n = a.shape
    if n < 2:
        return np.zeros((k, k))
    return np.atleast_2d(np.cov(a))


def fast_delong(preds_sorted, m):
    """roc_comparison's fastDeLong: preds_sorted is [k, m + n], positives first."""
    n = preds_sorted.shape[1] - m
    pos = preds_sorted[:, :m]
    neg = preds_sorted[:, m:]
    k = preds_sorted.shape[0]
    tx = np.empty([k, m])
    ty = np.empty([k, n])
    tz = np.empty([k, m + n])
    for r in range(k):
        tx[r, :] = compute_midrank(pos[r, :])
        ty[r, :] = compute_midrank(neg[r, :])
        tz[r, :] = compute_midrank(preds_sorted[r, :])
    aucs = tz[:, :m].sum(axis=1) / m / n - float(m + 1.0) / 2.0 / n
    v01 = (tz[:, :m] - tx[:, :]) / n
    v10 = 1.0 - (tz[:, m:] - ty[:, :]) / m
    sx = cov_rows(v01)
    sy = cov_rows(v10)
    return aucs, sx / m + sy / n


def ground_truth_statistics(labels):
    assert np.array_equal(np.unique(labels), [0, 1])
    order = (-labels).argsort(kind="stable")
    return order, int(labels.sum())


def delong_roc_variance(labels, scores):
    order, m = ground_truth_statistics(labels)
    aucs, cov = fast_delong(scores[np.newaxis, order], m)
    return float(aucs[0]), float(cov[0, 0])


def delong_roc_test(labels, a, b):
    order, m = ground_truth_statistics(labels)
    aucs, cov = fast_delong(np.vstack((a, b))[:, order], m)
    ell = np.array([[1, -1]])
    var = float((ell @ cov @ ell.T)[0, 0])
    z = float((aucs[0] - aucs[1]) / math.sqrt(var))
    p = float(2 * norm.sf(abs(z)))
    return {"auc_a": float(aucs[0]), "auc_b": float(aucs[1]), "variance": var, "z": z, "p_value": p}


def delong_pairwise(labels, scores):
    """DeLong et al. (1988) from explicit pairs: psi = 1, 1/2, 0."""
    pos = scores[labels == 1]
    neg = scores[labels == 0]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10 = psi.mean(axis=1)
    v01 = psi.mean(axis=0)
    s10 = np.var(v10, ddof=1) if len(pos) > 1 else 0.0
    s01 = np.var(v01, ddof=1) if len(neg) > 1 else 0.0
    return psi.mean(), s10 / len(pos) + s01 / len(neg)


# ---------------------------------------------------------------- calibration
def torchmetrics_ce(confidences, accuracies, n_bins):
    """torchmetrics' _binning_bucketize + _ce_compute, in numpy (see module doc)."""
    boundaries = np.arange(n_bins + 1) / n_bins
    idx = np.searchsorted(boundaries, confidences, side="right") - 1
    slots = len(boundaries)
    count = np.bincount(idx, minlength=slots).astype(float)
    conf_sum = np.bincount(idx, weights=confidences, minlength=slots)
    acc_sum = np.bincount(idx, weights=accuracies.astype(float), minlength=slots)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf_bin = np.nan_to_num(conf_sum / count)
        acc_bin = np.nan_to_num(acc_sum / count)
    prop = count / count.sum()
    gaps = np.abs(acc_bin - conf_bin)
    return {
        "ece": float(np.sum(gaps * prop)),
        "mce": float(np.max(gaps)),
        "count": count.astype(int).tolist(),
        "confidence": conf_bin.tolist(),
        "accuracy": acc_bin.tolist(),
    }


def top_label(labels, probs):
    conf = np.maximum(probs, 1 - probs)
    correct = ((probs >= 0.5).astype(int) == labels).astype(float)
    return conf, correct


# ---------------------------------------------------------------- cases
def enc(values):
    """Floats for JSON; +-inf and nan (which JSON lacks) as strings."""
    out = []
    for v in np.asarray(values, dtype=float).tolist():
        if math.isnan(v):
            out.append("nan")
        elif math.isinf(v):
            out.append("inf" if v > 0 else "-inf")
        else:
            out.append(v)
    return out


def case(name, labels, scores):
    labels = np.asarray(labels, dtype=int)
    scores = np.asarray(scores, dtype=float)
    out = {"name": name, "labels": labels.tolist(), "scores": enc(scores)}
    for drop in (False, True):
        fpr, tpr, thr = M.roc_curve(labels, scores, drop_intermediate=drop)
        out[f"roc_drop_{str(drop).lower()}"] = {"fpr": enc(fpr), "tpr": enc(tpr), "threshold": enc(thr)}
    precision, recall, thr = M.precision_recall_curve(labels, scores)
    out["pr"] = {"precision": enc(precision), "recall": enc(recall), "threshold": enc(thr)}
    out["roc_auc"] = float(M.roc_auc_score(labels, scores))
    out["average_precision"] = float(M.average_precision_score(labels, scores))

    pred = (scores >= 0.5).astype(int)
    tn, fp, fn, tp = M.confusion_matrix(labels, pred, labels=[0, 1]).ravel()
    out["at_0_5"] = {
        "accuracy": float(M.accuracy_score(labels, pred)),
        "precision": float(M.precision_score(labels, pred, zero_division=0)),
        "recall": float(M.recall_score(labels, pred, zero_division=0)),
        "specificity": float(M.recall_score(labels, pred, pos_label=0, zero_division=0)),
        "f1": float(M.f1_score(labels, pred, zero_division=0)),
        "tp": int(tp), "fp": int(fp), "tn": int(tn), "fn": int(fn),
    }

    if scores.min() >= 0 and scores.max() <= 1:
        out["brier"] = float(M.brier_score_loss(labels, scores))
        clipped = np.clip(scores, LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
        out["log_loss"] = float(M.log_loss(labels, clipped, labels=[0, 1]))
        calib = {}
        for bins in (N_BINS, 10):
            pos = torchmetrics_ce(scores, labels, bins)
            top = torchmetrics_ce(*top_label(labels, scores), bins)
            calib[str(bins)] = {
                "ece": top["ece"], "mce": top["mce"], "ece_pos": pos["ece"],
                "bins_pos": {k: pos[k] for k in ("count", "confidence", "accuracy")},
                "bins_top": {k: top[k] for k in ("count", "confidence", "accuracy")},
            }
        out["calibration"] = calib

    auc, var = delong_roc_variance(labels, scores)
    auc_pw, var_pw = delong_pairwise(labels, scores)
    assert abs(auc - auc_pw) < 1e-13 and abs(var - var_pw) < 1e-13, (name, auc, auc_pw, var, var_pw)
    assert abs(auc - out["roc_auc"]) < 1e-13, (name, auc, out["roc_auc"])
    half = norm.ppf(0.975) * math.sqrt(var)
    out["delong"] = {"auc": auc, "variance": var, "low": max(0.0, auc - half), "high": min(1.0, auc + half)}
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
    rng = np.random.default_rng(20261122)
    n = 200
    labels = (rng.random(n) < 0.6).astype(int)
    sign = 2 * labels - 1
    logit = 1.3 * sign + rng.normal(0, 1.5, n)
    scores = 1 / (1 + np.exp(-logit))
    other = 1 / (1 + np.exp(-(0.8 * sign + rng.normal(0, 1.5, n))))
    hard_labels = [0, 0, 0, 0, 1, 1, 1, 1, 1, 0, 1, 0]
    hard = [0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0]
    ext_labels = [1, 0, 1, 0, 1, 0, 1, 0, 1, 0]
    extremes = [0.0, 1.0, 1.0, 0.0, 1e-18, 1 - 1e-16, 0.5, 0.5, 1 / 15, 2 / 3]
    cases = [
        case("random_200", labels, scores),
        case("ties_rounded", labels, np.round(scores, 1)),
        case("all_equal", labels[:20], np.full(20, 0.5)),
        case("single_threshold", hard_labels, hard),
        case("two_values", [0, 1, 0, 1, 1, 0], [0.2, 0.8, 0.2, 0.8, 0.8, 0.8]),
        case("perfect", [0, 0, 0, 1, 1], [0.1, 0.2, 0.3, 0.7, 0.9]),
        case("tiny_3", [1, 0, 1], [0.4, 0.6, 0.9]),
        case("logits_60", labels[:60], logit[:60]),
        case("extremes", ext_labels, extremes),
    ]
    ref = {
        "generator": "crates/metrics/tests/reference/make_reference.py",
        "tolerance": 1e-12,
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "scikit-learn": sklearn.__version__,
        },
        "cases": cases,
        # model A: the random_200 case's scores; model B: a weaker model
        "delong_test": {"case": "random_200", "b": enc(other), **delong_roc_test(labels, scores, other)},
    }
    path = Path(__file__).with_name("sklearn_reference.json")
    path.write_text(dump(ref) + "\n")
    print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
