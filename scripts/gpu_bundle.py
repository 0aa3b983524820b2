#!/usr/bin/env python3
"""Check the downloaded GPU wheels against the device machine and pack them into one carried archive.

Called by ``scripts/gpu_wheels.sh`` as ``gpu_bundle.py WHEELS_DIR BUNDLE_DIR`` after it downloaded
the pinned wheels into ``WHEELS_DIR``. It

1. reads every wheel's ``Requires-Dist`` (extras skipped, markers evaluated for CPython 3.12 on
   Linux x86-64) and checks each requirement, version specifier included, against the wheel set
   and the machine's image (``PREINSTALLED``; ``DEVICE_VERSIONS`` where the device tool's KINDS.md
   recorded a version). A requirement nobody provides, or provided at a version outside its
   specifier, stops the build; one preinstalled at an unrecorded version is listed as unverified
   (``scripts/gpu_device.sh`` prints the machine's versions first);
2. installs the set as pip would (each wheel unpacked, ``*.data/purelib|platlib`` merged) into a
   staging folder, leaving out what the check never imports: Unsloth's web UI (``studio/``,
   ``unsloth_cli/``), test folders and byte code;
3. packs it into ``BUNDLE_DIR/gpu_bundle.tar.xz`` (xz -9e) and writes ``BUNDLE_DIR/MANIFEST.txt``;
4. measures what a device call carries: the repository (tracked + untracked-not-ignored files)
   plus the bundle, and stops if that is over the 64 MiB limit less a 1 MiB margin.
"""

from __future__ import annotations

import email.parser
import lzma
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.version import Version

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

# Versions the device tool's KINDS.md recorded for the image (pip list, 2026-11); the others in
# PREINSTALLED are there at a version nobody recorded.
DEVICE_VERSIONS = {
    "accelerate": "1.15.0", "huggingface-hub": "1.33.0", "numpy": "2.5.2", "safetensors": "0.8.0",
    "tokenizers": "0.23.2", "torch": "2.11.0", "transformers": "5.17.0", "triton": "3.6.0",
    "sentencepiece": "0.2.2", "torchvision": "0.26.0", "tiktoken": "0.14.0", "sentence-transformers": "6.0.1",
}

# Left out of the bundle: paths inside the installed set that nothing the check runs imports.
PRUNED_TOP_LEVEL = {"studio", "unsloth_cli"}  # Unsloth's web UI and its command line
PRUNED_NAMES = {"tests", "test", "__pycache__"}

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


def requirement_problems(wheels: list[Path]) -> list[tuple[str, str, str]]:
    """(wheel, requirement, note) for each requirement not met for sure: note "MISSING" (nobody
    provides it), "VERSION <v>" (provided at a version outside the specifier), "unverified
    (preinstalled, version not recorded)", or why an absent optional one does not matter."""
    provided = {canonical(name): version for name, version, _ in map(wheel_metadata, wheels)}
    device = {canonical(name): DEVICE_VERSIONS.get(canonical(name)) for name in PREINSTALLED}
    problems = []
    for wheel in wheels:
        for line in wheel_metadata(wheel)[2]:
            requirement = Requirement(line)
            if requirement.marker is not None and not requirement.marker.evaluate(MARKER_ENVIRONMENT):
                continue
            name = canonical(requirement.name)
            version = provided.get(name) or device.get(name)
            if name not in provided and name not in device:
                problems.append((wheel.name, str(requirement), KNOWN_OPTIONAL.get(name, "MISSING")))
            elif version is None:
                if requirement.specifier:
                    problems.append((wheel.name, str(requirement), "unverified (preinstalled, version not recorded)"))
            elif not requirement.specifier.contains(Version(version), prereleases=True):
                where = "in the bundle" if name in provided else "on the device"
                problems.append((wheel.name, str(requirement), f"VERSION {version} {where}"))
    return problems


