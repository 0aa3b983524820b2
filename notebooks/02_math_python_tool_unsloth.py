# ---
# jupyter:
#   accelerator: GPU
#   colab:
#     gpuType: T4
#     provenance: []
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# *Colab: this project has no published repository yet, so there is no "Open in Colab" link. Upload this notebook to Colab (File → Upload notebook) and, in the Files pane, `dist/paretopo.zip`, which `make colab-zip` builds in the repository (the project and its `data/`, without `.venv/` or `runs/`: Colab uploads files, not folders); the install cell finds it and says what it installed.*
#
# # Maths with a Python tool: ParetoPO with Unsloth on one GPU
#
# A maths model (default `Qwen/Qwen2.5-Math-1.5B`, or any hub model) learns to solve GSM8K-style
# problems with a sandboxed Python interpreter, and to call it only when it helps. Training is
# LoRA GRPO with ParetoPO's two stages, through Unsloth on a CUDA GPU (transformers + PEFT
# elsewhere). Then the adapter is evaluated on MATH-500, AIME 2024 / 2025 and AMC 2023, and
# exported as an adapter, merged 16-bit weights and GGUF.
#
# Pick a profile in the settings: `gpu-16gb` fits a free Colab T4, `gpu-80gb` an A100 / H100.
# `cpu-test` runs the same cells on the tiny CPU policy for a few steps (what the project's tests
# do); that policy only knows arithmetic, so it learns nothing here.

# %% [markdown]
# ## Install
# On Colab (or wherever `paretopo` does not import) this installs the project with its pinned
# dependencies. The project has no published repository yet (`REPOSITORY = None`, from
# `paretopo.commands.home`), so instead of cloning it installs what you upload next to the notebook: a zip
# of the repository, its folder, or a wheel plus the `data/` folder; the cell prints which it used,
# or says what to upload. Once the project is published, `REPOSITORY` is its URL and the cell clones it.
# Then, on a GPU, the pinned Unsloth set. Unsloth needs `trl<=1.15.0`; paretopo runs on TRL 1.15 and 1.16, so pip's note
# about the `trl` pin can be ignored. Locally nothing is installed when `paretopo` already
# imports (GPU machines: see the README, "GPU with Unsloth").

# %%
import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

IN_COLAB = "google.colab" in sys.modules
REPOSITORY = None  # paretopo.commands.home.PUBLISHED_REPOSITORY: no published home yet
CHECKOUT = Path("paretopo-checkout")
UNSLOTH = ["unsloth==2026.10.9", "unsloth_zoo==2026.10.9", "trl==1.15.0"]


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
    if shutil.which("nvidia-smi"):  # a GPU runtime; torch is not imported before the installs
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *UNSLOTH], check=True)
    data = source / "data" if source.is_dir() else Path("data")  # data/ is not part of the wheel
    if data.is_dir():
        os.environ["PARETOPO_DATA_DIR"] = str(data.resolve())
    else:
        print("No data/ folder came with the wheel: upload the repository's data/ folder next to this notebook "
              "(the shipped tiny policy and datasets).")
    importlib.invalidate_caches()

# %% [markdown]
# ## Settings
# `PARETOPO_NOTEBOOK_PROFILE` overrides the profile (the tests set `cpu-test`); `auto` picks by
# the GPU's memory. Runs go under `runs/` (git-ignored); `PARETOPO_RUNS_DIR` moves them.

# %% tags=["parameters"]
PROFILE = os.environ.get("PARETOPO_NOTEBOOK_PROFILE", "auto")  # auto | gpu-16gb | gpu-80gb | cpu-test
MODEL = "Qwen/Qwen2.5-Math-1.5B"  # any hub id or local path of a causal LM
METHOD = "paretopo"  # or a baseline preset: torl_grpo, otc_grpo, fixed_weight, mo_grpo, gdpo, ...
# the repository's runs/ (git-ignored) when the notebook runs inside a checkout, else ./runs
REPO_ROOT = next((p for p in (Path.cwd(), *Path.cwd().parents)
                  if (p / "pyproject.toml").exists() and (p / "paretopo").is_dir()), Path.cwd())
RUNS_ROOT = Path(os.environ.get("PARETOPO_RUNS_DIR", REPO_ROOT / "runs"))
SEED = 0

# %% [markdown]
# Each profile sets the model, memory-related sizes and the training budget. LoRA on a 4-bit base
# (QLoRA) keeps a 1.5B model with 1,024-token completions inside 16 GB; on 80 GB the base stays
# 16-bit and completions get ToRL's 3,072 tokens. Generation runs in paretopo's own tool-using
# decoding loop, so vLLM stays off. The learning rate is higher than the paper's full
# fine-tuning 1e-6, as usual for LoRA. `benchmark_examples` caps each benchmark (None: all of it).

# %%
import torch

