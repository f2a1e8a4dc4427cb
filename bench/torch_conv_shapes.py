#!/usr/bin/env python3
"""PyTorch's side of `cargo run --release -p cxr-models --example conv_shapes`.

Times torch's CPU convolution on each of ResNet18's convolution shapes at one input size and
batch, as the example does for cxr's fast path: forward, backward of `sum(conv(x, w) * r)`
with the gradients of x and w ("bwd all"), and the same with w's only ("bwd dW"); the
fastest of REPEATS, in ms. The count column is how many convolutions of that shape one
ResNet18 forward has; the total is the sum of count x (forward + bwd all).

    python3 bench/torch_conv_shapes.py [SIZE] [BATCH] [REPEATS] [THREADS]

(defaults 64 px, batch 32, 12 repeats, 2 threads). Benchmark-only: torch is never a build or
CI dependency of cxr (see bench/README.md).
"""

from __future__ import annotations

import sys
import time

import torch
import torch.nn.functional as F


def main() -> None:
    args = [int(a) for a in sys.argv[1:5]]
    size, batch, repeats, threads = (args + [64, 32, 12, 2][len(args):])[:4]
    torch.set_num_threads(threads)

    def s(d: int) -> int:
        return -(-size // d)

    # (name, count, c_in, c_out, k, stride, pad, input size), as in conv_shapes.rs
    shapes = [
        ("stem 7x7/2", 1, 3, 64, 7, 2, 3, size),
        ("layer1 3x3", 4, 64, 64, 3, 1, 1, s(4)),
        ("layer2 3x3/2", 1, 64, 128, 3, 2, 1, s(4)),
        ("layer2 1x1/2", 1, 64, 128, 1, 2, 0, s(4)),
        ("layer2 3x3", 3, 128, 128, 3, 1, 1, s(8)),
        ("layer3 3x3/2", 1, 128, 256, 3, 2, 1, s(8)),
        ("layer3 1x1/2", 1, 128, 256, 1, 2, 0, s(8)),
        ("layer3 3x3", 3, 256, 256, 3, 1, 1, s(16)),
        ("layer4 3x3/2", 1, 256, 512, 3, 2, 1, s(16)),
        ("layer4 1x1/2", 1, 256, 512, 1, 2, 0, s(16)),
        ("layer4 3x3", 3, 512, 512, 3, 1, 1, s(32)),
    ]
    print(f"torch {torch.__version__} convolutions at {size} px, batch {batch}, "
          f"{threads} threads: best of {repeats}, ms")
    print(f"{'shape':18} {'n':>3} {'forward':>9} {'bwd all':>9} {'bwd dW':>9} {'total×n':>9}")
    total = 0.0
    for name, count, ci, co, k, stride, pad, hw in shapes:
        x = torch.randn(batch, ci, hw, hw, requires_grad=True)
        w = (torch.randn(co, ci, k, k) * 0.05).requires_grad_()
        xc = x.detach()
        fwd, every, dw = [], [], []
        for rep in range(repeats + 1):
            t0 = time.perf_counter()
            y = F.conv2d(x, w, stride=stride, padding=pad)
            t1 = time.perf_counter()
            r = torch.ones_like(y)
            loss = (y * r).sum()
            t2 = time.perf_counter()
            loss.backward()
            t3 = time.perf_counter()
            loss = (F.conv2d(xc, w, stride=stride, padding=pad) * r).sum()
            t4 = time.perf_counter()
            loss.backward()
            t5 = time.perf_counter()
            x.grad = None
            w.grad = None
            if rep > 0:
                fwd.append((t1 - t0) * 1e3)
                every.append((t3 - t2) * 1e3)
                dw.append((t5 - t4) * 1e3)
        f, a, d = min(fwd), min(every), min(dw)
        total += count * (f + a)
        print(f"{name:18} {count:>3} {f:9.2f} {a:9.2f} {d:9.2f} {count * (f + a):9.2f}")
    print(f"all convolutions, forward + backward: {total:.1f} ms")


if __name__ == "__main__":
    main()
