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
# # ParetoPO in a few minutes on a CPU
#
# ParetoPO trains a tool-using agent to be **accurate** and **frugal with tools**. Every completion
# gets a *vector* of rewards, `(task, tool_efficiency)`, both maximised:
#
# * **stage 1** scalarises the vector with weights `w`, scaled by a meta reward that grows while a
#   Pareto archive of validation outcomes keeps gaining hypervolume;
# * **stage 2** ranks the completions of each prompt by Pareto dominance and uses the rank (refined
#   by `w . r` within a rank) as the advantage.
#
# This notebook runs the whole method on a 202,624-parameter policy and a synthetic arithmetic task
# with a calculator tool: the objectives, the Pareto ranks of one real group of completions,
# stage 1 then stage 2, evaluation before and after, the frontier of the run's checkpoints, and
# the export of the LoRA adapter with a reload check. It needs no GPU and no download.

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
# The training budget and where the run goes: the repository's `runs/` folder (git-ignored, where
# `paretopo train` and the apps look) when the notebook is opened inside a checkout, else `./runs`;
# `PARETOPO_RUNS_DIR` moves it. The next cell prints the run folder.

# %% tags=["parameters"]
# the repository's runs/ (git-ignored) when the notebook runs inside a checkout, else ./runs
REPO_ROOT = next((p for p in (Path.cwd(), *Path.cwd().parents)
                  if (p / "pyproject.toml").exists() and (p / "paretopo").is_dir()), Path.cwd())
RUNS_ROOT = Path(os.environ.get("PARETOPO_RUNS_DIR", REPO_ROOT / "runs"))
SEED = 0
TRAIN_STEPS = 24  # optimiser steps in all
STAGE1_STEPS = 8  # the first steps use stage 1, the rest stage 2
PROMPTS_PER_STEP = 8
GENERATIONS_PER_PROMPT = 8  # the group size G
MAX_NEW_TOKENS = 160

# %%
import datetime

import altair as alt
import numpy as np
import polars as pl
import torch

from paretopo.core.config import ParetoPOConfig
from paretopo.evaluation.evaluate import checkpoint_points, evaluate_policy
from paretopo.evaluation.export import export_adapter
from paretopo.agent.models import load_policy
from paretopo.core.objectives import OptimalCallTracker, score_completions, tool_efficiency
from paretopo.evaluation.display import PARETO_RANK_NOTE
from paretopo.evaluation.plots import (
    advantage_bars,
    frontier_chart,
    metric_lines,
    objective_scatter,
    stage_switch_step,
    use_offline_renderer,
)
from paretopo.evaluation.replay import estimator_advantages, ranked_group_frame
from paretopo.agent.rollout import generate_rollouts
from paretopo.evaluation.runlog import read_run
from paretopo.tasks import get_task
from paretopo.training.train import RunSettings, tiny_policy_path, train_run

torch.set_num_threads(1)  # on a small shared CPU more threads make these tiny matrix products slower
use_offline_renderer()  # charts drawn here as PNG (+ their spec): visible offline and in the saved notebook
pl.Config(fmt_str_lengths=120, tbl_width_chars=160)
from IPython.display import Markdown, display
from IPython.utils.capture import capture_output
from transformers.utils import logging as transformers_logging

