#!/usr/bin/env bash
# cxr's GPU check, written by `cargo xtask gpu-check` beside the binaries it built:
#   1. the GPU tests of cxr-train (CUDA parity of the seed CNN in f32-strict / TF32 /
#      bf16, ResNet18's training step against PyTorch's float64 reference in the same
#      three, short CUDA runs of both networks in every precision), with
#      CXR_REQUIRE_GPU=cuda so that none can pass by skipping;
#   2. cxr's ResNet18 at 224 px (PneumoniaMNIST resized, batch 64, 5 epochs, from scratch)
#      and torchvision's ResNet18 with the same recipe (torch_resnet18.py) on the same GPU;
#   3. one table: times, images/s, ratio, AUCs, test results (also written to
#      OUT/gpu-check.md).
#
# Usage: bash run.sh [--out DIR] [--part all|tests|train] [--device cuda|cpu] [--epochs N]
#                    [--image-size N] [--limit N] [--timeout SECONDS]
# --part tests runs step 1 alone, --part train step 2 alone (each with the table), for machines
# that take the bundle in two loads. Binaries shipped as NAME.xz are unpacked first (every run).
# Data: $CXR_DATA_DIR/pneumoniamnist.npz; fixtures: $CXR_FIXTURES (both default to the
# shared/ folder beside the checkout this bundle was built in, ../../../shared).
# The CUDA libraries (libcublas.so.13 & co.) are taken from PyTorch's nvidia wheels when
# the loader does not find them already.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT="$HERE/results"
DEVICE=cuda
EPOCHS=5
SIZE=224
BATCH=64
LIMIT=""
TIMEOUT=300
PART=all
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT=$2; shift 2 ;;
    --part) PART=$2; shift 2 ;;
    --device) DEVICE=$2; shift 2 ;;
    --epochs) EPOCHS=$2; shift 2 ;;
    --image-size) SIZE=$2; shift 2 ;;
    --limit) LIMIT=$2; shift 2 ;;
    --timeout) TIMEOUT=$2; shift 2 ;;
    *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

SHARED=$(cd "$HERE/../../.." 2>/dev/null && pwd)/shared
DATA_DIR=${CXR_DATA_DIR:-$SHARED/data}
export CXR_FIXTURES=${CXR_FIXTURES:-$SHARED/fixtures}
DATA="$DATA_DIR/pneumoniamnist.npz"
PYTHON=${PYTHON:-python3}
case "$PART" in
  all) needs=(cxr train-tests); files=("$DATA" "$CXR_FIXTURES/resnet18_step.safetensors") ;;
  tests) needs=(train-tests); files=("$CXR_FIXTURES/resnet18_step.safetensors") ;;
  train) needs=(cxr); files=("$DATA") ;;
  *) echo "run.sh: --part takes all, tests or train, not $PART" >&2; exit 2 ;;
esac
for b in "${needs[@]}"; do
  if [ -f "$HERE/$b.xz" ]; then
    "$PYTHON" -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
      "$HERE/$b.xz" "$HERE/.$b.tmp" && chmod +x "$HERE/.$b.tmp" && mv -f "$HERE/.$b.tmp" "$HERE/$b" \
      || { echo "run.sh: cannot unpack $HERE/$b.xz" >&2; exit 2; }
  fi
  files+=("$HERE/$b")
done
for f in "${files[@]}"; do
  if [ ! -f "$f" ]; then
    echo "run.sh: $f is missing (set CXR_DATA_DIR / CXR_FIXTURES, or rebuild with cargo xtask gpu-check)" >&2
    exit 2
  fi
done
mkdir -p "$OUT" || exit 2
OUT=$(cd "$OUT" && pwd)

if [ "$DEVICE" != cpu ]; then
  nv=$("$PYTHON" - 2>/dev/null <<'EOF'
import glob, os
try:
    import nvidia
except ImportError:
    raise SystemExit
for base in nvidia.__path__:
    for d in sorted(glob.glob(os.path.join(base, "*", "lib")) + glob.glob(os.path.join(base, "cu*", "lib"))):
        print(d)
EOF
)
  if [ -n "$nv" ]; then
    export LD_LIBRARY_PATH="$(echo "$nv" | paste -sd:)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  fi
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$OUT/gpu.txt" 2>&1
fi
GPU=$(head -1 "$OUT/gpu.txt" 2>/dev/null || echo "$DEVICE")
echo "== GPU check on $GPU; results in $OUT"

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# 1. The GPU tests (their names say cuda).
if [ "$DEVICE" = cpu ]; then req=""; else req=cuda; fi
tests_rc=skipped; tests_line="not run (--part $PART)"
if [ "$PART" != train ]; then
  echo "== GPU tests"
  t0=$(now)
  CXR_REQUIRE_GPU=$req timeout "$TIMEOUT" "$HERE/train-tests" cuda --test-threads=1 --nocapture \
    > "$OUT/tests.log" 2>&1
  tests_rc=$?
  tests_line=$(grep -E "^test result:" "$OUT/tests.log" | tail -1)
  tests_time=$(secs "$t0" "$(now)")
  echo "   exit $tests_rc: ${tests_line:-no result line} ($tests_time s)"
