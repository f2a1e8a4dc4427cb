"""A metadata table for PneumoniaMNIST's test split, for trying `cxr evaluate`.

PneumoniaMNIST ships no patient data, so this table mixes columns measured on the images
with synthetic ones, and says which is which:

- `image_index`: the image's position in the test split (join with `--join-key index`).
- `brightness`, `contrast`: the image's mean and standard deviation of gray levels
  (measured; numeric, cut into quartiles by `cxr evaluate`).
- `sex`, `age_years`, `view`: synthetic, drawn from a seeded generator independently of
  the label (the Kermany set is paediatric: ages 1-5). A model cannot differ across
  these groups except by chance: a heterogeneity test on them should not reject.
- three rows for indices that do not exist and no row for the last 4 images, so the
  join's accounting of unmatched rows and images shows.

Usage: python3 bench/make_eval_metadata.py ../shared/data/pneumoniamnist.npz OUT.csv
"""
import csv
import sys

import numpy as np

npz, out = sys.argv[1], sys.argv[2]
images = np.load(npz)["test_images"].astype(np.float64)
rng = np.random.default_rng(20261205)
n = len(images)
with open(out, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["image_index", "brightness", "contrast", "sex", "age_years", "view"])
    for i in range(n - 4):
        img = images[i]
        w.writerow([
            i,
            round(float(img.mean()), 2),
            round(float(img.std()), 2),
            rng.choice(["F", "M"]),
            int(rng.integers(1, 6)),
            rng.choice(["AP", "PA"], p=[0.7, 0.3]),
        ])
    for i in range(n, n + 3):
        w.writerow([i, "", "", "F", 3, "AP"])
