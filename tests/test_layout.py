"""The architecture, checked: subpackages and the import rules of pyproject.toml (import-linter)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = {"core", "agent", "training", "evaluation", "commands", "tasks", "tools"}


def _lint_imports(config: Path) -> subprocess.CompletedProcess:
    command = Path(sys.executable).parent / "lint-imports"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([str(command), "--config", str(config), "--no-cache"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_package_is_its_subpackages():
    package = ROOT / "paretopo"
    flat = sorted(p.name for p in package.glob("*.py") if p.name != "__init__.py")
    assert flat == [], f"modules outside a subpackage: {flat}"
    assert {p.name for p in package.iterdir() if (p / "__init__.py").exists()} == SUBPACKAGES


def test_import_rules_hold():
    result = _lint_imports(ROOT / "pyproject.toml")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "4 kept, 0 broken" in result.stdout


def test_a_broken_rule_is_reported(tmp_path):
    # the checker sees real imports: training does import the core, so forbidding it must fail
    config = tmp_path / "importlinter.ini"
    config.write_text("[importlinter]\nroot_package = paretopo\n\n[importlinter:contract:1]\n"
                      "name = training without the core\ntype = forbidden\nsource_modules = paretopo.training\n"
                      "forbidden_modules = paretopo.core\n")
    result = _lint_imports(config)
    assert result.returncode != 0 and "BROKEN" in result.stdout
