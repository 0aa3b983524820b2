"""The notebooks: structure, and execution on a CPU with nbclient (about 2.5 minutes for all four,
so it stays in the default run and CI executes every notebook).

Fast checks, per notebook: it opens with its "Open in Colab" badge, has exactly one install
cell, is stored without outputs, and its jupytext pair (``notebooks/<name>.py``, percent format,
see ``notebooks/jupytext.toml``) holds the same cells.

Slow checks run every code cell in a fresh kernel, with runs written under a temporary folder
(``PARETOPO_RUNS_DIR``). 01 runs exactly as users see it (about 2 minutes on 2 busy cores). 02 and
03 default to GPU settings and 04 to a ten-minute comparison; their ``parameters`` cell reads
``PARETOPO_NOTEBOOK_PROFILE``, and ``cpu-test`` switches the same cells to the tiny CPU policy and
a few steps (under a minute each).
"""

from __future__ import annotations

import re
from pathlib import Path

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
QUICKSTART = "01_quickstart_cpu"
PROFILED = ("02_math_python_tool_unsloth", "03_multihop_qa_search", "04_frontiers_and_baselines")
NOTEBOOKS = (QUICKSTART, *PROFILED)
COLAB_BADGE = "https://colab.research.google.com/github/paretopo-org/paretopo/blob/main/notebooks/{name}.ipynb"
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
def test_notebook_opens_with_its_colab_badge(name):
    first = read_notebook(name).cells[0]
    assert first.cell_type == "markdown"
    assert f'href="{COLAB_BADGE.format(name=name)}"' in first.source
    assert "colab-badge.svg" in first.source


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
    assert all(cell.execution_count for cell in code_cells(notebook))
    (run,) = (tmp_path / "runs").iterdir()
    assert (run / "export" / "verification.json").exists()
    assert (run / "final" / "adapter_model.safetensors").exists()


@pytest.mark.parametrize("name", PROFILED)
def test_gpu_notebook_runs_on_cpu_with_the_test_profile(name, tmp_path, monkeypatch):
    monkeypatch.setenv("PARETOPO_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("PARETOPO_NOTEBOOK_PROFILE", "cpu-test")
    notebook = execute(name, tmp_path)
    assert all(cell.execution_count for cell in code_cells(notebook))
    exported = [path.parent for path in (tmp_path / "runs").rglob("export*/adapter_model.safetensors")]
    assert exported, "the notebook exported no adapter"
