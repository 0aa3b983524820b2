"""scripts/gpu_bundle.py: requirements checked with their version specifiers, the set installed
without Unsloth's web UI and tests, packed into one archive that unpacks to the same files."""

from __future__ import annotations

import importlib.util
import tarfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def bundle_module():
    spec = importlib.util.spec_from_file_location("gpu_bundle", REPO / "scripts" / "gpu_bundle.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_wheel(folder: Path, name: str, version: str, requires: list[str], files: dict[str, str]) -> Path:
    path = folder / f"{name}-{version}-py3-none-any.whl"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{name}-{version}.dist-info/METADATA", metadata)
        for member, text in files.items():
            archive.writestr(member, text)
    return path


def test_requirements_are_checked_with_their_version_specifiers(tmp_path):
    bundle = bundle_module()
    wheels = [
        fake_wheel(tmp_path, "alpha", "1.0", ["beta>=2", "transformers<5", "peft>=0.1", "torch>=2.0",
                                              "nowhere", "xformers", 'winonly; sys_platform == "win32"'], {}),
        fake_wheel(tmp_path, "beta", "1.5", [], {}),
    ]
    problems = {requirement: note for _, requirement, note in bundle.requirement_problems(wheels)}
    assert problems == {
        "beta>=2": "VERSION 1.5 in the bundle",            # a carried wheel at the wrong version
        "transformers<5": "VERSION 5.17.0 on the device",  # the machine's recorded version
        "peft>=0.1": "unverified (preinstalled, version not recorded)",
        "nowhere": "MISSING",
        "xformers": bundle.KNOWN_OPTIONAL["xformers"],
    }  # torch>=2.0 holds (2.11.0 recorded); the Windows-only one does not apply


def test_the_installed_set_leaves_out_the_web_ui_and_tests_and_round_trips(tmp_path):
    bundle = bundle_module()
    wheel = fake_wheel(tmp_path, "unsloth", "1.0", [], {
        "unsloth/__init__.py": "x = 1\n", "unsloth/kernels/a.py": "", "unsloth/tests/test_a.py": "",
        "studio/frontend/app.js": "", "unsloth_cli/main.py": "", "unsloth-1.0.data/purelib/extra.py": "y = 2\n",
        "unsloth-1.0.data/scripts/run": "",
    })
    site = tmp_path / "site"
    bundle.install([wheel], site)
    files = sorted(p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file())
    assert files == ["extra.py", "unsloth-1.0.dist-info/METADATA", "unsloth/__init__.py", "unsloth/kernels/a.py"]
    bundle.pack(site, tmp_path / "b.tar.xz")
    with tarfile.open(tmp_path / "b.tar.xz") as archive:
        archive.extractall(tmp_path / "out", filter="data")
    assert (tmp_path / "out" / "unsloth" / "__init__.py").read_text() == "x = 1\n"
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*")
                  if p.is_file()) == files
