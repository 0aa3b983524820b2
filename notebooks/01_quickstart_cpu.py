# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# <!-- "paretopo-org/paretopo" stands for the project's GitHub organisation and repository. -->
# <a href="https://colab.research.google.com/github/paretopo-org/paretopo/blob/main/notebooks/01_quickstart_cpu.ipynb" target="_parent"><img src="https://colab.research.google.com/assets/colab-badge.svg" alt="Open In Colab"/></a>
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
# This notebook runs the whole method on a ~140k-parameter policy and a synthetic arithmetic task
# with a calculator tool: the objectives, the Pareto ranks of one real group of completions,
# stage 1 then stage 2, evaluation before and after, the frontier of the run's checkpoints, and
# the export of the LoRA adapter with a reload check. It needs no GPU and no download.

# %% [markdown]
# ## Install
# On Colab this clones the repository (code, data and the warm-started tiny policy) and installs
# it with its pinned dependencies. Locally nothing is installed when `paretopo` already imports
# (`make setup` in the repository creates `.venv/` with everything).

# %%
import importlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

IN_COLAB = "google.colab" in sys.modules
REPOSITORY = "https://github.com/paretopo-org/paretopo"  # placeholder organisation/repository
CHECKOUT = Path("paretopo-checkout")
if IN_COLAB or importlib.util.find_spec("paretopo") is None:
    if not CHECKOUT.exists():
        subprocess.run(["git", "clone", "--quiet", "--depth", "1", REPOSITORY, str(CHECKOUT)], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", f"{CHECKOUT.resolve()}[apps]"], check=True)
    os.environ["PARETOPO_DATA_DIR"] = str(CHECKOUT.resolve() / "data")  # data/ is not part of the wheel
    importlib.invalidate_caches()

# %% [markdown]
# ## Settings
# The training budget and where the run goes: under `runs/` (git-ignored); `PARETOPO_RUNS_DIR`
# moves it.

# %% tags=["parameters"]
RUNS_ROOT = Path(os.environ.get("PARETOPO_RUNS_DIR", "runs"))
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

from paretopo.config import ParetoPOConfig
from paretopo.evaluate import checkpoint_points, evaluate_policy
from paretopo.export import export_adapter
from paretopo.models import load_policy
from paretopo.objectives import OptimalCallTracker, objective_matrix, tool_efficiency
from paretopo.plots import (
    advantage_bars,
    estimator_advantages,
    frontier_chart,
    metric_lines,
    objective_scatter,
    ranked_group_frame,
    stage_switch_step,
)
from paretopo.rollout import generate_rollouts
from paretopo.runlog import read_run
from paretopo.tasks import get_task
from paretopo.train import RunSettings, tiny_policy_path, train_run

torch.set_num_threads(1)  # on a small shared CPU more threads make these tiny matrix products slower
RUN_DIR = RUNS_ROOT / ("quickstart-" + datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S"))
print("run folder:", RUN_DIR)

# %% [markdown]
# ## 1. The policy
# A two-layer Qwen2 with a byte-level tokenizer, warm-started on synthetic traces that mix three
# behaviours (answer directly, call the calculator once, call it twice), so RL has choices to
# make. It ships in `data/tiny_policy`; if it is missing, the warm start runs here (minutes).

# %%
task = get_task("arithmetic")
if not (tiny_policy_path() / "config.json").exists():
    from paretopo.warmstart import warm_start

    warm_start(task)
policy, tokenizer = load_policy(tiny_policy_path(), lora=False)
policy.eval()
print(f"{sum(p.numel() for p in policy.parameters()):,} parameters, vocabulary of {len(tokenizer)} tokens")

# %% [markdown]
# ## 2. The task and its tool
# Questions come in three tiers: easy sums the policy can answer directly, and harder ones where
# answering directly is only sometimes right and the calculator helps. The answer goes in
# `\boxed{}`; the tool budget is 2 calls.

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

# %%
example = test_examples[0]
print("right answer:", task.is_correct(f"\\boxed{{{example.answer}}}", example),
      "| wrong answer:", task.is_correct("\\boxed{-1}", example))
print("efficiency of 0..3 calls when n* = 1:", tool_efficiency([0, 1, 2, 3], [1, 1, 1, 1], alpha=0.5).round(3))

tracker = OptimalCallTracker()
toy_ids, toy_calls, toy_correct = ["q"] * 4, [2, 1, 0, 1], [1, 1, 0, 0]
tracker.update(toy_ids, toy_calls, toy_correct)  # n* is updated before the rewards are computed
print("n* =", tracker.lookup(["q"]))
print("objective vectors (task, tool_efficiency):\n", objective_matrix(toy_correct, toy_calls, tracker.lookup(toy_ids)))

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
    group_tracker = OptimalCallTracker()
    group_tracker.update([question.id] * len(group), calls, correct)
    rewards = objective_matrix(correct, calls, group_tracker.lookup([question.id] * len(group)), alpha=config.alpha)
    if len(np.unique(rewards, axis=0)) > 1:
        break

group_table = ranked_group_frame(rewards, len(group)).drop("group").with_columns(
    pl.Series("answer", [r.final_answer for r in group], dtype=pl.String), pl.Series("tool_calls", calls))
advantages = estimator_advantages(rewards, len(group), weights=config.weights, beta=config.beta)
print(f"{question.question} (answer {question.answer})")
group_table.join(advantages.pivot("estimator", index="completion", values="advantage"), on="completion").with_columns(
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
# its help text (`ParetoPOConfig.help()`); `docs/method.md` gives the equations.

# %%
help_text = ParetoPOConfig.help()
shown = ("weights", "alpha", "stage1_steps", "stage1_eval_every", "gamma", "stage2_estimator", "beta")
pl.DataFrame({"field": shown, "value": [str(getattr(config, f)) for f in shown], "help": [help_text[f] for f in shown]})

# %% [markdown]
# ## 6. Before training
# Greedy decoding on the held-out test split: accuracy, tool calls per answer, and correct answers
# per tool call.

# %%
before = evaluate_policy(policy, tokenizer, task, test_examples, greedy=True, max_new_tokens=MAX_NEW_TOKENS,
                         tools_in_prompt=False, description="test (initial policy)")
{name: before.as_dict()[name] for name in ("accuracy", "mean_tool_calls", "tool_productivity")}

# %% [markdown]
# ## 7. Train: stage 1, then stage 2
# `train_run` wraps TRL's GRPO trainer with ParetoPO's advantage hook, LoRA adapters and the
# tool-using rollouts. In stage 1 the policy is evaluated on a validation subset every
# `stage1_eval_every` steps; the outcome feeds the hypervolume archive and the meta reward.
# Checkpoints are evaluated too: they become the points of the run's frontier. Everything lands
# in the run folder (`steps.parquet`, `groups/`, `eval.parquet`, `checkpoints/`, `final/`).

# %%
settings = RunSettings(run_dir=str(RUN_DIR), seed=SEED, max_steps=TRAIN_STEPS, prompts_per_step=PROMPTS_PER_STEP,
                       num_generations=GENERATIONS_PER_PROMPT, max_completion_length=MAX_NEW_TOKENS,
                       save_steps=TRAIN_STEPS // 4)
result = train_run(config, settings)
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
# The trained policy's test numbers come from `train_run` (greedy decoding, same test split).

# %%
pl.DataFrame([{"policy": "initial", **before.as_dict()}, {"policy": f"after {result.steps} steps", **result.test}]).select(
    "policy", "accuracy", "mean_tool_calls", "tool_productivity", "n_completions")

# %% [markdown]
# ## 9. The frontier of the run's checkpoints
# Each evaluated checkpoint is one point `(task, tool_efficiency)` on the validation subset, scored
# with one shared `n*` (the final adapter on the test split is drawn hollow). The non-dominated
# checkpoints form the run's frontier; its hypervolume is the number `paretopo compare` and
# notebook 04 rank runs by.

# %%
frontier_chart(checkpoint_points([str(result.run_dir)]))

# %% [markdown]
# ## 10. Export the adapter and reload it
# `export_adapter` copies the LoRA adapter with its tokenizer and a `paretopo.json` (method,
# weights, test point) and verifies it: finite, its LoRA `B` matrices not all zero (an untrained
# adapter is a no-op), it reloads onto the base model, and it changes greedy output.

# %%
export = export_adapter(result.run_dir, RUN_DIR / "export")
assert export.verify.ok and export.verify.nonzero_lora_b > 0, export.verify.problems
print(export.path, sorted(p.name for p in export.path.iterdir()))
export.verify

# %% [markdown]
# Reload the exported adapter on the base policy, as a user of the export would, and check that
# it reproduces the trained policy's test accuracy.

# %%
from peft import PeftModel
from transformers import AutoModelForCausalLM

base = AutoModelForCausalLM.from_pretrained(tiny_policy_path())
reloaded = PeftModel.from_pretrained(base, export.path).eval()
after_reload = evaluate_policy(reloaded, tokenizer, task, test_examples, greedy=True, max_new_tokens=MAX_NEW_TOKENS,
                               tools_in_prompt=False, description="test (reloaded adapter)")
print(f"test accuracy: trained {result.test['accuracy']:.3f}, reloaded {after_reload.accuracy:.3f}")
assert abs(after_reload.accuracy - result.test["accuracy"]) < 1e-9

# %% [markdown]
# ## Next
# * `02_math_python_tool_unsloth.ipynb`: a real model with the Python tool on GSM8K / MATH-500 (GPU).
# * `03_multihop_qa_search.ipynb`: multi-hop QA with a BM25 search tool (GPU).
# * `04_frontiers_and_baselines.ipynb`: compare methods and checkpoints, pick a trade-off, export it.
# * `paretopo demo` runs ParetoPO next to the accuracy-only baseline from the command line.
