#!/usr/bin/env python3
"""The state_dict that a run's model.safetensors must match, one tensor a line:
`name dtype [shape]` (`[]` for a scalar), in state_dict order.

- torchvision_resnet18_keys.txt: torchvision.models.resnet18(num_classes=1).state_dict()
  (BatchNorm buffers included: running_mean, running_var, int64 num_batches_tracked).
- cnn_keys.txt: the SeedCnn class of docs/pytorch.md (the script runs that document's
  first Python block, the code readers copy).

Read by crates/train/tests/it/interchange.rs. Needs torch and torchvision; a dev tool:
torch is never a dependency of the Rust build or CI, the two lists are committed.
"""

from __future__ import annotations

import re
import types
from pathlib import Path

import torchvision

HERE = Path(__file__).resolve().parent
DOC = HERE.parents[3] / "docs" / "pytorch.md"


def doc_module() -> types.ModuleType:
    text = DOC.read_text(encoding="utf-8")
    m = re.search(r"<!-- cxr_torch\.py[^\n]*-->\n```python\n(.*?)```", text, re.S)
    if m is None:
        raise SystemExit(f"error: {DOC} has no cxr_torch.py block")
    module = types.ModuleType("cxr_torch")
    exec(compile(m.group(1), f"{DOC} (cxr_torch.py block)", "exec"), module.__dict__)
    return module


def write(path: Path, state_dict) -> None:
    lines = [
        f"{name} {str(t.dtype).removeprefix('torch.')} [{','.join(str(d) for d in t.shape)}]"
        for name, t in state_dict.items()
    ]
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {path} ({len(lines)} tensors)")


def main() -> None:
    write(HERE / "torchvision_resnet18_keys.txt", torchvision.models.resnet18(num_classes=1).state_dict())
    write(HERE / "cnn_keys.txt", doc_module().SeedCnn().state_dict())


if __name__ == "__main__":
    main()
