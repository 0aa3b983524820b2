#!/usr/bin/env bash
# Build the one archive of Python packages benchmarks/gpu_check.py needs on the lent GPU machine.
#
# The GPU machine (see docs/gpu.md) has Python 3.12, torch 2.11 (CUDA 13), transformers 5.17.0,
# accelerate 1.15.0, triton, numpy, pandas, pyarrow, typer, httpx, rich, tqdm ... preinstalled and
# no network, so everything else travels with the device call, at most 64 MiB together with the
# repository. This script, run here (with network):
#
#   1. downloads the exact pinned set below (`pip download --no-deps`, Python 3.12, x86-64
#      manylinux wheels only) into wheels/ (git-ignored, never carried);
#   2. runs scripts/gpu_bundle.py: every requirement of every wheel, version specifier included,
#      checked against the set and the machine's recorded package list; the set installed into a
#      staging folder without Unsloth's web UI (studio/, unsloth_cli/), tests and byte code; packed
#      into gpu_bundle/gpu_bundle.tar.xz (git-ignored; the device call carries this folder) with
#      gpu_bundle/MANIFEST.txt; and the repository + bundle measured against the carry limit.
#
# Usage:  scripts/gpu_wheels.sh [--with-4bit]
#   --with-4bit  also fetch bitsandbytes (43 MB; only 4-bit QLoRA needs it; it does not fit the call)
#
# Pins: unsloth/unsloth_zoo 2026.10.9 is the newest release (checked with `pip index versions
# unsloth` on 2026-12-06) and pins trl<=1.15.0, so trl is 1.15.0; peft 0.21.2, datasets 4.8.5 and
# polars 2.1.0 are paretopo's pins. xformers is left out on purpose: Unsloth imports it only if
# present and falls back to PyTorch SDPA, and its wheels are built against one torch version.
set -euo pipefail

cd "$(git rev-parse --show-toplevel)"
PYTHON=${PYTHON:-python3}
OUT=wheels
BUNDLE=gpu_bundle
WITH_4BIT=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --with-4bit) WITH_4BIT=1; shift ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

PINNED=(
  # Unsloth and what it imports that the machine lacks
  unsloth==2026.10.9 unsloth_zoo==2026.10.9 trl==1.15.0 peft==0.21.2
  torchao==0.18.0 cut_cross_entropy==25.1.1
  tyro==1.0.17 docstring-parser==0.18.0 shtab==1.13.0 typeguard==4.6.1
  msgspec==0.23.0 structlog==26.1.0 json5==0.17.3 nest-asyncio==1.6.0
  pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
  typing-extensions==4.16.0 certifi==2026.10.19.post1
  # datasets (TRL and Unsloth need it)
  datasets==4.8.5 dill==0.4.1 multiprocess==0.70.19 fsspec==2026.2.0
  # paretopo's own dependencies
  polars==2.1.0 polars-runtime-32==2.1.0 moocore==0.3.2 cffi==2.1.1 pycparser==3.12
  platformdirs==4.14.9 math-verify==0.9.0 latex2sympy2_extended==1.11.0
  antlr4-python3-runtime==4.13.2 bm25s==0.3.16 PyStemmer==3.1.0
)
if [[ $WITH_4BIT == 1 ]]; then PINNED+=(bitsandbytes==0.50.2); fi

PLATFORMS=()
for p in manylinux_2_34_x86_64 manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 \
         manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux_2_5_x86_64 manylinux1_x86_64 any; do
  PLATFORMS+=(--platform "$p")
done

mkdir -p "$OUT"
rm -f "$OUT"/*.whl  # exactly the pinned set: a wheel left from other pins would be packed too
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp "${PLATFORMS[@]}" --dest "$OUT" "${PINNED[@]}" \
  2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)

exec "$PYTHON" scripts/gpu_bundle.py "$OUT" "$BUNDLE"
