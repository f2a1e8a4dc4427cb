#!/usr/bin/env python3
"""Reference values for cxr-metrics, computed with scikit-learn and numpy.

Run from this folder:  python3 make_reference.py  (writes sklearn_reference.json)

- ROC/PR curves, ROC AUC, average precision, confusion-matrix metrics, Brier score and
  log loss come from scikit-learn itself.
- DeLong's AUC variance is computed with the *original* O(m·n) definition of DeLong,
  DeLong & Clarke-Pearson (1988): structural components from explicit pairwise
  comparisons (psi = 1 if pos > neg, 1/2 if tied). cxr uses Sun & Xu's (2014) fast
  midrank algorithm, so the two are independent computations of the same quantity.
- Calibration errors follow torchmetrics' binning rule (bins = linspace(0, 1, n+1),
  index = bucketize(x, bins, right=True) - 1, i.e. numpy searchsorted(side="right") - 1,
  with x = 1.0 in an extra bin), written out with numpy.
"""
import json
import math

import numpy as np
import scipy
import sklearn
from scipy.stats import norm
from sklearn import metrics as M


def delong_direct(labels, scores):
    pos = scores[labels == 1]
    neg = scores[labels == 0]
    m, n = len(pos), len(neg)
    psi = (pos[:, None] > neg[None, :]).astype(float) + 0.5 * (pos[:, None] == neg[None, :])
    auc = psi.mean()
    v10 = psi.mean(axis=1)  # one per positive
    v01 = psi.mean(axis=0)  # one per negative
    s10 = np.var(v10, ddof=1) if m > 1 else 0.0
    s01 = np.var(v01, ddof=1) if n > 1 else 0.0
    return auc, v10, v01, s10 / m + s01 / n


def delong_test_direct(labels, a, b):
    auc_a, v10a, v01a, _ = delong_direct(labels, a)
    auc_b, v10b, v01b, _ = delong_direct(labels, b)
    m, n = len(v10a), len(v01a)
    s10 = np.cov(np.vstack([v10a, v10b]), ddof=1)
    s01 = np.cov(np.vstack([v01a, v01b]), ddof=1)
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / n
    z = (auc_a - auc_b) / math.sqrt(var)
    return {"auc_a": auc_a, "auc_b": auc_b, "z": z, "p_value": 2 * norm.cdf(-abs(z))}


def calib(labels, probs, bins, top_label):
    if top_label:
        conf = np.maximum(probs, 1 - probs)
        acc = ((probs >= 0.5).astype(int) == labels).astype(float)
    else:
        conf = probs
        acc = labels.astype(float)
    edges = np.linspace(0, 1, bins + 1)
    idx = np.searchsorted(edges, conf, side="right") - 1
    ece, mce = 0.0, 0.0
    for k in range(bins + 1):
        sel = idx == k
        if sel.any():
            gap = abs(acc[sel].mean() - conf[sel].mean())
            ece += gap * sel.mean()
            mce = max(mce, gap)
    return ece, mce


def flt(x):
    return [None if not np.isfinite(v) else float(v) for v in x]


def case(name, labels, scores):
    labels = np.asarray(labels, dtype=int)
    scores = np.asarray(scores, dtype=float)
    out = {"name": name, "labels": labels.tolist(), "scores": scores.tolist()}
    for drop in (False, True):
        fpr, tpr, thr = M.roc_curve(labels, scores, drop_intermediate=drop)
        out[f"roc_drop_{str(drop).lower()}"] = {"fpr": flt(fpr), "tpr": flt(tpr), "threshold": flt(thr)}
    p, r, t = M.precision_recall_curve(labels, scores)
    out["pr"] = {"precision": flt(p), "recall": flt(r), "threshold": flt(t)}
    out["roc_auc"] = M.roc_auc_score(labels, scores)
    out["average_precision"] = M.average_precision_score(labels, scores)
    pred = (scores >= 0.5).astype(int)
    tn, fp, fn, tp = M.confusion_matrix(labels, pred, labels=[0, 1]).ravel()
    out["at_0_5"] = {
        "accuracy": M.accuracy_score(labels, pred),
        "precision": M.precision_score(labels, pred, zero_division=0),
        "recall": M.recall_score(labels, pred, zero_division=0),
        "specificity": M.recall_score(labels, pred, pos_label=0, zero_division=0),
        "f1": M.f1_score(labels, pred, zero_division=0),
        "tp": int(tp), "fp": int(fp), "tn": int(tn), "fn": int(fn),
    }
    if scores.min() >= 0 and scores.max() <= 1:
        out["brier"] = M.brier_score_loss(labels, scores)
        out["log_loss"] = M.log_loss(labels, scores, labels=[0, 1])
        out["ece_top_15"], out["mce_top_15"] = calib(labels, scores, 15, True)
        out["ece_pos_15"], _ = calib(labels, scores, 15, False)
    auc, _, _, var = delong_direct(labels, scores)
    half = norm.ppf(0.975) * math.sqrt(var)
    out["delong"] = {"auc": auc, "variance": var, "low": max(0.0, auc - half), "high": min(1.0, auc + half)}
    return out


def main():
    rng = np.random.default_rng(20261122)
    n = 200
    labels = (rng.random(n) < 0.6).astype(int)
    scores = 1 / (1 + np.exp(-(1.3 * (2 * labels - 1) + rng.normal(0, 1.5, n))))
    other = 1 / (1 + np.exp(-(0.8 * (2 * labels - 1) + rng.normal(0, 1.5, n))))
    cases = [
        case("random_200", labels, scores),
        case("ties_rounded", labels, np.round(scores, 1)),
        case("all_equal", labels[:20], np.full(20, 0.5)),
        case("single_threshold", [0, 1, 0, 1, 1, 0], [0.2, 0.8, 0.2, 0.8, 0.8, 0.8]),
        case("perfect", [0, 0, 0, 1, 1], [0.1, 0.2, 0.3, 0.7, 0.9]),
        case("tiny_3", [1, 0, 1], [0.4, 0.6, 0.9]),
    ]
    ref = {
        "versions": {"numpy": np.__version__, "scipy": scipy.__version__, "scikit-learn": sklearn.__version__},
        "cases": cases,
        "delong_test": {"labels": labels.tolist(), "a": scores.tolist(), "b": other.tolist(),
                        **delong_test_direct(labels, scores, other)},
    }
    with open("sklearn_reference.json", "w") as f:
        json.dump(ref, f, indent=1)


if __name__ == "__main__":
    main()