PROFILES = {
    "gpu-16gb": {  # a free Colab T4
        "run": dict(model=MODEL, load_in_4bit=True, max_seq_length=2048, lora_rank=16, lora_alpha=32,
                    prompts_per_step=4, num_generations=8, max_completion_length=1024, learning_rate=5e-6,
                    max_steps=60, save_steps=20, validation_examples=32, test_examples=100,
                    train_split="gsm8k_train", extra={"use_vllm": False}),
        "method": dict(stage1_steps=20, stage1_eval_every=5),
        "benchmark_examples": 100, "eval_batch_size": 16, "export_gguf": True, "verify_export": True,
    },
    "gpu-80gb": {  # A100 / H100 80 GB
        "run": dict(model=MODEL, load_in_4bit=False, max_seq_length=4096, lora_rank=64, lora_alpha=64,
                    prompts_per_step=16, num_generations=16, max_completion_length=3072, learning_rate=5e-6,
                    max_steps=300, save_steps=50, validation_examples=64, test_examples=None,
                    train_split="gsm8k_train", extra={"use_vllm": False}),
        "method": dict(stage1_steps=100, stage1_eval_every=10),
        "benchmark_examples": None, "eval_batch_size": 64, "export_gguf": True, "verify_export": True,
    },
    "cpu-test": {  # the tiny CPU policy, a few steps: checks that every cell runs
        "run": dict(model=None, prompts_per_step=2, num_generations=4, max_completion_length=48, max_steps=2,
                    save_steps=1, validation_examples=4, test_examples=4, train_examples=8,
                    train_split="gsm8k_train_first200"),
        "method": dict(stage1_steps=1, stage1_eval_every=1),
        # the arithmetic policy never solves a maths problem, so its adapter stays zero: skip verification
        "benchmark_examples": 2, "eval_batch_size": 8, "export_gguf": False, "verify_export": False,
    },
}
if PROFILE == "auto":
    if not torch.cuda.is_available():
        raise RuntimeError("No CUDA GPU: this notebook trains a 1.5B model. On Colab choose Runtime > Change runtime "
                           "type > GPU; for a CPU smoke run set PARETOPO_NOTEBOOK_PROFILE=cpu-test.")
    PROFILE = "gpu-80gb" if torch.cuda.get_device_properties(0).total_memory >= 40 * 1024**3 else "gpu-16gb"
profile = PROFILES[PROFILE]
print("profile:", PROFILE)

# %% [markdown]
# ## Imports
# On a GPU, Unsloth must be imported before transformers and TRL: it patches them on import.

# %%
if torch.cuda.is_available() and importlib.util.find_spec("unsloth") is not None:
    import unsloth  # noqa: F401

import datetime
import gc

import polars as pl

from paretopo.tasks.answers import math_equal
from paretopo.core.config import ParetoPOConfig
from paretopo.evaluation.evaluate import evaluate_policy
from paretopo.evaluation.export import export_adapter
from paretopo.agent.models import load_policy, policy_backend
from paretopo.core.objectives import tool_efficiency
from paretopo.evaluation.runlog import read_run
from paretopo.tasks import get_task
from paretopo.tools.sandbox import detect_isolation
from paretopo.training.train import RunSettings, tiny_policy_path, train_run

if not torch.cuda.is_available():
    torch.set_num_threads(1)  # more threads are slower for small models on a shared CPU
