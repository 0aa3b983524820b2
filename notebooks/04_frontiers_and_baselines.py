# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# *Colab: this project has no published repository yet, so there is no "Open in Colab" link. Upload this notebook to Colab (File → Upload notebook) and, in the Files pane, `dist/paretopo.zip`, which `make colab-zip` builds in the repository (the project and its `data/`, without `.venv/` or `runs/`: Colab uploads files, not folders); the install cell finds it and says what it installed.*
#
# # Frontiers and baselines: compare runs, pick a trade-off, export it
#
# A multi-objective method is judged by the trade-offs it reaches, not by one number. This
# notebook loads several runs (any runs written by `paretopo train`, the demo or notebooks 01-03),
# puts their evaluated checkpoints on one accuracy / tool-efficiency plane, ranks the runs by the
# hypervolume of their checkpoint frontiers, and exports the checkpoint that best matches a
# preference you state.
#
# With no runs given, it first trains ParetoPO and three baselines on the tiny CPU policy and the
# arithmetic task (about ten minutes on a laptop CPU, once: later runs of the notebook reuse them).

# %% [markdown]
# ## Install
# On Colab (or wherever `paretopo` does not import) this installs the project with its pinned
# dependencies. The project has no published repository yet (`REPOSITORY = None`, from
# `paretopo.commands.home`), so instead of cloning it installs what you upload next to the notebook: a zip
# of the repository, its folder, or a wheel plus the `data/` folder; the cell prints which it used,
# or says what to upload. Once the project is published, `REPOSITORY` is its URL and the cell clones it.
# Locally nothing is installed when `paretopo` already imports
# (`make setup` in the repository creates `.venv/` with everything).

# %%
import importlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

IN_COLAB = "google.colab" in sys.modules
REPOSITORY = None  # paretopo.commands.home.PUBLISHED_REPOSITORY: no published home yet
CHECKOUT = Path("paretopo-checkout")


def find_upload():
    """A repository folder, a zip of one, or a wheel put next to this notebook (on Colab: /content)."""
    for folder in (CHECKOUT, Path("paretopo"), Path("paretopo-main")):
        if (folder / "pyproject.toml").exists():
            return folder
    for archive in sorted(Path.cwd().glob("paretopo*.zip")):
        import zipfile

        with zipfile.ZipFile(archive) as opened:
            opened.extractall("paretopo-unzipped")
        # the shallowest pyproject.toml is the project's (a zipped .venv/ holds packages with their own)
        return min(Path("paretopo-unzipped").rglob("pyproject.toml"), key=lambda p: (len(p.parts), p)).parent
    wheels = sorted(Path.cwd().glob("paretopo-*.whl"))
    return wheels[-1] if wheels else None


if IN_COLAB or importlib.util.find_spec("paretopo") is None:
    if REPOSITORY and not CHECKOUT.exists():
        subprocess.run(["git", "clone", "--quiet", "--depth", "1", REPOSITORY, str(CHECKOUT)], check=True)
    source = CHECKOUT if REPOSITORY else find_upload()
    if source is None:
        raise SystemExit(
            "paretopo is not installed, and the project has no published repository to clone yet. Upload a zip "
            "of the repository (paretopo.zip; `make colab-zip` builds it), its folder, or a wheel next to "
            f"this notebook ({Path.cwd()}; on Colab: the Files pane), then run this cell again.")
    print("installing paretopo from", f"the repository {REPOSITORY}" if REPOSITORY else f"your upload {source}")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", f"{source.resolve()}[apps]"], check=True)
    data = source / "data" if source.is_dir() else Path("data")  # data/ is not part of the wheel
    if data.is_dir():
        os.environ["PARETOPO_DATA_DIR"] = str(data.resolve())
    else:
        print("No data/ folder came with the wheel: upload the repository's data/ folder next to this notebook "
              "(the shipped tiny policy and datasets).")
    importlib.invalidate_caches()