def install(wheels: list[Path], target: Path) -> None:
    """Unpack the wheels into ``target`` as ``pip install --target`` lays them out, without the pruned parts."""
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.infolist():
                parts = Path(member.filename).parts
                if ".data" in parts[0] and len(parts) > 2 and parts[1] in ("purelib", "platlib"):
                    parts = parts[2:]  # *.data/purelib/x -> x
                elif parts[0].endswith(".data"):
                    continue  # scripts and headers: the check needs neither
                if parts[0] in PRUNED_TOP_LEVEL or PRUNED_NAMES & set(parts[:-1]) or member.is_dir():
                    continue
                destination = target.joinpath(*parts)
                destination.parent.mkdir(parents=True, exist_ok=True)
                destination.write_bytes(archive.read(member))
                mode = member.external_attr >> 16
                if mode:
                    destination.chmod(mode & 0o777 or 0o644)


def pack(folder: Path, archive: Path) -> None:
    """``folder``'s contents into ``archive`` (tar, xz preset 9 extreme, sorted, no owners)."""
    with tarfile.open(archive, "w:xz", preset=9 | lzma.PRESET_EXTREME) as tar:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                info = tar.gettarinfo(str(path), arcname=path.relative_to(folder).as_posix())
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                with open(path, "rb") as handle:
                    tar.addfile(info, handle)


def repository_bytes() -> int:
    """Bytes of what every device call sends: tracked + untracked-not-ignored files."""
    listing = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             check=True, capture_output=True).stdout.split(b"\0")
    return sum(Path(p.decode()).stat().st_size for p in listing if p and Path(p.decode()).is_file())


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit("usage: gpu_bundle.py WHEELS_DIR BUNDLE_DIR")
    wheels_dir, bundle_dir = Path(sys.argv[1]), Path(sys.argv[2])
    wheels = sorted(wheels_dir.glob("*.whl"))
    if not wheels:
        raise SystemExit(f"no wheels in {wheels_dir}; run scripts/gpu_wheels.sh")
    names = [canonical(wheel_metadata(w)[0]) for w in wheels]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SystemExit(f"more than one version of {duplicates}: one of each, or the install stops")
    lines = [f"{len(wheels)} wheels, {sum(w.stat().st_size for w in wheels) / 2**20:.1f} MiB:"]
    lines += [f"    {w.stat().st_size / 2**20:7.2f} MiB  {w.name}" for w in wheels]
    problems = requirement_problems(wheels)
    lines.append("requirements not met for sure:" if problems else "every requirement is met, versions included")
    lines += [f"    {req}  (of {wheel}): {note}" for wheel, req, note in problems]

    bundle_dir.mkdir(parents=True, exist_ok=True)
    archive = bundle_dir / "gpu_bundle.tar.xz"
    with tempfile.TemporaryDirectory(prefix="gpu-bundle-") as staging:
        install(wheels, Path(staging))
        installed = sum(p.stat().st_size for p in Path(staging).rglob("*") if p.is_file())
        pack(Path(staging), archive)
    repo, bundle = repository_bytes(), archive.stat().st_size
    carried = repo + bundle
    lines += [f"installed set (without {', '.join(sorted(PRUNED_TOP_LEVEL))}, tests, byte code): "
              f"{installed / 2**20:.1f} MiB; {archive}: {bundle / 2**20:.1f} MiB",
              f"a device call carries: repository {repo / 2**20:.1f} MiB + bundle {bundle / 2**20:.1f} MiB = "
              f"{carried / 2**20:.1f} MiB (limit {CARRY_LIMIT_BYTES / 2**20:.0f} MiB, margin "
              f"{SAFETY_MARGIN_BYTES / 2**20:.0f} MiB)"]
    manifest = "\n".join(lines) + "\n"
    (bundle_dir / "MANIFEST.txt").write_text(manifest)
    print(manifest, end="")
    if any(note == "MISSING" or note.startswith("VERSION") for *_, note in problems):
        raise SystemExit("some requirements are missing or at the wrong version (see above)")
    if carried > CARRY_LIMIT_BYTES - SAFETY_MARGIN_BYTES:
        raise SystemExit("the repository and the bundle do not fit one device call")


if __name__ == "__main__":
    main()