fi

limit_args=()
if [ -n "$LIMIT" ]; then limit_args=(--limit "$LIMIT"); fi

cxr_rc=skipped; cxr_wall="—"; torch_rc=skipped; torch_wall="—"
if [ "$PART" != tests ]; then
# 2a. cxr's ResNet18.
echo "== cxr resnet18, $SIZE px, $EPOCHS epochs, batch $BATCH, $DEVICE"
rm -rf "$OUT/cxr-resnet18"
t0=$(now)
timeout "$TIMEOUT" "$HERE/cxr" train --model resnet18 --weights none --image-size "$SIZE" \
  --epochs "$EPOCHS" --batch-size "$BATCH" --device "$DEVICE" "${limit_args[@]}" \
  --data "$DATA" --out "$OUT/cxr-resnet18" > "$OUT/cxr.log" 2>&1
cxr_rc=$?
cxr_wall=$(secs "$t0" "$(now)")
echo "   exit $cxr_rc ($cxr_wall s)"

# 2b. torchvision's ResNet18, the same recipe.
echo "== PyTorch resnet18, the same recipe"
t0=$(now)
timeout "$TIMEOUT" "$PYTHON" "$HERE/torch_resnet18.py" --device "$DEVICE" --size "$SIZE" \
  --epochs "$EPOCHS" --batch-size "$BATCH" --keep last --label-smoothing 0.1 \
  "${limit_args[@]}" --data "$DATA" --json > "$OUT/torch.json" 2> "$OUT/torch.log"
torch_rc=$?
torch_wall=$(secs "$t0" "$(now)")
echo "   exit $torch_rc ($torch_wall s)"
fi

# 3. The table.
"$PYTHON" - "$OUT" "$GPU" "$SIZE" "$EPOCHS" "$BATCH" "$tests_rc" "$tests_line" \
  "$cxr_rc" "$cxr_wall" "$torch_rc" "$torch_wall" "${req:-unset}" <<'EOF' | tee "$OUT/gpu-check.md"
import json, sys
(out, gpu, size, epochs, batch, tests_rc, tests_line, cxr_rc, cxr_wall, torch_rc, torch_wall,
 required) = sys.argv[1:]
def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
m = load(f"{out}/cxr-resnet18/metrics.json") if cxr_rc == "0" else None
t = None
if torch_rc == "0":
    try:
        with open(f"{out}/torch.json") as f:
            t = json.loads(f.read().strip().splitlines()[-1])
    except (OSError, ValueError, IndexError):
        t = None
def fmt(v, spec):
    return "—" if v is None else format(v, spec)
cxr_train = m["timing"]["train_seconds"] if m else None
cxr_ips = m["timing"].get("train_images_per_second") if m else None
torch_train = t["train_seconds"] if t else None
torch_ips = t.get("train_images_per_second") if t else None
ratio = cxr_train / torch_train if cxr_train and torch_train else None
print(f"## GPU check: {gpu}\n")
print(f"ResNet18 from scratch, {size} px (bilinear from 28 px), {epochs} epochs, batch {batch}, "
      "AdamW one-cycle, label smoothing 0.1, last epoch kept.\n")
print("| | cxr | PyTorch | cxr / PyTorch |")
print("|---|---|---|---|")
print(f"| training seconds ({epochs} epochs, with per-epoch validation) | {fmt(cxr_train, '.1f')} | "
      f"{fmt(torch_train, '.1f')} | {fmt(ratio, '.2f')} |")
print(f"| training images/s | {fmt(cxr_ips, '.0f')} | {fmt(torch_ips, '.0f')} | |")
print(f"| wall seconds of the command (start-up, data, test) | {cxr_wall} | {torch_wall} | |")
print(f"| validation AUC | {fmt(m and m['val']['auc'], '.4f')} | {fmt(t and t.get('val_auc'), '.4f')} | |")
print(f"| test AUC | {fmt(m and m['test']['auc'], '.4f')} | {fmt(t and t.get('test_auc'), '.4f')} | |")
print(f"| exit status | {cxr_rc} | {torch_rc} | |")
print(f"\nGPU tests (`train-tests cuda`, CXR_REQUIRE_GPU={required}): exit {tests_rc}, "
      f"{tests_line or 'no result line'}")
if t:
    print(f"\nPyTorch {t.get('torch_version', '?')}, torchvision {t.get('torchvision_version', '?')}.")
EOF
# The check fails when any part that ran failed.
for rc in "$tests_rc" "$cxr_rc" "$torch_rc"; do
  [ "$rc" = 0 ] || [ "$rc" = skipped ] || exit 1
done