RUN_DIR = RUNS_ROOT / (f"math-{METHOD}-" + datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S"))
settings = RunSettings(run_dir=str(RUN_DIR), seed=SEED, lora=True, task="math", validation_split="gsm8k_test",
                       test_split="math500", tools_in_prompt=profile["run"]["model"] is not None, **profile["run"])
method = ParetoPOConfig.from_preset(METHOD, **profile["method"])
print("run folder:", RUN_DIR)

# %% [markdown]
# ## GPU memory
# Peak memory as the notebook goes (PyTorch's allocator statistics; nothing to show on a CPU).

# %%
def gpu_memory(stage: str) -> dict:
    """Peak allocated / reserved GPU memory so far, in GiB (None without CUDA)."""
    if not torch.cuda.is_available():
        return {"stage": stage, "gpu": "none", "total_gib": None, "max_allocated_gib": None, "max_reserved_gib": None}
    gib = 1024**3
    return {"stage": stage, "gpu": torch.cuda.get_device_name(0),
            "total_gib": round(torch.cuda.get_device_properties(0).total_memory / gib, 2),
            "max_allocated_gib": round(torch.cuda.max_memory_allocated() / gib, 2),
            "max_reserved_gib": round(torch.cuda.max_memory_reserved() / gib, 2)}


memory = [gpu_memory("start")]
memory[-1]

# %% [markdown]
# ## 1. The base model
# `load_policy` uses Unsloth's `FastLanguageModel` on CUDA when it imports, transformers + PEFT
# otherwise (no LoRA yet: this copy is only evaluated).

# %%
model_path = settings.model or str(tiny_policy_path())
base, tokenizer = load_policy(model_path, lora=False, load_in_4bit=settings.load_in_4bit,
                              max_seq_length=settings.max_seq_length)
base.eval()
memory.append(gpu_memory("base model loaded"))
print(f"{model_path}: backend {policy_backend(base)}, {sum(p.numel() for p in base.parameters()):,} parameters")

# %% [markdown]
# ## 2. Data, tool and rewards, each checked on a toy example
# Training questions come from GSM8K's train split (`gsm8k_train_first200` ships in `data/`, the
# whole split loads from the Hub), validation from GSM8K test, and the test split is MATH-500.
# The final answer is the last `\boxed{}`, compared with `math-verify`; the tool is a Python
# interpreter in a sandbox (separate process, time / memory / output limits, no network).

# %%
task = get_task("math")
benchmarks = {name: task.load(name)[: profile["benchmark_examples"]] for name in ("math500", "aime2024", "aime2025", "amc23")}
train_preview = task.load(settings.train_split)[:3]
pl.DataFrame([{"question": e.question[:120], "answer": e.answer} for e in train_preview])

# %%
print("0.5 == \\frac{1}{2}:", math_equal("0.5", "\\frac{1}{2}"), "| 3 == \\frac{1}{2}:", math_equal("3", "\\frac{1}{2}"))
example = benchmarks["math500"][0]
print("a right boxed answer is correct:", task.is_correct(f"... so \\boxed{{{example.answer}}}", example))
python = task.tools()[0]
print(f"python tool ({detect_isolation()} isolation):", python("import math\nprint(math.comb(8, 4))").strip())
print("tool efficiency of 0..4 calls when n* = 1:", tool_efficiency([0, 1, 2, 3, 4], [1] * 5, alpha=method.alpha).round(3))

# %% [markdown]
# ## 3. Before training
# The base model with the tool, greedy decoding, on each benchmark.

# %%
def evaluate_benchmarks(model, label: str) -> pl.DataFrame:
    """Accuracy and tool calls of ``model`` on every benchmark, one row each."""
    rows = []
    for name, examples in benchmarks.items():
        result = evaluate_policy(model, tokenizer, task, examples, greedy=True,
                                 max_new_tokens=settings.max_completion_length, batch_size=profile["eval_batch_size"],
                                 tools_in_prompt=settings.tools_in_prompt, description=f"{name} ({label})")
        rows.append({"policy": label, "benchmark": name, **result.as_dict()})
    return pl.DataFrame(rows)


before = evaluate_benchmarks(base, "base")
memory.append(gpu_memory("after evaluating the base model"))
before

# %% [markdown]
# Free the evaluation copy before training loads its own (with LoRA adapters).

# %%
del base
gc.collect()
if torch.cuda.is_available():
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()

# %% [markdown]
# ## 4. Train: stage 1, then stage 2
# Stage 1 scalarises `(task, tool_efficiency)` with weights `w`, scaled by the hypervolume-driven
# meta reward (validation every `stage1_eval_every` steps); stage 2 uses Pareto ranks within each
# group. Checkpoints are evaluated on the validation subset; the final adapter on MATH-500.

# %%
result = train_run(method, settings)
memory.append(gpu_memory("training (peak)"))
run = read_run(result.run_dir)
run.steps.select("step", "stage", "weights/meta_reward", "objectives/task", "objectives/tool_efficiency",
                 "objectives/mean_tool_calls", "step_time")

# %%
pl.DataFrame(memory)

# %% [markdown]
# ## 5. After training
# The trained adapter on the same benchmarks, next to the base model.

# %%
# the saved run, as anyone re-opening it later would (not the live trainer): runs/<name>/final
from paretopo.evaluation.runlog import run_paths
from paretopo.agent.models import load_adapter

trained, _ = load_adapter(run_paths(result.run_dir).final)
after = evaluate_benchmarks(trained, f"{METHOD}, {result.steps} steps")
pl.concat([before, after]).select("benchmark", "policy", "accuracy", "mean_tool_calls", "tool_productivity").sort(
    "benchmark", "policy")

# %% [markdown]
# ## 6. Export
# The LoRA adapter with its tokenizer and a `paretopo.json` (method, weights, test point), merged
# 16-bit weights (load without PEFT), and on a GPU a GGUF file through Unsloth (it fetches
# llama.cpp on first use; if that step fails, the adapter and merged weights are already saved).
# Verification checks that the adapter is finite, not all zero, reloads and changes the output.

# %%
export = export_adapter(result.run_dir, RUN_DIR.with_name(RUN_DIR.name + "-export"), merged=True, gguf=profile["export_gguf"],
                        verify=profile["verify_export"])
print("adapter:", export.path, "| merged:", export.merged_path, "| gguf:", export.gguf_path)
export.verify