transformers_logging.disable_progress_bar()  # no "Loading weights" bars
RUN_DIR = RUNS_ROOT / ("quickstart-" + datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S"))
print("run folder:", RUN_DIR)

# %% [markdown]
# ## 1. The policy
# A three-layer Qwen2 (d = 64) with a byte-level tokenizer plus single-token protocol pieces, warm-started on synthetic traces that mix three
# behaviours (answer directly, call the calculator once, call it twice), so RL has choices to
# make. It ships in `data/tiny_policy`; if it is missing, the warm start runs here (minutes).
# The cell prints its size: parameters and the byte-level vocabulary.

# %%
task = get_task("arithmetic")
if not (tiny_policy_path() / "config.json").exists():
    from paretopo.training.warmstart import warm_start

    warm_start(task)
policy, tokenizer = load_policy(tiny_policy_path(), lora=False)
policy.eval()
print(f"{sum(p.numel() for p in policy.parameters()):,} parameters, vocabulary of {len(tokenizer)} tokens")

# %% [markdown]
# ## 2. The task and its tool
# Questions come in three tiers: easy sums the policy can answer directly, and harder ones where
# answering directly is only sometimes right and the calculator helps. The answer goes in
# `\boxed{}`; the tool budget is 2 calls. The cell prints the chat messages of the first test
# question (the system prompt, then the question), one calculator call (417 × 38 = 15846), and the
# first six test questions with their tier and answer.

# %%
test_examples = task.load("test")
calculator = task.tools()[0]
print(task.messages(test_examples[0]))
print("calculator('417*38') ->", calculator("417*38"))
pl.DataFrame([{"tier": e.metadata["tier"], "question": e.question, "answer": e.answer} for e in test_examples[:6]])

# %% [markdown]
# ## 3. The objectives, checked on a toy example
# * `task`: 1 when the boxed answer is right, else 0.
# * `tool_efficiency`: `exp(-alpha |m - n*|)` with `m` the calls of this completion and `n*` the
#   fewest calls of any *correct* completion of the same question seen so far (tracked during
#   training, never increasing). Until a question has a correct completion, efficiency is 1.
#
# What the cell prints: `True` / `False` for a right and a wrong boxed answer; the efficiency of
# 0, 1, 2, 3 calls when `n* = 1` with `alpha = 0.5`: `exp(-0.5) = 0.607`, `1`, `0.607`,
# `exp(-1) = 0.368`. Then a toy group of four completions with calls `[2, 1, 0, 1]` of which the
# first two are correct: `n* = 1` (the fewest calls of a correct one), and the objective vectors
# `(1, 0.607)`, `(1, 1)`, `(0, 0.607)`, `(0, 1)`, computed here with the paper's reading
# `gate_tool_by_correctness=False`: efficiency does not look at correctness, so the wrong
# completion with one call is as efficient as the right one. The default (`True`, chosen on
# validation, docs/method.md) would give the wrong ones `(0, 0)`.

# %%
example = test_examples[0]
print("right answer:", task.is_correct(f"\\boxed{{{example.answer}}}", example),
      "| wrong answer:", task.is_correct("\\boxed{-1}", example))
print("efficiency of 0..3 calls when n* = 1:", tool_efficiency([0, 1, 2, 3], [1, 1, 1, 1], alpha=0.5).round(3))

tracker = OptimalCallTracker()
toy_ids, toy_calls, toy_correct = ["q"] * 4, [2, 1, 0, 1], [1, 1, 0, 0]
# the one scoring path of training and evaluation; it updates n* before computing the rewards
toy_objectives = score_completions(toy_ids, toy_correct, toy_calls, tracker,
                                   ParetoPOConfig(gate_tool_by_correctness=False))
print("n* =", tracker.lookup(["q"]))
print("objective vectors (task, tool_efficiency):\n", toy_objectives)

# %% [markdown]
# ## 4. Pareto ranks of one real group
# Sample `G` completions of a few test questions with the same tool-using decoding loop that
# training uses. A group whose vectors are all identical carries no learning signal, so we show
# the first group that is not. Rank 1 is the non-dominated front. Stage 2's advantage is
# `N_rank - rank + 1 + beta (r_hat - 0.5)`, so every completion of a better rank beats every
# completion of a worse one. Stage 1's advantage (`hv_scalarized`) is the group z-score of
# `meta_reward * (w . r)`: the batch-wide meta reward cancels in the z-score, so within a group it
# equals the fixed-weight baseline (`stage1_adv_norm="mean_only"` keeps its effect). Every
# baseline's advantage is shown alongside.
#
# The cell prints the question with its answer, then one row per completion: its index, the two
# objectives, its Pareto `rank`, the answer it boxed, its tool calls, and the advantage each
# estimator gives it (rounded to 2 decimals). The printed note below the table explains why
# `pareto_rank` gives wrong answers positive values.

# %%
config = ParetoPOConfig.from_preset("paretopo", stage1_steps=STAGE1_STEPS, stage1_eval_every=2)
tools = {tool.__name__: tool for tool in task.tools()}
candidates = test_examples[:16]
rollouts = generate_rollouts(policy, tokenizer, [task.messages(e) for e in candidates], tools=tools,
                             num_samples=GENERATIONS_PER_PROMPT, max_new_tokens=MAX_NEW_TOKENS,
                             max_tool_calls=task.max_tool_calls, seed=SEED, tools_in_prompt=False,
                             answer_extractor=task.extract_answer)
for index, question in enumerate(candidates):
    group = rollouts[index * GENERATIONS_PER_PROMPT : (index + 1) * GENERATIONS_PER_PROMPT]
    correct = [float(task.is_correct(r.text, question)) for r in group]
    calls = [r.num_tool_calls for r in group]
    rewards = score_completions([question.id] * len(group), correct, calls, OptimalCallTracker(), config)
    if len(np.unique(rewards, axis=0)) > 1:
        break

group_table = ranked_group_frame(rewards, len(group)).drop("group").with_columns(
    pl.Series("answer", [r.final_answer for r in group], dtype=pl.String), pl.Series("tool_calls", calls))
advantages = estimator_advantages(rewards, len(group), weights=config.weights, beta=config.beta)
print(f"{question.question} (answer {question.answer})")
display(Markdown(PARETO_RANK_NOTE))
group_table.select("completion", "rank", "task", "tool_efficiency", "answer", "tool_calls").join(
    advantages.pivot("estimator", index="completion", values="advantage"), on="completion").with_columns(
    pl.col(pl.Float64).round(2))

# %% [markdown]
# The same group as points, each front drawn as the boundary of what it dominates (both objectives
# are maximised, so better is up and to the right), and every estimator's advantage per completion.

# %%
objective_scatter(group_table, x="task", y="tool_efficiency", title="One group of completions by Pareto rank")

# %%
advantage_bars(advantages, title="Advantage of each completion under each estimator")

# %% [markdown]
# ## 5. The method's settings
# Every method is a preset of one config; here ParetoPO with a short stage 1. Each field carries
# its help text (`ParetoPOConfig.help()`, shown in full); `docs/method.md` gives the equations.

# %%
help_text = ParetoPOConfig.help()
shown = ("weights", "alpha", "stage1_steps", "stage1_eval_every", "gamma", "stage2_estimator", "beta")
Markdown("| field | value | help |\n|---|---|---|\n" + "\n".join(
    f"| `{f}` | `{getattr(config, f)}` | {' '.join(help_text[f].split()).replace('|', '/')} |" for f in shown))

# %% [markdown]
# ## 6. Before training
# Greedy decoding on the held-out test split. The cell prints three numbers: `accuracy` (share of
# right boxed answers), `mean_tool_calls` (calculator calls per answer) and `tool_productivity`
# (right answers per tool call; `inf` when no call was made).

# %%
before = evaluate_policy(policy, tokenizer, task, test_examples, greedy=True, max_new_tokens=MAX_NEW_TOKENS,
                         tools_in_prompt=False, progress=False)
{name: before.as_dict()[name] for name in ("accuracy", "mean_tool_calls", "tool_productivity")}

# %% [markdown]
# ## 7. Train: stage 1, then stage 2
# `train_run` wraps TRL's GRPO trainer with ParetoPO's advantage hook, LoRA adapters and the
# tool-using rollouts. In stage 1 the policy is evaluated on a validation subset every
# `stage1_eval_every` steps; the outcome feeds the hypervolume archive and the meta reward.
# Checkpoints are evaluated too: they become the points of the run's frontier. Everything lands
# in the run folder (`steps.parquet`, `groups/`, `eval.parquet`, `checkpoints/`, `final/`).
# Progress bars are off here (`progress=False`: a notebook would keep every bar's redraws); the cell
# takes about a minute and prints one line when done, then one row per optimiser step: its stage,
# the stage-1 meta reward (1 before the first archive gain, constant in stage 2), the batch's mean
# task and tool-efficiency objectives and tool calls per completion, the share of completions on
# their group's first Pareto front, and the step's seconds.

# %%
settings = RunSettings(run_dir=str(RUN_DIR), seed=SEED, lora=True, max_steps=TRAIN_STEPS, prompts_per_step=PROMPTS_PER_STEP,
                       num_generations=GENERATIONS_PER_PROMPT, max_completion_length=MAX_NEW_TOKENS,
                       save_steps=TRAIN_STEPS // 4, progress=False)
with capture_output():  # TRL's own progress bar and per-step log lines: all of it is in steps.parquet
    result = train_run(config, settings)
print(f"trained {result.steps} steps in {result.run_dir}")
run = read_run(result.run_dir)
run.steps.select("step", "stage", "weights/meta_reward", "objectives/task", "objectives/tool_efficiency",
                 "objectives/mean_tool_calls", "pareto/frac_nondominated", "step_time")

# %% [markdown]
# The training curves: the batch's mean objectives, tool calls per completion, and the meta reward
# of stage 1; the dashed rule marks the switch to stage 2.

# %%
switch = stage_switch_step(run.steps)
alt.hconcat(
    metric_lines(run.steps, ["objectives/task", "objectives/tool_efficiency"], title="batch mean objectives",
                 switch=switch),
    metric_lines(run.steps, ["objectives/mean_tool_calls"], title="tool calls per completion", switch=switch),
    metric_lines(run.steps, ["weights/meta_reward"], title="stage-1 meta reward", switch=switch),
)

# %% [markdown]
# ## 8. Before and after
# The trained policy's test numbers come from `train_run` (greedy decoding, same test split): the
# same three numbers as in section 6, plus the number of test answers. Then the same per tier.

# %%
pl.DataFrame([{"policy": "initial", **before.as_dict()}, {"policy": f"after {result.steps} steps", **result.test}]).select(
    "policy", "accuracy", "mean_tool_calls", "tool_productivity", "n_completions").with_columns(pl.col(pl.Float64).round(3))

# %% [markdown]
# **Reading the numbers.** "Frugal" in ParetoPO does not mean "fewer calls at any price": tool
# efficiency is measured against `n*`, the fewest calls of a *correct* answer to the same question.
# On the easy tier the policy can answer without the calculator, so `n* = 0` there and every call
# costs efficiency; on the harder tiers a direct answer is mostly wrong, `n*` becomes 1 or 2, and a
# correct call sits on the first Pareto front above a wrong direct answer. So tool calls can go *up*
# after training (the warm-started policy answers many hard questions directly and wrongly): that
# is the policy buying accuracy with calls, not a failure of the frugality objective. What it should
# not do is call where no call is needed: the per-tier table shows where the calls went. The cell
# after it states, from the numbers of this run, which of the two happened.

# %%
tier = "meta_tier"
test_step = run.eval_rows.filter(pl.col("split") == "test")["step"].max()
trained_rows = run.eval_rows.filter((pl.col("split") == "test") & (pl.col("step") == test_step))
by_tier = (pl.concat([before.rows.with_columns(pl.lit("initial").alias("policy")),
                      trained_rows.with_columns(pl.lit("trained").alias("policy"))], how="diagonal_relaxed")
           .group_by(tier, "policy").agg(pl.col("correct").cast(pl.Float64).mean().round(3).alias("accuracy"),
                                         pl.col("tool_calls").cast(pl.Float64).mean().round(2).alias("mean_tool_calls"),
                                         pl.len().alias("answers"))
           .sort(tier, "policy"))
by_tier

# %%
accuracy_change = result.test["accuracy"] - before.accuracy
calls_change = result.test["mean_tool_calls"] - before.mean_tool_calls
print(f"accuracy {before.accuracy:.3f} -> {result.test['accuracy']:.3f} ({accuracy_change:+.3f}); "
      f"tool calls per answer {before.mean_tool_calls:.2f} -> {result.test['mean_tool_calls']:.2f} ({calls_change:+.2f})")
if calls_change > 0 and accuracy_change > 0:
    print("More calls bought accuracy: the policy now uses the calculator where a direct answer was wrong.")
elif calls_change <= 0 and accuracy_change >= 0:
    print("Fewer or as many calls at equal or better accuracy: the frugal direction.")
elif calls_change > 0:
    print("More calls without more accuracy: this short run did not find the frontier; train longer or change the seed.")
else:
    print("Fewer calls but lower accuracy: a trade-off on the frontier; raise the task weight to prefer accuracy.")

# %% [markdown]
# ## 9. The frontier of the run's checkpoints
# Each evaluated checkpoint is one point `(task, tool_efficiency)` on the validation subset, scored
# with one shared `n*` (the final adapter on the test split is drawn hollow). The non-dominated
# checkpoints form the run's frontier (the line; shaded: the region it dominates; checkpoints at
# the same position are drawn around it and counted, `×k`); its hypervolume is the number
# `paretopo compare` and notebook 04 rank runs by.

# %%
frontier_chart(checkpoint_points([str(result.run_dir)]))

# %% [markdown]
# ## 10. Export the adapter and reload it
# `export_adapter` copies the LoRA adapter with its tokenizer and a `paretopo.json` (method,
# weights, test point) and verifies it: finite, its LoRA `B` matrices not all zero (an untrained
# adapter is a no-op), it reloads onto the base model, and it changes greedy output. The cell
# prints the export folder and its files, then the verification record (each check and its result).
# The export goes beside the run folder: an export never writes inside its source.

# %%
export = export_adapter(result.run_dir, RUN_DIR.with_name(RUN_DIR.name + "-export"))
assert export.verify.ok and export.verify.nonzero_lora_b > 0, export.verify.problems
print(export.path, sorted(p.name for p in export.path.iterdir()))
export.verify

# %% [markdown]
# Reload the exported adapter on the base policy, as a user of the export would, and check that
# it reproduces the trained policy's test accuracy: the cell prints both accuracies, which must be equal.

# %%
from peft import PeftModel
from transformers import AutoModelForCausalLM

base = AutoModelForCausalLM.from_pretrained(tiny_policy_path())
reloaded = PeftModel.from_pretrained(base, export.path).eval()
after_reload = evaluate_policy(reloaded, tokenizer, task, test_examples, greedy=True, max_new_tokens=MAX_NEW_TOKENS,
                               tools_in_prompt=False, progress=False)
print(f"test accuracy: trained {result.test['accuracy']:.3f}, reloaded {after_reload.accuracy:.3f}")
assert abs(after_reload.accuracy - result.test["accuracy"]) < 1e-9

# %% [markdown]
# ## Next
# * `02_math_python_tool_unsloth.ipynb`: a real model with the Python tool on GSM8K / MATH-500 (GPU).
# * `03_multihop_qa_search.ipynb`: multi-hop QA with a BM25 search tool (GPU).
# * `04_frontiers_and_baselines.ipynb`: compare methods and checkpoints, pick a trade-off, export it.
# * `paretopo demo` runs ParetoPO next to the accuracy-only baseline from the command line.
