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
# # Multi-hop QA with a search tool: ParetoPO on HotpotQA
#
# A base model (default `Qwen/Qwen2.5-3B`, as in Search-R1) answers HotpotQA questions, which need
# facts from two Wikipedia paragraphs, with a BM25 search tool, and learns to search only as much
# as it needs. Training is LoRA GRPO with ParetoPO's two stages (Unsloth on a CUDA GPU,
# transformers + PEFT elsewhere); evaluation reports exact match, token F1 and searches per
# answer before and after; the adapter is exported and verified.
#
# Profiles: `gpu-16gb` (a free Colab T4), `gpu-80gb` (A100 / H100), and `cpu-test`, which runs the
# same cells on the tiny CPU policy for a few steps (what the project's tests do; that policy only
# knows arithmetic, so it learns nothing here).

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
MODEL = "Qwen/Qwen2.5-3B"  # any hub id or local path of a causal LM
METHOD = "paretopo"  # or a baseline preset: torl_grpo (Search-R1's GRPO), otc_grpo, fixed_weight, ...
# the repository's runs/ (git-ignored) when the notebook runs inside a checkout, else ./runs
REPO_ROOT = next((p for p in (Path.cwd(), *Path.cwd().parents)
                  if (p / "pyproject.toml").exists() and (p / "paretopo").is_dir()), Path.cwd())
RUNS_ROOT = Path(os.environ.get("PARETOPO_RUNS_DIR", REPO_ROOT / "runs"))
SEED = 0

# %% [markdown]
# Each profile sets the model, memory-related sizes and the training budget. Search-R1 samples 5
# completions per question and allows 4 searches returning 3 passages each; completions here
# count the retrieved passages too. A 4-bit base (QLoRA) keeps the 3B model inside 16 GB.
# Generation runs in paretopo's own tool-using decoding loop, so vLLM stays off; the learning
# rate is higher than the paper's full fine-tuning 1e-6, as usual for LoRA.

# %%
import torch

