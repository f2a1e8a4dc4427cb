#!/usr/bin/env python3
"""PyTorch's own error in bf16 and f16 autocast on the ResNet18 training step of
`resnet18_step.safetensors` (the float64 reference in `CXR_FIXTURES`, default
../shared/fixtures): a yardstick for cxr's half-precision tolerances, as the fixture's
`torch_f32_err.<p>` is for float32.

For each half type, runs the fixture's step (train-mode BatchNorm, 1-logit head,
BCEWithLogits on the mean) under `torch.autocast("cpu", dtype=...)` and records, for the
logits, the loss, every parameter's gradient and every BatchNorm running statistic after
the forward pass, the largest difference from the reference over the reference's largest
magnitude — at the sampled positions (`idx.<p>`) where the fixture stores a sample, as the
Rust test compares. Writes data/resnet18_autocast_err.json.

Read by crates/train/tests/it/resnet_step.rs. Needs torch, torchvision and safetensors;
a dev tool: torch is never a dependency of the Rust build or CI, the output is committed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torchvision
from safetensors.torch import load_file

HERE = Path(__file__).resolve().parent
FIXTURES = Path(os.environ.get("CXR_FIXTURES", HERE.parents[4] / "shared" / "fixtures"))
OUT = HERE / "data" / "resnet18_autocast_err.json"


def rel(ours: torch.Tensor, ref: torch.Tensor) -> float:
    ours, ref = ours.double().flatten(), ref.double().flatten()
    return float((ours - ref).abs().max() / ref.abs().max())


def errors(fx: dict, body: dict, dtype: torch.dtype) -> dict:
    net = torchvision.models.resnet18(num_classes=1)
    state = {k: v for k, v in body.items() if not k.startswith("fc.")}
    state["fc.weight"] = fx["head.fc.weight"]
    state["fc.bias"] = fx["head.fc.bias"]
    missing, unexpected = net.load_state_dict(state, strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing)
    net.train()
    with torch.autocast("cpu", dtype=dtype):
        logits = net(fx["x"]).squeeze(1)
    logits = logits.float()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, fx["y"])
    loss.backward()
    grads = {}
    for name, p in net.named_parameters():
        g = p.grad.detach().flatten()
        if f"grad.{name}" in fx:
            grads[name] = rel(g, fx[f"grad.{name}"])
        else:
            idx = fx[f"idx.{name}"].long().flatten()
            grads[name] = rel(g[idx], fx[f"grad_val.{name}"])
    assert len(grads) == 62, len(grads)
    running = {
        name: rel(b, fx[f"running.{name}"])
        for name, b in net.named_buffers()
        if "running_" in name
    }
    assert len(running) == 40, len(running)
    return {
        "logits": rel(logits.detach(), fx["logits"]),
        "loss": rel(loss.detach(), fx["loss"]),
        "grads": dict(sorted(grads.items())),
        "running": dict(sorted(running.items())),
    }


def main() -> None:
    fx = load_file(FIXTURES / "resnet18_step.safetensors")
    body = load_file(FIXTURES / "resnet18_random.safetensors")
    doc = {
        "what": "PyTorch's autocast (CPU) error on the resnet18_step.safetensors step: "
        "max |ours - reference| / max |reference| per tensor",
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
    }
    for name, dtype in (("bf16", torch.bfloat16), ("f16", torch.float16)):
        e = errors(fx, body, dtype)
        doc[name] = e
        g = sorted(e["grads"].values())
        print(f"{name}: logits {e['logits']:.2e}, loss {e['loss']:.2e}, gradients median "
              f"{g[len(g) // 2]:.2e}, largest {g[-1]:.2e}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
