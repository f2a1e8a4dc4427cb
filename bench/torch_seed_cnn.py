#!/usr/bin/env python3
"""The seed study's CNN recipe in PyTorch: the peer that `cargo xtask bench` compares cxr with.

Same recipe as cxr's default TrainConfig: PneumoniaMNIST 28x28, pixels x/255 then (x-0.5)/0.5;
conv1 1->32, conv2 32->64, conv3 64->128 (3x3, padding 1, bias), each followed by ReLU and a
2x2 max-pool (28->14->7->3); global average pool; Linear 128->1; BCEWithLogitsLoss (mean);
Adam(lr=1e-3); batch 64, reshuffled each epoch; best epoch by validation AUC; test AUC and
accuracy at threshold 0.5 with the best epoch's weights.

Timing: seconds per epoch count the training pass alone (no validation); training images/s is
all training images seen / all training-pass seconds. Inference uses a model on its own (freshly
initialised, as cxr's bench does): batch 256 over the 624 test images (median of 5 passes after
1 warm-up) and batch-1 latency (median of 200 forwards after 20 warm-up forwards).

Progress goes to stderr; with --json the last line of stdout is one JSON object.
Benchmark-only: torch is never a build or CI dependency of cxr (see bench/README.md).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import statistics
import sys
import time

import numpy as np
import torch
from torch import nn
from sklearn.metrics import roc_auc_score


def log(*args: object) -> None:
    print(*args, file=sys.stderr, flush=True)


def resolve_data(path: str) -> str:
    if os.path.isdir(path):
        candidate = os.path.join(path, "pneumoniamnist.npz")
        if os.path.isfile(candidate):
            return candidate
        sys.exit(f"error: {path} is a folder without pneumoniamnist.npz (this script reads the npz only)")
    if not os.path.isfile(path):
        sys.exit(f"error: data file not found: {path}")
    return path


def load_split(npz: np.lib.npyio.NpzFile, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    images = npz[f"{split}_images"]
    labels = npz[f"{split}_labels"]
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        sys.exit(f"error: {split}_images has shape {images.shape}, expected [N,28,28]")
    x = images.astype(np.float32) / 255.0
    x = (x - 0.5) / 0.5
    x = torch.from_numpy(np.ascontiguousarray(x[:, None, :, :]))
    y = torch.from_numpy(labels.reshape(-1).astype(np.float32))
    return x, y


class SeedCnn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1, bias=True)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1, bias=True)
        self.conv3 = nn.Conv2d(64, 128, 3, padding=1, bias=True)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(128, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu(self.conv1(x)))  # 28 -> 14
        x = self.pool(self.relu(self.conv2(x)))  # 14 -> 7
        x = self.pool(self.relu(self.conv3(x)))  # 7 -> 3
        x = torch.flatten(self.gap(x), 1)
        return self.fc(x).squeeze(1)  # logits [N]


@torch.inference_mode()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    model.eval()
    probs = [torch.sigmoid(model(x[i : i + batch_size])) for i in range(0, len(x), batch_size)]
    return torch.cat(probs).numpy().astype(np.float64)


def train(args: argparse.Namespace, data: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> dict:
    xtr, ytr = data["train"]
    xva, yva = data["val"]
    xte, yte = data["test"]
    model = SeedCnn()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.BCEWithLogitsLoss()
    gen = torch.Generator().manual_seed(args.seed)
    n = len(xtr)
    train_seconds = 0.0
    epoch_seconds = []
    best_auc, best_epoch, best_state = -1.0, 0, None
    for epoch in range(1, args.epochs + 1):
        perm = torch.randperm(n, generator=gen)
        model.train()
        loss_sum = 0.0
        t0 = time.perf_counter()
        for i in range(0, n, args.batch_size):
            idx = perm[i : i + args.batch_size]
            xb, yb = xtr[idx], ytr[idx]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(idx)
        dt = time.perf_counter() - t0
        train_seconds += dt
        epoch_seconds.append(dt)
        val_auc = float(roc_auc_score(yva.numpy(), predict(model, xva)))
        if val_auc > best_auc:
            best_auc, best_epoch = val_auc, epoch
            best_state = copy.deepcopy(model.state_dict())
        log(
            f"epoch {epoch:>2}/{args.epochs}  loss {loss_sum / n:.4f}  val_auc {val_auc:.4f}  "
            f"train {dt:.2f}s ({n / dt:.0f} img/s)"
        )
    model.load_state_dict(best_state)
    p = predict(model, xte)
    y = yte.numpy()
    test_auc = float(roc_auc_score(y, p))
    test_acc = float(np.mean((p >= 0.5) == (y >= 0.5)))
    log(f"best epoch {best_epoch} (val_auc {best_auc:.4f}); test_auc {test_auc:.4f}  test_acc {test_acc:.4f}")
    return {
        "train_images_per_second": n * args.epochs / train_seconds,
        "seconds_per_epoch": train_seconds / args.epochs,
        "test_auc": test_auc,
        "test_accuracy": test_acc,
        "val_auc_best": best_auc,
        "best_epoch": best_epoch,
    }


def inference(xte: torch.Tensor) -> dict:
    model = SeedCnn().eval()
    batches = [xte[i : i + 256] for i in range(0, len(xte), 256)]
    passes = []
    with torch.inference_mode():
        for k in range(6):  # 1 warm-up + 5 timed passes
            t0 = time.perf_counter()
            for xb in batches:
                model(xb).numpy()
            dt = time.perf_counter() - t0
            if k > 0:
                passes.append(len(xte) / dt)
        lat = []
        for k in range(220):  # 20 warm-up + 200 timed single-image forwards
            x1 = xte[k % len(xte)].unsqueeze(0)
            t0 = time.perf_counter()
            model(x1).numpy()
            dt = time.perf_counter() - t0
            if k >= 20:
                lat.append(dt * 1e3)
    out = {
        "infer_batched_images_per_second": statistics.median(passes),
        "infer_batch1_ms": statistics.median(lat),
    }
    log(
        f"inference: {out['infer_batched_images_per_second']:.0f} img/s (batch 256), "
        f"{out['infer_batch1_ms']:.3f} ms (batch 1)"
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="/work/shared/data/pneumoniamnist.npz",
                    help="PneumoniaMNIST npz (or a folder holding pneumoniamnist.npz)")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--infer-only", action="store_true",
                    help="skip training: inference timings of a freshly initialised model only")
    ap.add_argument("--json", action="store_true",
                    help="print one JSON object with all figures as the last line of stdout")
    args = ap.parse_args()
    if args.epochs < 1 or args.threads < 1 or args.batch_size < 1:
        ap.error("--epochs, --threads and --batch-size must be at least 1")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    path = resolve_data(args.data)
    with np.load(path) as npz:
        data = {s: load_split(npz, s) for s in ("train", "val", "test")}
    log(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); data {path}: "
        + ", ".join(f"{s} {len(v[0])}" for s, v in data.items())
    )

    result: dict = {
        "framework": "pytorch",
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "epochs": 0 if args.infer_only else args.epochs,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "train_images_per_second": None,
        "seconds_per_epoch": None,
        "test_auc": None,
        "test_accuracy": None,
        "val_auc_best": None,
        "best_epoch": None,
    }
    if not args.infer_only:
        result.update(train(args, data))
    torch.manual_seed(args.seed)
    result.update(inference(data["test"][0]))
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    log(f"peak RSS {result['peak_rss_mib']:.1f} MiB")
    if args.json:
        print(json.dumps(result), flush=True)
    else:
        for k, v in result.items():
            print(f"{k}: {v}")


if __name__ == "__main__":
    main()
