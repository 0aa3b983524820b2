#!/usr/bin/env bash
# On the lent GPU machine, in ONE device call: unpack the package bundle, print versions, run the check.
#
# The call (docs/gpu.md; gpu_bundle/ made here by scripts/gpu_wheels.sh, right before it):
#
#   run(command="bash scripts/gpu_device.sh", carry=["gpu_bundle"], timeout_s=480)
#
# 1. prints the machine's own versions (pip list: torch, transformers, peft, pyarrow, typer, httpx,
#    accelerate, triton) and the GPU, before anything is installed;
# 2. unpacks gpu_bundle/gpu_bundle.tar.xz into a fresh /tmp/site.XXXX (Python's tarfile: no xz
#    binary needed) and prints the carried versions (unsloth, unsloth_zoo, trl, peft, datasets, polars);
# 3. runs `python3 benchmarks/gpu_check.py --out $OUT/gpu_check --work <fresh /tmp folder>
#    --deadline-s <what is left of CALL_LIMIT_S, less a margin>` with the hub, datasets and Unsloth's
#    statistics offline. Arguments given to this script go to gpu_check.py.
#
# $OUT/gpu_check/ comes back: gpu_check.json, gpu_check.md, phases.log, console.log, versions.txt.
set -uo pipefail

CALL_LIMIT_S=${CALL_LIMIT_S:-480}   # the run's timeout_s
MARGIN_S=${MARGIN_S:-25}            # writing the results and returning them
started=$(date +%s)
BUNDLE=gpu_bundle/gpu_bundle.tar.xz
OUT_DIR="${OUT:-$PWD/gpu_check_out}/gpu_check"
mkdir -p "$OUT_DIR"
[[ -f "$BUNDLE" ]] || { echo "no $BUNDLE: run scripts/gpu_wheels.sh here, then carry gpu_bundle"; exit 2; }

{
  echo "== the machine's packages (before the bundle)"
  python3 -m pip list 2>/dev/null | grep -iE '^(torch|transformers|peft|pyarrow|typer|httpx|accelerate|triton|numpy) ' \
    || echo "pip list failed"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "nvidia-smi failed"
} 2>&1 | tee "$OUT_DIR/versions.txt"

SITE=$(mktemp -d /tmp/site.XXXXXX)
python3 - "$BUNDLE" "$SITE" <<'EOF' || { echo "unpacking $BUNDLE failed"; exit 3; }
import sys, tarfile
with tarfile.open(sys.argv[1]) as archive:
    archive.extractall(sys.argv[2], filter="data")
EOF
echo "unpacked $BUNDLE into $SITE in $(( $(date +%s) - started )) s" | tee -a "$OUT_DIR/versions.txt"

export PYTHONPATH="$SITE:$PWD" PARETOPO_DATA_DIR="$PWD/data" PYTHONUNBUFFERED=1 \
  HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 UNSLOTH_DISABLE_STATISTICS=1 \
  TOKENIZERS_PARALLELISM=false
{
  echo "== carried (first on PYTHONPATH)"
  python3 - <<'EOF'
import importlib.metadata as metadata
for name in ("unsloth", "unsloth_zoo", "trl", "peft", "datasets", "polars", "torchao", "torch", "transformers"):
    try:
        print(f"{name} {metadata.version(name)}")
    except metadata.PackageNotFoundError:
        print(f"{name} MISSING")
EOF
} 2>&1 | tee -a "$OUT_DIR/versions.txt"

WORK=$(mktemp -d /tmp/gpu_check_work.XXXXXX)  # fresh each time: a rerun never appends to old step logs
deadline=$(( CALL_LIMIT_S - ($(date +%s) - started) - MARGIN_S ))
echo "gpu_check deadline: ${deadline} s (call limit ${CALL_LIMIT_S} s)"
python3 benchmarks/gpu_check.py --out "$OUT_DIR" --work "$WORK" --deadline-s "$deadline" "$@" 2>&1 \
  | tee "$OUT_DIR/console.log"
exit "${PIPESTATUS[0]}"
