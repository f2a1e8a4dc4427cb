#!/usr/bin/env python3
"""ResNet18 from scratch on PneumoniaMNIST in PyTorch: the peer of cxr's resnet18 recipe.

Same recipe as cxr's `TrainConfig::resnet18("none")`: 28x28 images upsampled (bilinear) to
--size, pixels in [0, 1], light augmentation (random resized crop of 0.85-1 of the area,
rotation +-10 degrees, brightness/contrast +-0.1), the channel repeated 3 times and
ImageNet-normalised; torchvision resnet18 with a 1-logit head (random init); BCEWithLogits;
AdamW(lr 1e-3, weight decay 0.01) with OneCycleLR (pct_start 0.3, div 25, final div 1e4,
cosine, beta1 cycled 0.95/0.85); batch 64, last partial batch dropped; best epoch by val AUC;
test AUC, accuracy and F1 at threshold 0.5 with the best epoch's weights. `train_seconds`
counts the epochs with their validation, as cxr's `timing.train_seconds` does;
`train_images_per_second` the training passes alone.

--device cuda runs it on the GPU (the batches are augmented on the CPU, as cxr does, and
uploaded); --keep last, --label-smoothing 0.1 and --limit N (training images per epoch) make it
`cargo xtask gpu-check`'s peer of cxr's current recipe.

--time-only measures the training step (forward + backward + AdamW) and eval throughput on
random input at --size instead of training: what `cargo xtask bench` compares with.

Progress goes to stderr; with --json the last line of stdout is one JSON object.
Benchmark-only: torch is never a build or CI dependency of cxr (see bench/README.md).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from sklearn.metrics import f1_score, roc_auc_score
from torchvision.transforms import v2

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def log(*args: object) -> None:
    print(*args, file=sys.stderr, flush=True)


def model() -> torch.nn.Module:
    m = torchvision.models.resnet18(weights=None)
    m.fc = torch.nn.Linear(512, 1)
    return m


def to_input(x: torch.Tensor) -> torch.Tensor:
    return (x.expand(-1, 3, -1, -1) - MEAN.to(x.device)) / STD.to(x.device)


def load(path: str, size: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    out = {}
    with np.load(path) as npz:
        for split in ("train", "val", "test"):
            x = torch.from_numpy(npz[f"{split}_images"].astype(np.float32) / 255.0)[:, None]
            if size != x.shape[-1]:
                x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
            y = torch.from_numpy(npz[f"{split}_labels"].reshape(-1).astype(np.float32))
            out[split] = (x.clamp(0, 1).contiguous(), y)
    return out


@torch.inference_mode()
def predict(m: torch.nn.Module, x: torch.Tensor, device: str = "cpu") -> np.ndarray:
    m.eval()
    ps = [
        torch.sigmoid(m(to_input(x[i : i + 256].to(device))).squeeze(1)).cpu()
        for i in range(0, len(x), 256)
    ]
    return torch.cat(ps).numpy().astype(np.float64)


def train(args: argparse.Namespace) -> dict:
    data = load(args.data, args.size)
    xtr, ytr = data["train"]
    if args.limit:
        xtr, ytr = xtr[: args.limit], ytr[: args.limit]
    dev = args.device
    aug = v2.Compose(
        [
            v2.RandomResizedCrop(args.size, scale=(0.85, 1.0), antialias=True),
            v2.RandomRotation(10),
            v2.ColorJitter(brightness=0.1, contrast=0.1),
        ]
    )
    m = model().to(dev)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=0.01)
    steps = len(xtr) // args.batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=1e-3, total_steps=steps * args.epochs, pct_start=0.3, div_factor=25,
        final_div_factor=1e4,
    )
    gen = torch.Generator().manual_seed(args.seed)
    best = (-1.0, 0, None)
    train_seconds = pass_seconds = 0.0
    for epoch in range(1, args.epochs + 1):
        m.train()
        perm = torch.randperm(len(xtr), generator=gen)
        t0 = time.perf_counter()
        loss_sum = 0.0
        for i in range(steps):
            idx = perm[i * args.batch_size : (i + 1) * args.batch_size]
            xb = torch.stack([aug(xtr[j]) for j in idx]).clamp(0, 1).to(dev, non_blocking=True)
            yb = ytr[idx].to(dev) * (1 - args.label_smoothing) + args.label_smoothing / 2
            loss = F.binary_cross_entropy_with_logits(m(to_input(xb)).squeeze(1), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item()
        pass_seconds += time.perf_counter() - t0
        auc = float(roc_auc_score(data["val"][1].numpy(), predict(m, data["val"][0], dev)))
        dt = time.perf_counter() - t0
        train_seconds += dt
        if auc > best[0] or args.keep == "last":
            best = (auc, epoch, copy.deepcopy(m.state_dict()))
        log(f"epoch {epoch}/{args.epochs} loss {loss_sum / steps:.4f} val_auc {auc:.4f} {dt:.1f}s")
    m.load_state_dict(best[2])
    p = predict(m, data["test"][0], dev)
    y = data["test"][1].numpy()
    pred = (p >= 0.5).astype(np.float64)
    out = {
        "size": args.size,
        "seed": args.seed,
        "epochs": args.epochs,
        "best_epoch": best[1],
        "val_auc": best[0],
        "test_auc": float(roc_auc_score(y, p)),
        "test_accuracy": float(np.mean(pred == y)),
        "test_f1": float(f1_score(y, pred)),
        "train_seconds": train_seconds,
        "train_images_per_second": steps * args.batch_size * args.epochs / pass_seconds,
        "device": dev,
        "torchvision_version": torchvision.__version__,
    }
    log(json.dumps(out))
    return out


def time_only(args: argparse.Namespace) -> dict:
    m = model()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=0.01)
    x = torch.rand(args.batch_size, 1, args.size, args.size)
    y = (torch.rand(args.batch_size) > 0.5).float()

    def step() -> None:
        m.train()
        loss = F.binary_cross_entropy_with_logits(m(to_input(x)).squeeze(1), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def infer() -> None:
        m.eval()
        with torch.inference_mode():
            m(to_input(x))

    res = {}
    for name, f in (("train", step), ("eval", infer)):
        f()
        ts = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t0)
        res[f"{name}_images_per_second"] = args.batch_size / statistics.median(ts)
    log(f"pytorch resnet18 {args.size}px batch {args.batch_size}: {res}")
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="/work/shared/data/pneumoniamnist.npz")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--keep", choices=("best", "last"), default="best")
    ap.add_argument("--label-smoothing", type=float, default=0.0)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--time-only", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out = time_only(args) if args.time_only else train(args)
    out["torch_version"] = torch.__version__
    if args.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
