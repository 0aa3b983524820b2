#!/usr/bin/env python3
"""Check a downloaded wheel set against the GPU machine and split it into carry sets.

Called by ``scripts/gpu_wheels.sh`` as ``gpu_wheel_sets.py WHEELS_DIR`` after it downloaded the
pinned wheels into ``WHEELS_DIR/all``. It

1. reads every wheel's ``Requires-Dist`` (extras skipped, markers evaluated for CPython 3.12 on
   Linux x86-64) and reports each requirement that is neither in the set nor preinstalled on
   the machine (``PREINSTALLED``: the package list of the machine's image, KINDS.md of the
   device tool, 2026-11-17), marking the ones known to be optional;
2. packs the wheels into ``WHEELS_DIR/set1``, ``set2``, ... (first-fit decreasing) so that each
   set plus what the repository sends to the machine stays under the carry limit;
3. writes ``WHEELS_DIR/setN/CARRY_SET`` ("N TOTAL", read by ``scripts/gpu_device.sh``) and
   ``WHEELS_DIR/manifest.txt``, and prints the manifest.

What the repository sends is measured, not assumed: tracked plus untracked-not-ignored files
(``git ls-files --cached --others --exclude-standard``), which is what travels with every call.
"""

from __future__ import annotations

import email.parser
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

CARRY_LIMIT_BYTES = 64 * 1024 * 1024
SAFETY_MARGIN_BYTES = 1024 * 1024  # room for files added between packing and the device call

# The machine's image ('cuda'), as listed in the device tool's KINDS.md (read 2026-11-17).
PREINSTALLED = set("""
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build
certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings
cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils
execnet filelock flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py
hf-xet httpcore httpx huggingface-hub humanize hypothesis idna imageio iniconfig interface-meta jax
jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader lightning
lightning-utilities linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe
matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch mypy-extensions
nanobind narwhals networkx ninja numba numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti
nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand
nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13 nvidia-ml-py nvidia-nccl-cu13
nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript
opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas
pathspec patsy peft pillow pip pluggy portalocker prometheus-client propcache protobuf psutil
pyarrow pybind11 py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions pytest
pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist python-dateutil
pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image
scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six
sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore
threadpoolctl tifffile tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric
torchmetrics torchvision tqdm transformers treescope triton typer typing-extensions typing-inspect
urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp
""".split())

# Requirements left out on purpose (imported by Unsloth only when present, or only for paths the
# check does not take).
KNOWN_OPTIONAL = {
    "xformers": "Unsloth falls back to PyTorch SDPA without it",
    "bitsandbytes": "only 4-bit QLoRA needs it (gpu_wheels.sh --with-4bit)",
    "diffusers": "diffusion models only",
    "hf-transfer": "faster hub downloads; the machine has no network",
}

MARKER_ENVIRONMENT = {
    **default_environment(),
    "implementation_name": "cpython",
    "platform_machine": "x86_64",
    "platform_system": "Linux",
    "sys_platform": "linux",
    "os_name": "posix",
    "python_version": "3.12",
    "python_full_version": "3.12.3",
    "platform_python_implementation": "CPython",
    "extra": "",
}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_metadata(path: Path) -> tuple[str, str, list[str]]:
    """(name, version, Requires-Dist lines) read from a wheel's METADATA."""
    with zipfile.ZipFile(path) as archive:
        meta_name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        message = email.parser.Parser().parsestr(archive.read(meta_name).decode("utf-8"))
    return message["Name"], message["Version"], message.get_all("Requires-Dist") or []


def unmet_requirements(wheels: list[Path]) -> list[tuple[str, str, str]]:
    """(wheel, requirement, note) for each requirement neither in the set nor preinstalled."""
    present = {canonical(wheel_metadata(w)[0]) for w in wheels} | {canonical(n) for n in PREINSTALLED}
    unmet = []
    for wheel in wheels:
        for line in wheel_metadata(wheel)[2]:
            requirement = Requirement(line)
            if requirement.marker is not None and not requirement.marker.evaluate(MARKER_ENVIRONMENT):
                continue
            name = canonical(requirement.name)
            if name not in present:
                unmet.append((wheel.name, str(requirement), KNOWN_OPTIONAL.get(name, "MISSING")))
    return unmet


def repository_bytes() -> int:
    """Bytes of what every device call sends: tracked + untracked-not-ignored files."""
    listing = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             check=True, capture_output=True).stdout.split(b"\0")
    return sum(Path(p.decode()).stat().st_size for p in listing if p and Path(p.decode()).is_file())


def pack(wheels: list[Path], capacity: int) -> list[list[Path]]:
    """First-fit decreasing bin packing of wheels by file size."""
    sets: list[list[Path]] = []
    loads: list[int] = []
    for wheel in sorted(wheels, key=lambda w: w.stat().st_size, reverse=True):
        size = wheel.stat().st_size
        if size > capacity:
            raise SystemExit(f"{wheel.name} ({size / 2**20:.1f} MiB) alone exceeds a carry set's room "
                             f"({capacity / 2**20:.1f} MiB)")
        for index, load in enumerate(loads):
            if load + size <= capacity:
                sets[index].append(wheel)
                loads[index] += size
                break
        else:
            sets.append([wheel])
            loads.append(size)
    return sets


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "wheels")
    wheels = sorted((root / "all").glob("*.whl"))
    if not wheels:
        raise SystemExit(f"no wheels in {root / 'all'}; run scripts/gpu_wheels.sh")
    names = [canonical(wheel_metadata(w)[0]) for w in wheels]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SystemExit(f"more than one version of {duplicates}: one of each, or the install stops")

    repo = repository_bytes()
    capacity = CARRY_LIMIT_BYTES - repo - SAFETY_MARGIN_BYTES
    lines = [f"repository sends {repo / 2**20:.1f} MiB per call; carry limit {CARRY_LIMIT_BYTES / 2**20:.0f} MiB; "
             f"room per set {capacity / 2**20:.1f} MiB (1 MiB margin)"]
    sets = pack(wheels, capacity)
    for index, members in enumerate(sets, start=1):
        folder = root / f"set{index}"
        folder.mkdir()
        # read by scripts/gpu_device.sh: which set this is, and how many must be installed before --run
        (folder / "CARRY_SET").write_text(f"{index} {len(sets)}\n")
        total = 0
        for wheel in members:
            shutil.move(str(wheel), folder / wheel.name)
            total += wheel.stat().st_size if wheel.exists() else (folder / wheel.name).stat().st_size
        lines.append(f"{folder}: {len(members)} wheels, {total / 2**20:.1f} MiB "
                     f"(+ repository = {(total + repo) / 2**20:.1f} MiB)")
        for wheel in sorted(members, key=lambda w: w.name):
            lines.append(f"    {(folder / wheel.name).stat().st_size / 2**20:7.2f} MiB  {wheel.name}")
    (root / "all").rmdir()
    unmet = unmet_requirements(sorted(root.glob("set*/*.whl")))
    if unmet:
        lines.append("requirements neither in the set nor preinstalled:")
        lines += [f"    {req}  (of {wheel}): {note}" for wheel, req, note in unmet]
    else:
        lines.append("every requirement is in the set or preinstalled")
    manifest = "\n".join(lines) + "\n"
    (root / "manifest.txt").write_text(manifest)
    print(manifest, end="")
    if any(note == "MISSING" for *_, note in unmet):
        raise SystemExit("some requirements are missing (see above)")


if __name__ == "__main__":
    main()
