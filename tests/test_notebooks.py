"""The notebooks: structure, and execution on a CPU with nbclient (about 2.5 minutes for all four,
so it stays in the default run and CI executes every notebook).

Fast checks, per notebook: it opens with what ``paretopo.commands.home`` decides (the "Open in Colab" badge
of the published repository, or, while there is none, a note on how to open it in Colab), has
exactly one install cell, whose ``REPOSITORY`` is ``paretopo.commands.home.PUBLISHED_REPOSITORY`` and
which, on Colab without a repository, installs an uploaded folder, zip or wheel or says what to
upload (run here with a fake ``google.colab`` and a recording ``subprocess.run``), is stored
without outputs, and its jupytext pair (``notebooks/<name>.py``, percent format,
see ``notebooks/jupytext.toml``) holds the same cells.

Slow checks run every code cell in a fresh kernel, with runs written under a temporary folder
(``PARETOPO_RUNS_DIR``). 01 runs exactly as users see it (about 2 minutes on 2 busy cores). 02 and
03 default to GPU settings and 04 to a ten-minute comparison; their ``parameters`` cell reads
``PARETOPO_NOTEBOOK_PROFILE``, and ``cpu-test`` switches the same cells to the tiny CPU policy and
a few steps (under a minute each).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

from paretopo.commands.home import PUBLISHED_REPOSITORY, colab_badge

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
QUICKSTART = "01_quickstart_cpu"
PROFILED = ("02_math_python_tool_unsloth", "03_multihop_qa_search", "04_frontiers_and_baselines")
NOTEBOOKS = (QUICKSTART, *PROFILED)
INSTALL_COMMAND = re.compile(r"\bpip\b.*\binstall\b|\binstall\b.*\bpip\b", re.DOTALL)
CELL_TIMEOUT_S = 600


def read_notebook(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)


def code_cells(notebook: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def execute(name: str, workdir: Path) -> nbformat.NotebookNode:
    """Run every cell of the notebook in a fresh kernel whose working folder is ``workdir``."""
    notebook = read_notebook(name)
    client = NotebookClient(notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(workdir)}})
    client.execute()
    return notebook


def test_every_notebook_has_a_percent_script_pair():
    assert sorted(p.stem for p in NOTEBOOK_DIR.glob("*.ipynb")) == sorted(NOTEBOOKS)
    assert sorted(p.stem for p in NOTEBOOK_DIR.glob("*.py")) == sorted(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_opens_with_the_colab_badge_or_note_of_paretopo_home(name):
    notebook = read_notebook(name)
    first = notebook.cells[0]
    assert first.cell_type == "markdown"
    assert first.source.startswith(colab_badge(name))
    text = "\n".join(cell.source for cell in notebook.cells)
    assert "paretopo-org" not in text  # the placeholder organisation is gone
    if PUBLISHED_REPOSITORY is None:
        assert "colab.research.google.com/github" not in text  # no badge pointing at nothing
    install = code_cells(notebook)[0].source
    assert f"REPOSITORY = {PUBLISHED_REPOSITORY!r}" in install


def run_install_cell(name: str, folder: Path, monkeypatch) -> list[list[str]]:
    """Run the notebook's install cell as on Colab (a fake ``google.colab``) in ``folder``, with
    ``subprocess.run`` recording instead of installing; returns the recorded commands."""
    calls: list[list[str]] = []
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(subprocess, "run", lambda command, **_: calls.append([str(c) for c in command]))
    monkeypatch.setenv("PARETOPO_DATA_DIR", os.environ.get("PARETOPO_DATA_DIR", ""))  # restored afterwards
    monkeypatch.chdir(folder)
    exec(compile(code_cells(read_notebook(name))[0].source, f"{name}-install", "exec"), {"__name__": "__main__"})
    return calls


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_install_cell_on_colab_without_an_upload_says_what_to_upload(name, tmp_path, monkeypatch, capsys):
    if PUBLISHED_REPOSITORY is not None:
        pytest.skip("the project is published: the install cell clones it")
    with pytest.raises(SystemExit, match="no published repository.*Upload a zip of the repository"):
        run_install_cell(name, tmp_path, monkeypatch)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_install_cell_on_colab_installs_an_uploaded_zip_and_its_data(name, tmp_path, monkeypatch, capsys):
    if PUBLISHED_REPOSITORY is not None:
        pytest.skip("the project is published: the install cell clones it")
    with zipfile.ZipFile(tmp_path / "paretopo.zip", "w") as archive:  # as GitHub's "Download ZIP" nests it
        archive.writestr("paretopo-main/pyproject.toml", "[project]\nname = 'paretopo'\n")
        archive.writestr("paretopo-main/data/README.md", "data")
    calls = run_install_cell(name, tmp_path, monkeypatch)
    checkout = (tmp_path / "paretopo-unzipped" / "paretopo-main").resolve()
    assert calls[0][1:] == ["-m", "pip", "install", "--quiet", f"{checkout}[apps]"]
    assert not [c for c in calls if "git" in c]  # nothing to clone
    assert os.environ["PARETOPO_DATA_DIR"] == str(checkout / "data")
    assert f"installing paretopo from your upload {Path('paretopo-unzipped') / 'paretopo-main'}" in capsys.readouterr().out


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_install_cell_on_colab_installs_the_project_from_a_zip_holding_a_venv(name, tmp_path, monkeypatch):
    """A zip of the checkout after `make demo` holds .venv/, whose packages have their own pyproject.toml
    (jupyterlab's test extensions): the install cell takes the project's, the shallowest one."""
    if PUBLISHED_REPOSITORY is not None:
        pytest.skip("the project is published: the install cell clones it")
    with zipfile.ZipFile(tmp_path / "paretopo.zip", "w") as archive:
        archive.writestr("paretopo-main/.venv/lib/python3.11/site-packages/jupyterlab/tests/mock_packages/"
                         "extension/pyproject.toml", "[project]\nname = 'test-extension'\n")
        archive.writestr("paretopo-main/pyproject.toml", "[project]\nname = 'paretopo'\n")
        archive.writestr("paretopo-main/data/README.md", "data")
    calls = run_install_cell(name, tmp_path, monkeypatch)
    assert calls[0][-1] == f"{(tmp_path / 'paretopo-unzipped' / 'paretopo-main').resolve()}[apps]"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_has_one_install_cell_and_it_comes_first(name):
    cells = code_cells(read_notebook(name))
    installing = [index for index, cell in enumerate(cells) if INSTALL_COMMAND.search(cell.source)]
    assert installing == [0], f"install commands in code cells {installing}; expected one, the first"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_stored_without_outputs(name):
    for cell in code_cells(read_notebook(name)):
        assert cell.outputs == [] and cell.execution_count is None, (
            f"{name}.ipynb holds outputs: `jupyter nbconvert --clear-output --inplace notebooks/{name}.ipynb`")


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_and_its_percent_script_are_in_sync(name):
    def cells(notebook):
        return [(c.cell_type, c.source, c.metadata.get("tags", [])) for c in notebook.cells]

    script = jupytext.read(NOTEBOOK_DIR / f"{name}.py")
    assert cells(script) == cells(read_notebook(name)), (
        f"{name}.ipynb and {name}.py differ: run `jupytext --sync notebooks/{name}.py` (or the .ipynb you edited)")


@pytest.mark.parametrize("name", PROFILED)
def test_gpu_notebooks_read_their_profile_in_a_parameters_cell(name):
    tagged = [c for c in code_cells(read_notebook(name)) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and "PARETOPO_NOTEBOOK_PROFILE" in tagged[0].source


def test_quickstart_runs_end_to_end_on_cpu(tmp_path, monkeypatch):
    monkeypatch.setenv("PARETOPO_RUNS_DIR", str(tmp_path / "runs"))
    notebook = execute(QUICKSTART, tmp_path)
    if os.environ.get("PARETOPO_SAVE_EXECUTED"):  # keep the executed notebook, e.g. to render it
        nbformat.write(notebook, os.environ["PARETOPO_SAVE_EXECUTED"])
    cells = code_cells(notebook)
    assert all(cell.execution_count for cell in cells)
    (run,) = [folder for folder in (tmp_path / "runs").iterdir() if not folder.name.endswith("-export")]
    assert (run.with_name(run.name + "-export") / "verification.json").exists()  # beside the run, not inside
    assert (run / "final" / "adapter_model.safetensors").exists()

    outputs = [output for cell in cells for output in cell.outputs]
    # charts: drawn here as PNG, so they show offline and in the saved file; no HTML fetching vega from a CDN
    charts = [cell for cell in cells if any("image/png" in o.get("data", {}) for o in cell.outputs)]
    assert len(charts) >= 4, f"{len(charts)} cells with a chart image"  # scatter, bars, curves, frontier
    for output in outputs:
        html = output.get("data", {}).get("text/html", "")
        assert "cdn.jsdelivr" not in html and "<script" not in html, html[:300]
    # no progress-bar floods or TRL log tables: a few short printed lines
    printed = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "\r" not in printed and "it/s" not in printed, printed[-2000:]
    assert len(printed.splitlines()) < 60, printed[-2000:]
    # the settings table carries every help text in full
    from paretopo.core.config import ParetoPOConfig

    settings = "".join(o.get("data", {}).get("text/markdown", "") for o in outputs)
    for field in ("weights", "beta", "stage1_eval_every"):
        assert " ".join(ParetoPOConfig.help()[field].split()) in settings, field


@pytest.mark.parametrize("name", PROFILED)
def test_gpu_notebook_runs_on_cpu_with_the_test_profile(name, tmp_path, monkeypatch):
    monkeypatch.setenv("PARETOPO_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("PARETOPO_NOTEBOOK_PROFILE", "cpu-test")
    notebook = execute(name, tmp_path)
    assert all(cell.execution_count for cell in code_cells(notebook))
    exported = [path.parent for path in (tmp_path / "runs").rglob("*export*/adapter_model.safetensors")]
    assert exported, "the notebook exported no adapter"