# %% [markdown]
# ## Settings
# `RUN_DIRS` lists the run folders to compare; `None` trains `METHODS` on the tiny CPU policy into
# `runs/<COMPARISON>/<method>` (or reuses them). `PREFERENCE` weighs `(task, tool efficiency)`
# when choosing the checkpoint to export. `PARETOPO_NOTEBOOK_PROFILE=cpu-test` (what the tests
# set) shortens that training to a few steps.

# %% tags=["parameters"]
PROFILE = os.environ.get("PARETOPO_NOTEBOOK_PROFILE", "demo")  # demo | cpu-test
# the repository's runs/ (git-ignored) when the notebook runs inside a checkout, else ./runs
REPO_ROOT = next((p for p in (Path.cwd(), *Path.cwd().parents)
                  if (p / "pyproject.toml").exists() and (p / "paretopo").is_dir()), Path.cwd())
RUNS_ROOT = Path(os.environ.get("PARETOPO_RUNS_DIR", REPO_ROOT / "runs"))
RUN_DIRS = None  # e.g. ["runs/math-paretopo-...", "runs/math-torl_grpo-..."]
COMPARISON = "arithmetic-baselines"
METHODS = ("paretopo", "torl_grpo", "fixed_weight", "otc_grpo")
PREFERENCE = (0.6, 0.4)
SEED = 0

# %% [markdown]
# Training budgets for the tiny policy: `demo` trains like `paretopo demo` and evaluates a
# checkpoint every 3 steps on the whole validation split (200 questions), so each run's frontier
# has points to choose from; `cpu-test` only checks that every cell runs.

# %%
PROFILES = {
    "demo": {"run": dict(max_steps=30, prompts_per_step=8, num_generations=8, save_steps=3, validation_examples=200),
             "method": dict(stage1_steps=10, stage1_eval_every=2)},
    "cpu-test": {"run": dict(max_steps=4, prompts_per_step=4, num_generations=4, save_steps=2, learning_rate=5e-2,
                             validation_examples=8, test_examples=16),
                 "method": dict(stage1_steps=2, stage1_eval_every=1)},
}
profile = PROFILES[PROFILE]

# %%
import altair as alt
import polars as pl
import torch

from paretopo.evaluation.evaluate import checkpoint_points, compare_runs, frontier
from paretopo.evaluation.export import export_adapter
from paretopo.evaluation.plots import frontier_chart
from paretopo.evaluation.runlog import read_run, run_paths
from paretopo.training.train import RunSettings, train_run

torch.set_num_threads(1)  # more threads are slower for the tiny policy on a shared CPU

# %% [markdown]
# ## 1. The runs
# Every method goes through the same trainer, rollouts, seed and budget; only the advantage
# estimator differs (`torl_grpo`: accuracy only; `fixed_weight`: `w . r`; `otc_grpo`: OTC's
# multiplicative reward). A run that stopped part-way resumes from its last checkpoint.

# %%
if RUN_DIRS is None:
    RUN_DIRS = []
    for method in METHODS:
        run_dir = RUNS_ROOT / COMPARISON / method
        if not run_paths(run_dir).final.exists():
            train_run(method, RunSettings(run_dir=str(run_dir), seed=SEED, lora=True, **profile["run"]),
                      method_overrides=profile["method"], resume=bool(run_paths(run_dir).checkpoint_folders()))
        RUN_DIRS.append(run_dir)
runs = {str(path): read_run(path) for path in RUN_DIRS}
pl.DataFrame([{"run": Path(path).name, "method": data.config["method"]["method"], "task": data.config["task"],
               "model": data.config["model"], "steps": data.last_step} for path, data in runs.items()])

# %% [markdown]
# ## 2. How training went
# The batch's accuracy and tool calls per completion, step by step.

# %%
curves = pl.concat([
    data.steps.select("step", "objectives/task", "objectives/mean_tool_calls").with_columns(
        pl.lit(data.config["method"]["method"]).alias("method"))
    for data in runs.values()
]).unpivot(index=["method", "step"], variable_name="metric")
alt.Chart(curves).mark_line().encode(
    x="step:Q", y=alt.Y("value:Q", title=None), color="method:N",
).properties(width=300, height=170).facet(column="metric:N").resolve_scale(y="independent")

