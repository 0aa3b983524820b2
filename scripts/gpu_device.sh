#!/usr/bin/env bash
# On the lent GPU machine: install one carry set of wheels; with --run, then run the GPU check.
#
# Each device call carries one wheels/setN folder (scripts/gpu_wheels.sh made them, each under the
# 64 MiB carry limit together with the repository). A warm machine keeps /tmp/site between calls,
# so the sets are installed one call each, back to back (the machine stays warm ~30 s after a
# call), and the last call adds --run:
#
#   run(command="bash scripts/gpu_device.sh wheels/set1", carry=["wheels/set1"], timeout_s=120)
#   run(command="bash scripts/gpu_device.sh wheels/set2 --run", carry=["wheels/set2"], timeout_s=560)
#
# --run checks that every set is installed (a machine that went cold in between has lost them:
# it says so and stops), then runs `python3 benchmarks/gpu_check.py --out $OUT/gpu_check` with
# the hub, datasets and Unsloth's statistics offline. Arguments after --run go to gpu_check.py.
set -uo pipefail

SITE=/tmp/site
set_dir=${1:?usage: gpu_device.sh wheels/setN [--run [gpu_check.py arguments]]}
shift
read -r set_index set_total < "$set_dir/CARRY_SET" || { echo "no $set_dir/CARRY_SET: carry a folder made by scripts/gpu_wheels.sh"; exit 2; }

started=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --find-links "$set_dir" --target "$SITE" "$set_dir"/*.whl || { echo "installing $set_dir failed"; exit 3; }
touch "$SITE/.carry-set-$set_index"
echo "installed carry set $set_index of $set_total into $SITE in $(( $(date +%s) - started )) s"

[[ "${1:-}" == "--run" ]] || exit 0
shift
for ((i = 1; i <= set_total; i++)); do
  if [[ ! -e "$SITE/.carry-set-$i" ]]; then
    echo "carry set $i is not installed on this machine (it went cold between calls, or was never sent):"
    echo "run the call for wheels/set$i first, then this one again, back to back"
    exit 4
  fi
done

export PYTHONPATH="$SITE:$PWD" PARETOPO_DATA_DIR="$PWD/data" PYTHONUNBUFFERED=1 \
  HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 UNSLOTH_DISABLE_STATISTICS=1 \
  TOKENIZERS_PARALLELISM=false
OUT_DIR="${OUT:-$PWD/gpu_check_out}/gpu_check"
mkdir -p "$OUT_DIR"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 benchmarks/gpu_check.py --out "$OUT_DIR" --work /tmp/gpu_check_work "$@" 2>&1 | tee "$OUT_DIR/console.log"
exit "${PIPESTATUS[0]}"