PROFILES = {
    "gpu-16gb": {  # a free Colab T4
        "run": dict(model=MODEL, load_in_4bit=True, max_seq_length=2048, lora_rank=16, lora_alpha=32,
                    prompts_per_step=4, num_generations=5, max_completion_length=1024, learning_rate=5e-6,
                    max_steps=60, save_steps=20, validation_examples=32, test_examples=None,
                    extra={"use_vllm": False}),
        "method": dict(stage1_steps=20, stage1_eval_every=5),
        "eval_batch_size": 16, "verify_export": True,
    },
    "gpu-80gb": {  # A100 / H100 80 GB
        "run": dict(model=MODEL, load_in_4bit=False, max_seq_length=4096, lora_rank=64, lora_alpha=64,
                    prompts_per_step=32, num_generations=5, max_completion_length=2048, learning_rate=5e-6,
                    max_steps=200, save_steps=40, validation_examples=50, test_examples=None,
                    extra={"use_vllm": False}),
        "method": dict(stage1_steps=60, stage1_eval_every=10),
        "eval_batch_size": 64, "verify_export": True,
    },
    "cpu-test": {  # the tiny CPU policy, a few steps: checks that every cell runs
        "run": dict(model=None, prompts_per_step=2, num_generations=4, max_completion_length=48, max_steps=2,
                    save_steps=1, validation_examples=4, test_examples=4, train_examples=8),
        "method": dict(stage1_steps=1, stage1_eval_every=1),
        # the arithmetic policy never answers a HotpotQA question, so its adapter stays zero: skip verification
        "eval_batch_size": 8, "verify_export": False,
    },
}
if PROFILE == "auto":
    if not torch.cuda.is_available():
        raise RuntimeError("No CUDA GPU: this notebook trains a 3B model. On Colab choose Runtime > Change runtime "
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

from paretopo.tasks.answers import qa_exact_match, qa_f1
from paretopo.core.config import ParetoPOConfig
from paretopo.evaluation.evaluate import evaluate_policy
from paretopo.evaluation.export import export_adapter
from paretopo.agent.models import load_policy, policy_backend
from paretopo.evaluation.runlog import read_run
from paretopo.tasks.multihop_qa import HotpotQATask
from paretopo.training.train import RunSettings, tiny_policy_path, train_run

if not torch.cuda.is_available():
    torch.set_num_threads(1)  # more threads are slower for small models on a shared CPU

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
# ## 1. Data: HotpotQA without a download
# The repository ships 500 questions of HotpotQA's dev set (distractor setting) with their
# paragraphs, and the search tool indexes those 4,858 paragraphs with BM25. We cut the 500
# questions into disjoint parts by position: 400 to train on, 50 for validation (stage 1's outcome
# and the checkpoint frontier), 50 for the test. HotpotQA's full train split is on the Hub
# (`task.load("train")`), but its paragraphs are not in this index: pass `retriever=` a
# `BM25Retriever` over `build_hotpotqa_corpus(...)` of those examples to train on it.

# %%
class HotpotQADevParts(HotpotQATask):
    """HotpotQA whose ``dev_train`` / ``dev_validation`` / ``dev_test`` splits partition ``dev_500``."""

    parts = {"dev_train": slice(0, 400), "dev_validation": slice(400, 450), "dev_test": slice(450, 500)}

    def load(self, split):
        if split in self.parts:
            return super().load("dev_500")[self.parts[split]]
        return super().load(split)


task = HotpotQADevParts()
test_examples = task.load("dev_test")[: profile["run"]["test_examples"]]
pl.DataFrame([{"type": e.metadata["type"], "question": e.question[:100], "answers": e.answer} for e in test_examples[:4]])

# %% [markdown]
# ## 2. The tool and the reward, checked on a toy example
# A search returns the 3 best paragraphs. The answer is the last `<answer>...</answer>` span; it
# is correct when it equals a gold answer after SQuAD normalisation (lower case, no punctuation or
# articles); token F1 is reported too.

# %%
search = task.tools()[0]
print(search(test_examples[0].question)[:600])

# %%
gold = ["Chief of Protocol"]
for completion in ("<answer> chief of protocol </answer>", "<answer> the Chief of Protocol. </answer>",
                   "<answer> protocol officer </answer>", "no answer tag"):
    prediction = task.extract_answer(completion)
    print(f"{completion!r:45} exact match {qa_exact_match(prediction, gold)}, F1 {qa_f1(prediction, gold):.2f}")

# %% [markdown]
# ## 3. The base model and its numbers before training
# `load_policy` uses Unsloth's `FastLanguageModel` on CUDA when it imports, transformers + PEFT
# otherwise (no LoRA yet: this copy is only evaluated). Greedy decoding, with the tool.

# %%
RUN_DIR = RUNS_ROOT / (f"hotpotqa-{METHOD}-" + datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S"))
settings = RunSettings(run_dir=str(RUN_DIR), seed=SEED, lora=True, task=task, train_split="dev_train",
                       validation_split="dev_validation", test_split="dev_test",
                       tools_in_prompt=profile["run"]["model"] is not None, **profile["run"])
method = ParetoPOConfig.from_preset(METHOD, **profile["method"])
model_path = settings.model or str(tiny_policy_path())
base, tokenizer = load_policy(model_path, lora=False, load_in_4bit=settings.load_in_4bit,
                              max_seq_length=settings.max_seq_length)
base.eval()
memory.append(gpu_memory("base model loaded"))
print(f"{model_path}: backend {policy_backend(base)}, {sum(p.numel() for p in base.parameters()):,} parameters")


# %%
def evaluate(model, label: str) -> dict:
    """Exact match, F1 and searches per answer of ``model`` on the test part."""
    result = evaluate_policy(model, tokenizer, task, test_examples, greedy=True,
                             max_new_tokens=settings.max_completion_length, batch_size=profile["eval_batch_size"],
                             tools_in_prompt=settings.tools_in_prompt, description=f"test ({label})")
    by_id = {e.id: e for e in test_examples}
    f1 = [task.f1(text, by_id[i]) for i, text in zip(result.rows["id"], result.rows["text"], strict=True)]
    return {"policy": label, "exact_match": result.accuracy, "f1": sum(f1) / len(f1),
            "searches_per_answer": result.mean_tool_calls, "tool_productivity": result.tool_productivity}


before = evaluate(base, "base")
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
# Stage 1 scalarises `(exact match, search efficiency)` with weights `w`, scaled by the
# hypervolume-driven meta reward; stage 2 uses Pareto ranks within each group of 5 completions.

# %%
result = train_run(method, settings)
memory.append(gpu_memory("training (peak)"))
run = read_run(result.run_dir)
run.steps.select("step", "stage", "weights/meta_reward", "objectives/task", "objectives/tool_efficiency",
                 "objectives/mean_tool_calls", "step_time")

# %%
pl.DataFrame(memory)

# %% [markdown]
# ## 5. Before and after

# %%
# the saved run, as anyone re-opening it later would (not the live trainer): runs/<name>/final
from paretopo.evaluation.runlog import run_paths
from paretopo.agent.models import load_adapter

trained, _ = load_adapter(run_paths(result.run_dir).final)
pl.DataFrame([before, evaluate(trained, f"{METHOD}, {result.steps} steps")])

# %% [markdown]
# ## 6. Export the adapter
# The LoRA adapter with its tokenizer and a `paretopo.json` (method, weights, test point),
# verified: finite, not all zero, reloads onto the base model and changes its output.

# %%
export = export_adapter(result.run_dir, RUN_DIR.with_name(RUN_DIR.name + "-export"), verify=profile["verify_export"])
print("adapter:", export.path)
export.verify
