#!/usr/bin/env python3
"""Prediction throughput of a cxr seed-CNN run folder in PyTorch + Pillow/pydicom: the peer of
the `predict` rows of `cargo xtask bench`.

Reads every PNG and DICOM file of a folder (sorted by name; Pillow for images, pydicom's
`dcmread` + `pixel_array` for DICOM), preprocesses them as the run's model.json says (8-bit gray;
centre crop to a square of the shorter side; resize to `source_size` only when the side differs,
then to `input_size` only when that differs; `(x/255 - mean)/std`), loads model.safetensors into
the seed CNN (the class of bench/torch_seed_cnn.py) with `load_state_dict(strict=True)`, and runs
batched inference (the card's batch size) under `torch.inference_mode()`.

Timed span (`time.perf_counter`), the same as cxr's `summary.images_per_second`: from reading
model.json to the last batch's probabilities — reading the card and the weights, listing the
folder, reading + decoding + preprocessing every file (one after the other, in this process),
inference. Not timed: starting Python and importing torch, Pillow, pydicom and safetensors; one
warm-up forward of a zero batch of the card's batch size through a throwaway model before the
span (cxr's bench process has run the same shapes before); printing.

DICOM: the simple case only, as the bench writes it — 8-bit MONOCHROME2 without a window or VOI
LUT, where cxr's mapping (the full stored range) is the identity; anything else is refused with
the file's name.

Progress goes to stderr; with --json the last line of stdout is one JSON object.
Benchmark-only: torch, Pillow, pydicom and safetensors are never build or CI dependencies of cxr
(see bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

import numpy as np
import pydicom
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file
from torch import nn

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
DICOM_EXTENSIONS = {".dcm", ".dicom"}


def log(*args: object) -> None:
    print(*args, file=sys.stderr, flush=True)


class SeedCnn(nn.Module):
    """Copied from bench/torch_seed_cnn.py (layer names match cxr's safetensors names)."""

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


class InputError(Exception):
    """A file or setting this script cannot use; the message names it."""


def read_card(run: str) -> dict:
    path = os.path.join(run, "model.json")
    try:
        with open(path, encoding="utf-8") as f:
            card = json.load(f)
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: {e}") from e
    try:
        pre = card["preprocess"]
        out = {
            "network": card["network"],
            "weights": os.path.join(run, card["weights"]),
            "batch_size": int(card["batch_size"]),
            "source_size": int(pre["source_size"]),
            "input_size": int(pre["input_size"]),
            "channels": int(pre["channels"]),
            "mean": float(pre["normalize_mean"]),
            "std": float(pre["normalize_std"]),
        }
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(f"{path}: missing or malformed field {e}") from e
    if out["network"] != "cnn" or out["channels"] != 1:
        raise InputError(
            f"{path}: network `{out['network']}` with {out['channels']} channel(s); "
            "this peer runs the seed CNN (network `cnn`, 1 channel) only"
        )
    if out["batch_size"] < 1 or out["source_size"] < 1 or out["input_size"] < 1 or out["std"] == 0:
        raise InputError(f"{path}: batch_size, sizes and normalize_std must be positive")
    return out


def load_model(weights: str) -> nn.Module:
    try:
        state = load_file(weights)
    except Exception as e:  # safetensors raises its own error types
        raise InputError(f"{weights}: {e}") from e
    model = SeedCnn()
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise InputError(f"{weights}: {e}") from e
    return model.eval()


def list_inputs(folder: str) -> list[str]:
    if not os.path.isdir(folder):
        raise InputError(f"{folder}: not a folder")
    names = sorted(
        n for n in os.listdir(folder)
        if os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS | DICOM_EXTENSIONS
    )
    if not names:
        raise InputError(f"{folder}: no image or DICOM files")
    return [os.path.join(folder, n) for n in names]


def decode_image(path: str) -> np.ndarray:
    with Image.open(path) as im:
        if im.mode != "L":
            if im.mode not in ("1", "P", "RGB", "RGBA", "LA"):
                raise InputError(f"{path}: {im.mode} image; this peer reads 8-bit images only")
            im = im.convert("L")
        return np.asarray(im)


def decode_dicom(path: str) -> list[np.ndarray]:
    ds = pydicom.dcmread(path)
    photometric = str(ds.get("PhotometricInterpretation", ""))
    bits = int(ds.get("BitsStored", 0))
    if photometric != "MONOCHROME2" or bits != 8:
        raise InputError(f"{path}: {photometric} with {bits} bits stored; this peer reads "
                         "8-bit MONOCHROME2 only")
    if any(k in ds for k in ("WindowCenter", "WindowWidth", "VOILUTSequence", "RescaleSlope")):
        raise InputError(f"{path}: has a window, VOI LUT or rescale; this peer maps the full "
                         "8-bit range (the identity) only")
    px = ds.pixel_array  # uint8: [rows, cols], or [frames, rows, cols]
    if px.dtype != np.uint8:
        raise InputError(f"{path}: pixel data of type {px.dtype}, expected uint8")
    return [px] if px.ndim == 2 else list(px)


def fit_square(gray: np.ndarray, size: int, path: str) -> np.ndarray:
    """Centre crop to a square of the shorter side; resize to `size` only when it differs."""
    h, w = gray.shape
    if h == 0 or w == 0:
        raise InputError(f"{path}: empty image")
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    sq = gray[top:top + side, left:left + side]
    if side != size:
        sq = np.asarray(Image.fromarray(sq).resize((size, size), Image.BILINEAR))
    return sq


def read_all(files: list[str], size: int) -> np.ndarray:
    """Every frame of every file as uint8 [N, size, size]."""
    frames = []
    for path in files:
        try:
            if os.path.splitext(path)[1].lower() in DICOM_EXTENSIONS:
                grays = decode_dicom(path)
            else:
                grays = [decode_image(path)]
        except InputError:
            raise
        except Exception as e:  # Pillow's and pydicom's many error types
            raise InputError(f"{path}: {e}") from e
        frames.extend(fit_square(g, size, path) for g in grays)
    return np.stack(frames)


def predict(args: argparse.Namespace) -> dict:
    t0 = time.perf_counter()
    card = read_card(args.run)
    model = load_model(card["weights"])
    files = list_inputs(args.images)
    u8 = read_all(files, card["source_size"])
    x = torch.from_numpy(u8)
    if card["input_size"] != card["source_size"]:
        s = card["input_size"]
        x = F.interpolate(x[:, None].float(), size=(s, s), mode="bilinear", align_corners=False,
                          antialias=False)
        x = torch.floor(x + 0.5).clamp(0, 255)[:, 0]
    x = ((x.float() / 255.0 - card["mean"]) / card["std"])[:, None]
    bs = card["batch_size"]
    with torch.inference_mode():
        logits = torch.cat([model(x[i:i + bs]) for i in range(0, len(x), bs)])
        probs = torch.sigmoid(logits.double()).numpy()
    seconds = time.perf_counter() - t0
    if len(probs) != len(files):
        raise InputError(f"{args.images}: {len(probs)} frames from {len(files)} files; "
                         "this peer expects one frame per file")
    return {
        "framework": "pytorch",
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "files": len(files),
        "images": len(probs),
        "batch_size": bs,
        "seconds": seconds,
        "images_per_second": len(probs) / seconds,
        "names": [os.path.basename(f) for f in files],
        "probabilities": probs.tolist(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, help="cxr run folder with model.json + model.safetensors")
    ap.add_argument("--images", required=True, help="folder of PNG / DICOM files (not walked)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--json", action="store_true",
                    help="print one JSON object (with per-file probabilities) as the last line of stdout")
    args = ap.parse_args()
    if args.threads < 1:
        ap.error("--threads must be at least 1")
    torch.set_num_threads(args.threads)
    try:
        card = read_card(args.run)
        # Warm-up, untimed: a throwaway model on a zero batch of the card's batch and input
        # size (cxr's bench process has run the same shapes before its predict rounds).
        s = card["input_size"]
        with torch.inference_mode():
            SeedCnn().eval()(torch.zeros(card["batch_size"], 1, s, s))
        result = predict(args)
    except InputError as e:
        sys.exit(f"error: {e}")
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    log(f"torch {torch.__version__}, {result['threads']} thread(s): {result['images']} images "
        f"in {result['seconds']:.3f} s ({result['images_per_second']:.1f} images/s)")
    if args.json:
        print(json.dumps(result), flush=True)
    else:
        for k, v in result.items():
            if k not in ("names", "probabilities"):
                print(f"{k}: {v}")


if __name__ == "__main__":
    main()
