#!/usr/bin/env python3
"""PyTorch's ResNet18 training step split into forward + loss, backward and AdamW.

The peer of `cargo run --release -p cxr-train --example resnet_step -- SIZE BATCH STEPS`:
torchvision `resnet18(num_classes=1)` in training mode, BCEWithLogits on random labels,
AdamW(lr 1e-3), random input `[BATCH, 3, SIZE, SIZE]`; medians over STEPS steps after 3
warm-up steps, in ms.

    python3 bench/torch_resnet18_step_split.py [SIZE] [BATCH] [STEPS] [THREADS]

(defaults 64 px, batch 32, 10 steps, 2 threads). Benchmark-only: torch is never a build or CI
dependency of cxr (see bench/README.md).
"""

from __future__ import annotations

import statistics
import sys
import time

import torch
import torchvision


def main() -> None:
    args = [int(a) for a in sys.argv[1:5]]
    size, batch, steps, threads = (args + [64, 32, 10, 2][len(args):])[:4]
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=1)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, 2, (batch, 1)).float()
    fwd, bwd, step = [], [], []
    for i in range(steps + 3):
        t0 = time.perf_counter()
        loss = loss_fn(model(x), y)
        t1 = time.perf_counter()
        opt.zero_grad()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        t3 = time.perf_counter()
        if i >= 3:
            fwd.append(t1 - t0)
            bwd.append(t2 - t1)
            step.append(t3 - t2)
    total = [a + b + c for a, b, c in zip(fwd, bwd, step)]
    print(f"torch {torch.__version__} resnet18 {size}px batch {batch}, {steps} steps, medians in ms:")
    for name, v in [("forward+loss", fwd), ("backward", bwd), ("adamw", step), ("step", total)]:
        print(f"  {name:14} {1e3 * statistics.median(v):8.1f}")


if __name__ == "__main__":
    main()
