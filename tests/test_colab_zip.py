"""``make colab-zip`` (scripts/colab_zip.py): the file a Colab user uploads next to a notebook.

It must hold the project, its data and notebooks under one folder, and none of what a checkout
gathers after ``make demo`` (``.venv/``, whose packages carry their own ``pyproject.toml``,
``runs/``, caches); the notebooks' install cell, run on it as on Colab, installs that folder.
"""

from __future__ import annotations

import importlib.util
import subprocess
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("colab_zip", ROOT / "scripts" / "colab_zip.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_colab_zip_runs_the_script():
    dry = subprocess.run(["make", "-n", "colab-zip"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "scripts/colab_zip.py" in dry


def test_colab_zip_holds_the_project_and_its_data_and_nothing_a_demo_leaves(tmp_path):
    checkout = tmp_path / "checkout"
    files = {"pyproject.toml": "[project]\nname='paretopo'\n", "README.md": "r", "paretopo/__init__.py": "",
             "data/tiny_policy/model.safetensors": "w", "notebooks/01.py": "n", "apps/a.py": "a",
             ".gitignore": ".venv/\n/runs/\n__pycache__/\n", "results/big.parquet": "x", "tests/t.py": "t"}
    for name, text in files.items():
        (checkout / name).parent.mkdir(parents=True, exist_ok=True)
        (checkout / name).write_text(text)
    subprocess.run(["git", "init", "-q", str(checkout)], check=True)
    subprocess.run(["git", "-C", str(checkout), "add", "."], check=True)
    # after `make demo`: a virtual environment with a package's own pyproject, runs, caches, a new file
    for name in (".venv/lib/python3.11/site-packages/jupyterlab/tests/mock_packages/ext/pyproject.toml",
                 "runs/demo/steps.parquet", "paretopo/__pycache__/x.pyc"):
        (checkout / name).parent.mkdir(parents=True, exist_ok=True)
        (checkout / name).write_text("junk")
    (checkout / "paretopo" / "new_module.py").write_text("")  # not committed yet, not ignored: shipped
    module = _script()
    count, _ = module.build(tmp_path / "paretopo.zip", root=checkout)
    names = sorted(zipfile.ZipFile(tmp_path / "paretopo.zip").namelist())
    assert names == sorted(f"paretopo/{n}" for n in ("pyproject.toml", "README.md", "paretopo/__init__.py",
                                                     "paretopo/new_module.py", "data/tiny_policy/model.safetensors",
                                                     "notebooks/01.py", "apps/a.py"))
    assert count == len(names)


def test_colab_zip_of_this_checkout_installs_through_the_notebooks_install_cell(tmp_path, monkeypatch):
    import test_notebooks

    module = _script()
    module.build(tmp_path / "paretopo.zip")
    names = zipfile.ZipFile(tmp_path / "paretopo.zip").namelist()
    assert "paretopo/data/tiny_policy/model.safetensors" in names and "paretopo/pyproject.toml" in names
    assert not [n for n in names if n.startswith(("paretopo/.venv/", "paretopo/runs/", "paretopo/results/"))]
    calls = test_notebooks.run_install_cell("01_quickstart_cpu", tmp_path, monkeypatch)
    project = (tmp_path / "paretopo-unzipped" / "paretopo").resolve()
    assert calls[0][1:] == ["-m", "pip", "install", "--quiet", f"{project}[apps]"]
    import os

    assert os.environ["PARETOPO_DATA_DIR"] == str(project / "data")