# %% [markdown]
# ## 3. Hypervolume table
# Tool efficiency depends on `n*`, the fewest calls of a correct answer, and each run tracked its
# own; `compare_runs` rescores every evaluation with one shared `n*`, so the numbers are
# comparable. `frontier_hv` is the hypervolume (reference point (0, 0)) of a run's non-dominated
# validation checkpoints; the test columns are the final adapter on the test split.

# %%
summary, dominance = compare_runs([str(path) for path in RUN_DIRS])
summary.sort("frontier_hv", descending=True).select(
    "method", "frontier_hv", "frontier_size", "checkpoints", "test_accuracy", "test_mean_tool_calls",
    "test_obj_tool_efficiency")

# %% [markdown]
# Which final test points dominate which (the row's run dominates the column's): better or equal
# in both objectives and strictly better in one. Runs are named by their folders.

# %%
folder_of = {run: Path(run).name for run in dominance["run"]}
dominance.with_columns(pl.col("run").replace_strict(folder_of)).rename(folder_of)

# %% [markdown]
# ## 4. Frontiers
# Each point is one evaluated checkpoint (shared `n*`); each run's non-dominated validation
# checkpoints are joined into its frontier; the final adapters on the test split are drawn hollow.
# Up and to the right is better in both objectives.

# %%
points = checkpoint_points([str(path) for path in RUN_DIRS])
frontier_chart(points).properties(title="Checkpoint frontiers (validation, filled) and final adapters (test, hollow)")

# %% [markdown]
# The same final adapters in plain units: accuracy against tool calls per answer.

# %%
finals = points.filter(pl.col("final") & (pl.col("split") == "test"))
alt.Chart(finals).mark_point(size=200, filled=True).encode(
    x=alt.X("mean_tool_calls:Q", title="tool calls per answer"), y=alt.Y("accuracy:Q", title="test accuracy"),
    color="method:N", tooltip=["method", "step", "accuracy", "mean_tool_calls"],
).properties(width=360, height=240)

# %% [markdown]
# ## 5. Pick the checkpoint for your trade-off
# Score every validation checkpoint of every run by `PREFERENCE . (task, tool efficiency)` and take
# the best. A checkpoint that maximises a positive weighting is never dominated, so the choice
# always lies on the frontier of all runs together (listed below, best first); changing
# `PREFERENCE` walks along it.

# %%
checkpoints = points.filter(pl.col("split") == "validation")
scored = checkpoints.with_columns(
    pl.Series("non_dominated", frontier(checkpoints.select("obj_task", "obj_tool_efficiency").to_numpy())),
    (PREFERENCE[0] * pl.col("obj_task") + PREFERENCE[1] * pl.col("obj_tool_efficiency")).alias("preference_score"),
).sort("preference_score", "step", descending=[True, False])
chosen = scored.row(0, named=True)
scored.filter(pl.col("non_dominated")).select(
    "method", "step", "accuracy", "mean_tool_calls", "obj_task", "obj_tool_efficiency", "preference_score")

# %% [markdown]
# ## 6. Export it
# The checkpoint's LoRA adapter with its tokenizer and `paretopo.json`, verified: finite, not all
# zero, reloads onto the base model and changes its output.

# %%
checkpoint = run_paths(chosen["run"]).checkpoint(chosen["step"])
export = export_adapter(checkpoint, RUNS_ROOT / COMPARISON / f"export-{chosen['method']}-step{chosen['step']}")
assert export.verify.ok, export.verify.problems
print(f"chose {chosen['method']} at step {chosen['step']}: accuracy {chosen['accuracy']:.3f}, "
      f"{chosen['mean_tool_calls']:.2f} tool calls per answer on validation")
print("exported to", export.path)
export.verify
