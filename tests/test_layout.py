"""The architecture, checked: subpackages and the import rules of pyproject.toml (import-linter)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = {"core", "agent", "training", "evaluation", "commands", "tasks", "tools"}


def _lint_imports(config: Path, root: Path = ROOT) -> subprocess.CompletedProcess:
    command = Path(sys.executable).parent / "lint-imports"
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(command), "--config", str(config), "--no-cache"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_package_is_its_subpackages():
    package = ROOT / "paretopo"
    flat = sorted(p.name for p in package.glob("*.py") if p.name != "__init__.py")
    assert flat == [], f"modules outside a subpackage: {flat}"
    assert {p.name for p in package.iterdir() if (p / "__init__.py").exists()} == SUBPACKAGES


def test_import_rules_hold():
    result = _lint_imports(ROOT / "pyproject.toml")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "7 kept, 0 broken" in result.stdout


def test_a_broken_rule_is_reported(tmp_path):
    # the checker sees real imports: training does import the core, so forbidding it must fail
    config = tmp_path / "importlinter.ini"
    config.write_text("[importlinter]\nroot_package = paretopo\n\n[importlinter:contract:1]\n"
                      "name = training without the core\ntype = forbidden\nsource_modules = paretopo.training\n"
                      "forbidden_modules = paretopo.core\n")
    result = _lint_imports(config)
    assert result.returncode != 0 and "BROKEN" in result.stdout


def test_a_file_cycle_trl_outside_the_trainer_and_an_app_importing_training_are_each_reported(tmp_path):
    # the three contracts of issue 25, on a copy of the package with one offending import each
    for folder in ("paretopo", "apps"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    with open(tmp_path / "paretopo/training/trainer.py", "a") as trainer:
        trainer.write("\nfrom paretopo.training import train  # noqa: E402\n")  # train -> trainer -> train
    with open(tmp_path / "paretopo/evaluation/runlog.py", "a") as runlog:
        runlog.write("\nimport trl  # noqa: E402\n")
    (tmp_path / "apps/offender.py").write_text("from paretopo.training.train import train_run\n")
    result = _lint_imports(tmp_path / "pyproject.toml", root=tmp_path)
    report = " ".join(result.stdout.split())
    assert result.returncode != 0
    assert "- .trainer -> .train" in report or "- .train -> .trainer" in report
    assert "paretopo.evaluation.runlog -> trl" in report
    assert "apps.offender -> paretopo.training.train" in report
    assert "4 kept, 3 broken" in report


def test_the_repository_stays_small_enough_to_carry_to_a_gpu_machine():
    """Tracked files under 20 MiB: a device call carries the repository with the GPU wheels (docs/gpu.md)."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    listed = subprocess.run(["git", "-C", str(root), "ls-files", "-z"], capture_output=True, check=True).stdout
    files = [root / name for name in listed.decode().split("\0") if name]
    if not files:
        pytest.skip("not a git checkout")
    total = sum(path.stat().st_size for path in files if path.is_file())
    assert total < 20 * 2**20, f"tracked files are {total / 2**20:.2f} MiB"
