#!/usr/bin/env python3
"""Test-time augmentation probe for cxr ResNet18 run folders (docs/headline.md).

Loads a run's model.safetensors into torchvision's resnet18 (`load_state_dict(strict=True)`),
rebuilds its input as cxr does for PneumoniaMNIST (28 px upsampled bilinearly, align_corners
False, rounded to u8, `x/255`, gray to three channels, ImageNet normalisation), checks the plain
logits against the run's predictions.csv, and averages the logits of the plain image with
`--views` draws of the light training augmentation (torchvision: random resized crop 0.85–1,
±10°, brightness and contrast ±0.1). Prints AUC of the run's logits, of the recomputed plain
logits and of the average, per split, with the largest logit difference from the run.

A measurement tool, not part of cxr: torch, torchvision, scikit-learn and safetensors are
never build or CI dependencies (see bench/README.md).

    python3 bench/torch_tta_probe.py --data ../shared/data/pneumoniamnist.npz RUN [RUN ...]
"""

from __future__ import annotations

import argparse
import csv

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
import torchvision.transforms.v2 as T
from safetensors.torch import load_file
from sklearn.metrics import roc_auc_score

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def sized(npz, split: str, size: int) -> torch.Tensor:
    x = torch.from_numpy(npz[f"{split}_images"]).float().unsqueeze(1)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return torch.round(x).clamp(0, 255) / 255.0


@torch.no_grad()
def logits(model, x: torch.Tensor) -> np.ndarray:
    out = []
    for i in range(0, len(x), 256):
        b = x[i : i + 256].expand(-1, 3, -1, -1)
        out.append(model((b - MEAN) / STD).squeeze(1))
    return torch.cat(out).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="pneumoniamnist.npz")
    ap.add_argument("--size", type=int, default=64, help="the runs' input size")
    ap.add_argument("--views", type=int, default=8, help="augmented views besides the plain one")
    ap.add_argument("--seed", type=int, default=1234, help="torch.manual_seed of the views")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("runs", nargs="+")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    npz = np.load(a.data)
    aug = T.Compose(
        [
            T.RandomResizedCrop(a.size, scale=(0.85, 1.0), antialias=False),
            T.RandomRotation(10),
            T.ColorJitter(brightness=0.1, contrast=0.1),
        ]
    )
    for run in a.runs:
        model = torchvision.models.resnet18(num_classes=1)
        model.load_state_dict(load_file(f"{run}/model.safetensors"))
        model.eval()
        with open(f"{run}/predictions.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        parts = []
        for split in ["val", "test"]:
            x = sized(npz, split, a.size)
            y = npz[f"{split}_labels"].ravel()
            ref = np.array([float(r["logit"]) for r in rows if r["split"] == split])
            plain = logits(model, x)
            torch.manual_seed(a.seed)
            views = [logits(model, torch.stack([aug(img) for img in x])) for _ in range(a.views)]
            mean = (plain + sum(views)) / (1 + a.views)
            parts.append(
                f"{split}: AUC run {roc_auc_score(y, ref):.4f} recomputed {roc_auc_score(y, plain):.4f}"
                f" with {a.views} views {roc_auc_score(y, mean):.4f}"
                f" (largest |logit - run's| {np.abs(plain - ref).max():.1e})"
            )
        print(run, "; ".join(parts), flush=True)


if __name__ == "__main__":
    main()
