#!/usr/bin/env python3
"""The GPU path in one command: Unsloth load and rollouts, Unsloth vs TRL+PEFT ParetoPO steps, export,
memory, generation speed, GPU tests.

On a CUDA machine (the lent H100 or H200; docs/gpu.md has the one device call, through
``scripts/gpu_device.sh``)::

    python benchmarks/gpu_check.py --out DIR [--deadline-s 420]

builds a Qwen2.5-0.5B-shaped model from its config with random weights (bf16) and a local
tokenizer (the tiny policy's byte-level tokenizer with its vocabulary padded to Qwen2.5's
151,936 ids; no hub, no network), prints the plan, then runs the phases in this order, cheap and
decisive first, each in its own process (importing Unsloth patches TRL and transformers for the
whole process; an Unsloth phase imports it before anything else, the others make it
unimportable), each writing its result the moment it ends:

1. ``unsloth_rollout``: Unsloth loads the policy; one batch of tool rollouts decodes through the
   backend ``rollout_backend_for`` picks (``segmented_generate`` for an Unsloth model);
2. ``train_unsloth``: ParetoPO (``paretopo.training.train.train_run``), one stage-1 and one
   stage-2 step (``--stage1-steps``/``--stage2-steps``), ``--prompts`` x ``--generations`` of
   the arithmetic task, with Unsloth fast LoRA: s/step, tokens/s, peak memory, stages;
3. ``train_trl_peft``: the same with plain TRL + PEFT (the TRL/Unsloth s/step ratio);
4. ``export_verify``: the Unsloth run's adapter and merged 16-bit export
   (``paretopo.evaluation.export``), reloaded and compared with the base in a process without
   Unsloth (what a user reloading it gets);
5. ``memory_1.5b``: the 1.5B shape built and trained two LoRA steps: peak memory against a 16 GB
   card (a Colab T4: 15,360 MiB usable; an L4 has 24 GB);
6. ``generation``: tokens/s of the tool loop, ``segmented_generate`` and ``model.generate``
   (dynamic and static cache), eager, same prompts, samples and length;
7. ``generation_compile``: ``model.generate`` with a static cache and ``torch.compile`` (last
   but one: compiling can take minutes, and only its own phase is lost if it does);
8. ``gpu_tests``: the ``gpu``-marked tests, Unsloth imported first (tests/conftest.py).

No phase starts with under ``MIN_PHASE_START_S`` (60 s) left before ``--deadline-s``, and none
runs past it (a phase cut off keeps the steps it finished). ``--work`` must be new or empty (the
default is a new temporary folder), so a rerun never appends to old step logs.

``--dry-run`` runs the same plan on the CPU, in one process, small: the shipped tiny policy
(``data/tiny_policy``, read only) for training, export and generation, a tiny random shape with a
padded vocabulary in place of the 1.5B one, Unsloth, ``torch.compile`` and the gpu tests reported
as skipped. The tests run it (tests/test_gpu_check.py), so the script cannot rot between GPU tasks.

Random weights never solve arithmetic, so with the task's own checker every group would be
degenerate (all advantages zero, no gradient, an untrained adapter that cannot change outputs).
Runs on a random-weight shape therefore score correctness with a fixed hash of the completion
text (``HashScoredArithmeticTask``): about half the completions count as correct, groups have
variance, ParetoPO's ranks and advantages are non-trivial, and the backward pass does real work.
The timings are what this check is for; the learning signal is not.

Everything lands in ``--out``: ``gpu_check.json`` (all numbers, versions, the plan, the exact
command), ``gpu_check.md`` (the tables for docs/gpu.md) and ``phases.log`` (every phase's
output). Both result files are rewritten after each phase, so a run cut short leaves what it
measured.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from a checkout: use this checkout's paretopo
    sys.path.insert(0, str(REPO))

RESULTS_JSON = "gpu_check.json"
RESULTS_MARKDOWN = "gpu_check.md"
PHASE_LOG = "phases.log"
MIN_PHASE_START_S = 60  # a phase never starts with less left before --deadline-s
T4_USABLE_MIB = 15_360  # what nvidia-smi shows for a 16 GB T4 (Colab)
QWEN2_5_VOCAB = 151_936

# Qwen2.5 configs (hub config.json of Qwen/Qwen2.5-0.5B and -1.5B); both tie their embeddings.
SHAPES: dict[str, dict[str, int]] = {
    "qwen2.5-0.5b": {"hidden_size": 896, "num_layers": 24, "num_heads": 14, "num_key_value_heads": 2,
                     "intermediate_size": 4864, "vocab_size": QWEN2_5_VOCAB, "max_position_embeddings": 32768},
    "qwen2.5-1.5b": {"hidden_size": 1536, "num_layers": 28, "num_heads": 12, "num_key_value_heads": 2,
                     "intermediate_size": 8960, "vocab_size": QWEN2_5_VOCAB, "max_position_embeddings": 32768},
    # the dry run's stand-in for the 1.5B shape: the tiny policy's shape, vocabulary padded
    "tiny-padded": {"hidden_size": 64, "num_layers": 2, "num_heads": 4, "num_key_value_heads": 2,
                    "intermediate_size": 256, "vocab_size": 512, "max_position_embeddings": 4096},
}


# ------------------------------------------------------------------------------------------
# models and tokenizer built locally
# ------------------------------------------------------------------------------------------


def build_padded_tokenizer(vocab_size: int):
    """The tiny policy's byte-level tokenizer (``paretopo.agent.models.build_tiny_tokenizer``) with
    filler entries ``x<id>`` appended up to ``vocab_size`` ids.

    Encoding is unchanged (no merges: one token per byte, ChatML and tool tags whole), so a
    prompt is about 4x longer in tokens than with Qwen2.5's BPE tokenizer; the fillers only make
    every id a random-weight model can sample decodable. Raises ValueError below the tiny size.
    """
    from paretopo.agent.models import build_tiny_tokenizer

    tiny = build_tiny_tokenizer()
    tokenizer = build_tiny_tokenizer(vocab_size)
    if len(tokenizer) != vocab_size or any(tokenizer.convert_tokens_to_ids(t) != i
                                           for t, i in tiny.get_vocab().items()):
        raise RuntimeError("the padded tokenizer does not extend the tiny tokenizer id for id")
    return tokenizer


def build_shaped_model(shape: str, folder: Path, *, device: str, seed: int = 0) -> dict[str, Any]:
    """Save a random-weight Qwen2 model of ``SHAPES[shape]`` (bf16 on CUDA, else fp32) and its
    padded tokenizer to ``folder``, loadable with ``paretopo.agent.models.load_policy(folder)``."""
    import torch

    from paretopo.agent.models import build_tiny_policy, save_tiny_policy

    spec = dict(SHAPES[shape])
    started = time.perf_counter()
    tokenizer = build_padded_tokenizer(spec.pop("vocab_size"))
    if device == "cuda":
        torch.cuda.manual_seed(seed)
    with torch.device(device):  # initialising 1.5B parameters on the GPU takes a second, not a minute
        model = build_tiny_policy(tokenizer, seed=seed, **spec)
    if device == "cuda":
        model = model.to(torch.bfloat16)
    save_tiny_policy(model, tokenizer, folder)
    parameters = sum(p.numel() for p in model.parameters())
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return {"shape": shape, "path": str(folder), "parameters": parameters, "vocab_size": len(tokenizer),
            "dtype": "bfloat16" if device == "cuda" else "float32", "seconds": time.perf_counter() - started}


def hash_scored_arithmetic_task():
    """The arithmetic task with correctness scored by a hash of the completion text (see module doc)."""
    from paretopo.tasks.arithmetic import ArithmeticTask

    class HashScoredArithmeticTask(ArithmeticTask):
        """Arithmetic prompts, splits and tools; ``is_correct`` = lowest bit of sha256(text).

        Only for random-weight models, which never solve a question: it gives every group
        about half "correct" completions so the advantages, and the gradient, are not zero.
        """

        def is_correct(self, completion_text: str, example: Any) -> bool:
            return bool(hashlib.sha256(completion_text.encode("utf-8")).digest()[0] & 1)

    return HashScoredArithmeticTask()


# ------------------------------------------------------------------------------------------
# phases (each runs in its own process on a GPU, in this process with --dry-run)
# ------------------------------------------------------------------------------------------


def _block_unsloth() -> None:
    """Make ``unsloth`` unimportable in this process, so ``load_policy`` takes transformers + PEFT
    and TRL stays unpatched (``importlib.util.find_spec`` returns None for a None entry)."""
    sys.modules["unsloth"] = None  # type: ignore[assignment]  # belt and braces beside prefer_unsloth=False
    sys.modules["unsloth_zoo"] = None  # type: ignore[assignment]


def _import_unsloth_first() -> float:
    """Import Unsloth before transformers, PEFT and TRL (it patches them on import and warns that its
    patches may not apply otherwise); seconds the import took."""
    already = [name for name in ("transformers", "peft", "trl") if name in sys.modules]
    if already:
        raise RuntimeError(f"{', '.join(already)} imported before unsloth in this process")
    started = time.perf_counter()
    import unsloth  # noqa: F401

    return time.perf_counter() - started


class PartialResult:
    """A phase's result file, rewritten whenever a step of the phase ends: a phase stopped at its
    limit still reports what it finished (``Check`` reads the file after a timeout)."""

    def __init__(self, spec: dict[str, Any]):
        self.path = Path(spec["result_path"]) if spec.get("result_path") else None
        self.values: dict[str, Any] = {}

    def put(self, **values: Any) -> dict[str, Any]:
        self.values.update(values)
        if self.path is not None:
            self.path.write_text(json.dumps(self.values, default=str))
        return self.values


def _cuda_memory() -> dict[str, float | None]:
    import torch

    if not torch.cuda.is_available():
        return {"peak_allocated_gib": None, "peak_reserved_gib": None}
    return {"peak_allocated_gib": torch.cuda.max_memory_allocated() / 2**30,
            "peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30}


def _prepare_backend(spec: dict[str, Any], partial: PartialResult) -> None:
    """Unsloth first for an Unsloth phase; Unsloth blocked for a transformers + PEFT one."""
    if spec["backend"] == "unsloth":
        partial.put(unsloth_import_s=_import_unsloth_first())
    else:
        _block_unsloth()


def phase_unsloth_rollout(spec: dict[str, Any]) -> dict[str, Any]:
    """Load the policy (Unsloth first) and decode one batch of tool-using rollouts with the backend
    ``rollout_backend_for`` picks for it: the first things the GPU run must show work."""
    partial = PartialResult(spec)
    _prepare_backend(spec, partial)
    import torch

    from paretopo.agent.models import load_policy, policy_backend, uses_unsloth_generate
    from paretopo.agent.rollout_backends import get_rollout_backend, rollout_backend_for

    started = time.perf_counter()
    model, tokenizer = load_policy(spec["model"], prefer_unsloth=spec["backend"] == "unsloth")
    backend = rollout_backend_for(model)
    partial.put(backend_used=policy_backend(model), uses_unsloth_generate=uses_unsloth_generate(model),
                rollout_backend=backend, load_s=time.perf_counter() - started, **_cuda_memory())
    task = hash_scored_arithmetic_task()
    chats = [task.messages(e) for e in task.load("train")[: spec["prompts"]]]
    tools = {tool.__name__: tool for tool in task.tools()}
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    started = time.perf_counter()
    rollouts = get_rollout_backend(backend)(
        model, tokenizer, chats, tools=tools, num_samples=spec["generations"],
        max_new_tokens=spec["max_completion_length"], max_tool_calls=task.max_tool_calls,
        tools_in_prompt=spec["tools_in_prompt"], seed=0)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    tokens = sum(len(r.completion_ids) for r in rollouts)
    aligned = all(len(r.completion_ids) == len(r.loss_mask) == len(r.logprobs) for r in rollouts)
    reasons: dict[str, int] = {}
    for rollout in rollouts:
        reasons[rollout.finish_reason] = reasons.get(rollout.finish_reason, 0) + 1
    return partial.put(rollouts=len(rollouts), completion_tokens=tokens, rollout_s=seconds,
                       tokens_per_s=tokens / seconds, finish_reasons=reasons, records_aligned=aligned,
                       environment_tokens=sum(r.loss_mask.count(0) for r in rollouts), **_cuda_memory())


def phase_train(spec: dict[str, Any]) -> dict[str, Any]:
    """ParetoPO steps with one backend (building the model first when the spec names a shape)."""
    partial = PartialResult(spec)
    _prepare_backend(spec, partial)
    import torch

    if spec.get("build_shape"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
        partial.put(built=build_shaped_model(spec["build_shape"], Path(spec["model"]), device=device))
    from paretopo.agent.models import policy_backend
    from paretopo.evaluation.runlog import read_run
    from paretopo.tasks import get_task
    from paretopo.training.train import RunSettings, train_run

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    steps = spec["stage1_steps"] + spec["stage2_steps"]
    task = hash_scored_arithmetic_task() if spec["hash_scored"] else get_task("arithmetic")
    settings = RunSettings(
        run_dir=spec["run_dir"], task=task, model=spec["model"], seed=0, max_steps=steps,
        prompts_per_step=spec["prompts"], num_generations=spec["generations"],
        max_completion_length=spec["max_completion_length"], save_steps=steps + 1,
        validation_examples=spec["prompts"], test_examples=spec["prompts"], checkpoint_eval=False,
        tools_in_prompt=spec["tools_in_prompt"], progress=False, learning_rate=spec.get("learning_rate"),
    )
    started = time.perf_counter()
    result = train_run("paretopo", settings, method_overrides={"stage1_steps": spec["stage1_steps"],
                                                               "stage1_outcome": "train_batch"})
    wall = time.perf_counter() - started
    trainer = result.trainer
    model = trainer.accelerator.unwrap_model(trainer.model)
    rows = read_run(spec["run_dir"]).steps.sort("step").to_dicts()
    step_times = [r.get("step_time") for r in rows]
    batch_rows = spec["prompts"] * spec["generations"]
    completion_tokens = [r.get("completions/mean_length", float("nan")) * batch_rows for r in rows]
    steady = slice(1, None) if len(rows) > 1 else slice(None)  # the first step pays compilation and warm-up
    timed = [(t, n) for t, n in zip(step_times[steady], completion_tokens[steady], strict=True) if t]
    log_history = trainer.state.log_history
    train_runtime = next((h["train_runtime"] for h in reversed(log_history) if "train_runtime" in h), None)
    return partial.put(
        backend_requested=spec["backend"], backend_used=policy_backend(model),
        rollout_backend=getattr(getattr(trainer, "rollout_func", None), "last_backend", None),
        trainer_base_class=_trl_base_class(type(trainer)), model=spec["model"], steps=result.steps,
        stages=[int(r["stage"]) for r in rows if r.get("stage") is not None], step_time_s=step_times,
        median_step_s_after_first=statistics.median(t for t, _ in timed) if timed else None,
        train_runtime_s=train_runtime, completion_tokens_per_step=completion_tokens,
        completion_tokens_per_s_after_first=(sum(n for _, n in timed) / sum(t for t, _ in timed)) if timed else None,
        prompt_tokens=len(trainer.processing_class.encode(trainer.processing_class.apply_chat_template(
            task.messages(task.load("train")[0]), add_generation_prompt=True, tokenize=False),
            add_special_tokens=False)),
        rewards_task_correct_mean=[r.get("rewards/task_correct/mean") for r in rows],
        wall_s_including_load_and_eval=wall, test=result.test, **_cuda_memory())


def phase_export(spec: dict[str, Any]) -> dict[str, Any]:
    """Export a run and verify it in a process without Unsloth: what a user reloading it gets."""
    _block_unsloth()
    return PartialResult(spec).put(source_run=spec["run_dir"],
                                   **export_and_verify(Path(spec["run_dir"]), Path(spec["export_dir"]), spec))


def _trl_base_class(trainer_class: type) -> str:
    """The GRPOTrainer class ParetoPO was built over (TRL's own, or Unsloth's rewrite of it)."""
    from paretopo.training.trainer import ParetoPOMixin

    base = next(c for c in trainer_class.__mro__[1:] if c is not ParetoPOMixin)
    return f"{base.__module__}.{base.__qualname__}"


def export_and_verify(run_dir: Path, export_dir: Path, spec: dict[str, Any]) -> dict[str, Any]:
    """``paretopo.evaluation.export``: adapter + merged 16-bit weights; each reloaded and compared with the base."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from paretopo.evaluation.export import export_adapter, verify_adapter
    from paretopo.tasks import get_task

    started = time.perf_counter()
    report = export_adapter(run_dir, export_dir, merged=True, verify=False)
    adapter = verify_adapter(report.path, n_prompts=spec["verify_prompts"], max_new_tokens=spec["verify_tokens"])
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = AutoTokenizer.from_pretrained(report.merged_path)
    task = get_task("arithmetic")
    prompts = [tokenizer.apply_chat_template(task.messages(e), add_generation_prompt=True, tokenize=False)
               for e in task.load("test")[: spec["verify_prompts"]]]

    def greedy(folder: str) -> list[list[int]]:
        model = AutoModelForCausalLM.from_pretrained(folder).to(device).eval()
        outputs = []
        for prompt in prompts:
            inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(device)
            with torch.no_grad():
                ids = model.generate(**inputs, max_new_tokens=spec["verify_tokens"], do_sample=False,
                                     pad_token_id=tokenizer.pad_token_id)
            outputs.append(ids[0].tolist())
        return outputs

    merged_outputs, base_outputs = greedy(str(report.merged_path)), greedy(spec["model"])
    merged_changed = sum(a != b for a, b in zip(merged_outputs, base_outputs, strict=True))
    merged_config = json.loads((report.merged_path / "config.json").read_text())
    files = {str(p.relative_to(export_dir)): p.stat().st_size for p in sorted(export_dir.rglob("*")) if p.is_file()}
    return {
        "adapter_path": str(report.path), "merged_path": str(report.merged_path),
        "adapter_verify": {k: getattr(adapter, k) for k in adapter.__dataclass_fields__},
        "merged_reloaded": True, "merged_dtype": merged_config.get("dtype") or merged_config.get("torch_dtype"),
        "merged_changed_outputs": merged_changed, "merged_prompts_checked": len(prompts),
        "merged_ok": merged_changed > 0,
        "gguf": "not attempted: Unsloth's GGUF export needs llama.cpp, which the machine cannot fetch",
        "files_bytes": files, "seconds": time.perf_counter() - started,
    }


def phase_generation(spec: dict[str, Any]) -> dict[str, Any]:
    """Tokens/s of paretopo's tool loop and of ``model.generate`` variants, same batch and length."""
    _block_unsloth()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from paretopo.agent.rollout_backends import get_rollout_backend
    from paretopo.tasks import get_task

    on_cuda = torch.cuda.is_available()
    device = "cuda" if on_cuda else "cpu"
    model = AutoModelForCausalLM.from_pretrained(
        spec["model"], dtype=torch.bfloat16 if on_cuda else torch.float32).to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(spec["model"])
    task = get_task("arithmetic")
    chats = [task.messages(e) for e in task.load("test")[: spec["prompts"]]]
    tools = {tool.__name__: tool for tool in task.tools()}
    samples, new_tokens, repeats = spec["generations"], spec["max_new_tokens"], spec["repeats"]

    def timed(call) -> tuple[float, int]:
        call()  # warm-up (and compilation)
        seconds, produced = [], 0
        for _ in range(repeats):
            if on_cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            produced = call()
            if on_cuda:
                torch.cuda.synchronize()
            seconds.append(time.perf_counter() - start)
        return statistics.median(seconds), produced

    results: dict[str, Any] = {}
    tool_loop = get_rollout_backend("tool_loop")

    def run_tool_loop() -> int:
        rollouts = tool_loop(model, tokenizer, chats, tools=tools, num_samples=samples, max_new_tokens=new_tokens,
                             max_tool_calls=task.max_tool_calls, tools_in_prompt=spec["tools_in_prompt"], seed=0)
        return sum(len(r.completion_ids) for r in rollouts)

    texts = [tokenizer.apply_chat_template(c, tools=list(tools.values()) if spec["tools_in_prompt"] else None,
                                           add_generation_prompt=True, tokenize=False) for c in chats]
    tokenizer.padding_side = "left"
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)

    def run_generate(**options: Any) -> int:
        with torch.no_grad():
            output = model.generate(**batch, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                                    num_return_sequences=samples, max_new_tokens=new_tokens,
                                    min_new_tokens=new_tokens, pad_token_id=tokenizer.pad_token_id, **options)
        return int((output.shape[1] - batch["input_ids"].shape[1]) * output.shape[0])

    segmented = get_rollout_backend("segmented_generate")

    def run_segmented() -> int:
        rollouts = segmented(model, tokenizer, chats, tools=tools, num_samples=samples, max_new_tokens=new_tokens,
                             max_tool_calls=task.max_tool_calls, tools_in_prompt=spec["tools_in_prompt"], seed=0)
        return sum(len(r.completion_ids) for r in rollouts)

    if spec["variants"] == "eager":
        variants = [
            ("tool_loop (paretopo, DynamicCache, eager)", run_tool_loop),
            ("segmented_generate (paretopo, model.generate per turn, eager)", run_segmented),
            ("model.generate, dynamic cache, eager", lambda: run_generate(disable_compile=True)),
            ("model.generate, static cache, eager", lambda: run_generate(cache_implementation="static",
                                                                           disable_compile=True)),
        ]
    else:  # transformers compiles the forward for a static cache on CUDA only; last: it may take minutes
        variants = [("model.generate, static cache, torch.compile",
                     (lambda: run_generate(cache_implementation="static")) if on_cuda else None)]
    deadline = spec.get("deadline_monotonic")
    for name, call in variants:
        if call is None:
            results[name] = {"skipped": "transformers auto-compiles generate on CUDA only"}
            continue
        if deadline is not None and time.monotonic() > deadline:
            results[name] = {"skipped": "out of time (--deadline-s)"}
            continue
        try:
            seconds, produced = timed(call)
            results[name] = {"seconds": seconds, "tokens": produced, "tokens_per_s": produced / seconds}
        except Exception as error:  # noqa: BLE001 - a variant transformers rejects is a result, not a crash
            results[name] = {"error": f"{type(error).__name__}: {error}"[:500]}
    measured = {k: v["tokens_per_s"] for k, v in results.items() if "tokens_per_s" in v}
    fastest = max(measured, key=measured.get) if measured else None
    return {"model": spec["model"], "device": device, "prompts": len(chats), "samples": samples,
            "max_new_tokens": new_tokens, "repeats": repeats,
            "prompt_tokens": [len(tokenizer.encode(t, add_special_tokens=False)) for t in texts],
            "variants": results, "fastest": fastest,
            "note": "model.generate is single-turn and runs no tools; the tool loop stops rows at their answer"}


def phase_gpu_tests(spec: dict[str, Any]) -> dict[str, Any]:
    """``pytest -m gpu`` on the test files that hold ``gpu``-marked tests."""
    files = sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").glob("test_*.py")
                   if "mark.gpu" in p.read_text(encoding="utf-8"))
    command = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", "-rA", *files]
    started = time.perf_counter()
    # tests/conftest.py imports Unsloth before anything else when asked (it patches on import)
    completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=spec["timeout_s"],
                               env={**_child_environment(), "PARETOPO_UNSLOTH_FIRST": "1"})
    output = completed.stdout + completed.stderr
    summary = next((line for line in reversed(output.splitlines())
                    if re.search(r"\d+ (passed|failed|skipped|deselected|error)", line)), "")
    return {"command": " ".join(command[1:]), "returncode": completed.returncode, "summary": summary.strip("= "),
            "output_tail": output[-3000:], "seconds": time.perf_counter() - started}


PHASES = {"unsloth_rollout": phase_unsloth_rollout, "train": phase_train, "export": phase_export,
          "generation": phase_generation, "gpu_tests": phase_gpu_tests}


# ------------------------------------------------------------------------------------------
# orchestration
# ------------------------------------------------------------------------------------------


def _child_environment() -> dict[str, str]:
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), environment.get("PYTHONPATH")]))
    environment.setdefault("PARETOPO_DATA_DIR", str(REPO / "data"))
    for offline in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        environment.setdefault(offline, "1")
    environment.setdefault("UNSLOTH_DISABLE_STATISTICS", "1")
    environment.setdefault("TOKENIZERS_PARALLELISM", "false")
    environment["PYTHONUNBUFFERED"] = "1"
    return environment


class Check:
    """Runs phases (in child processes unless ``in_process``) and keeps the result files current."""

    def __init__(self, out: Path, work: Path, *, in_process: bool, deadline_s: float, command: str, dry_run: bool):
        self.out, self.work, self.in_process, self.dry_run = out, work, in_process, dry_run
        self.deadline = time.monotonic() + deadline_s
        self.results: dict[str, Any] = {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "command": command, "dry_run": dry_run, "environment": environment_summary(), "phases": {},
        }
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / PHASE_LOG).write_text("")

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def run(self, name: str, phase: str, spec: dict[str, Any], limit_s: float) -> dict[str, Any] | None:
        """Run one phase with at most ``limit_s`` (and what is left before the deadline); a phase
        is not started with under ``MIN_PHASE_START_S`` left."""
        if self.remaining() < MIN_PHASE_START_S:
            self.record(name, {"skipped": f"out of time: {max(self.remaining(), 0):.0f} s left before --deadline-s, "
                                          f"a phase needs {MIN_PHASE_START_S} s to start"})
            return None
        timeout = min(limit_s, self.remaining())
        started = time.perf_counter()
        self.log(f"\n===== {name} ({phase}, limit {timeout:.0f} s) =====\n")
        try:
            if self.in_process:
                result = PHASES[phase](spec)
            else:
                result = self._run_child(phase, spec, timeout)
        except Exception as error:  # noqa: BLE001 - record the failure and go on with the next phase
            result = {"error": f"{type(error).__name__}: {error}"[:2000]}
            self.log(traceback.format_exc())
        result["phase_seconds"] = time.perf_counter() - started
        self.record(name, result)
        return result

    def _run_child(self, phase: str, spec: dict[str, Any], timeout: float) -> dict[str, Any]:
        spec_path = self.work / f"spec-{phase}-{time.monotonic_ns()}.json"
        result_path = spec_path.with_suffix(".result.json")
        spec_path.write_text(json.dumps({**spec, "result_path": str(result_path)}))

        def partial() -> dict[str, Any]:  # what the phase wrote as its steps ended
            return json.loads(result_path.read_text()) if result_path.exists() else {}

        with open(self.out / PHASE_LOG, "a") as log:
            try:
                completed = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--phase", phase,
                                            "--spec", str(spec_path)], cwd=self.work, stdout=log,
                                           stderr=subprocess.STDOUT, timeout=timeout, env=_child_environment())
            except subprocess.TimeoutExpired:
                return {**partial(), "error": f"timed out after {timeout:.0f} s (values above: the steps it finished)"}
        if completed.returncode == 0 and result_path.exists():
            return partial()
        done = partial()
        cause = f"{done.pop('error')}; " if "error" in done else ""
        return {**done, "error": f"{cause}the phase process exited with {completed.returncode} (traceback in {PHASE_LOG})"}

    def log(self, text: str) -> None:
        with open(self.out / PHASE_LOG, "a") as log:
            log.write(text)

    def record(self, name: str, result: dict[str, Any]) -> None:
        self.results["phases"][name] = result
        self.results["summary"] = summarise(self.results["phases"])
        (self.out / RESULTS_JSON).write_text(json.dumps(self.results, indent=2, sort_keys=True, default=str) + "\n")
        (self.out / RESULTS_MARKDOWN).write_text(render_markdown(self.results))
        print(f"[gpu_check] {name}: {short_status(result)}", flush=True)


def short_status(result: dict[str, Any]) -> str:
    if "error" in result:
        return "ERROR " + result["error"].splitlines()[0][:200]
    if "skipped" in result:
        return "skipped: " + result["skipped"]
    return f"done in {result.get('phase_seconds', 0):.1f} s"


def environment_summary() -> dict[str, Any]:
    import torch

    def version(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    summary: dict[str, Any] = {
        "python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
        **{name: version(name) for name in ("transformers", "trl", "peft", "accelerate", "datasets",
                                            "unsloth", "unsloth_zoo", "bitsandbytes", "xformers", "triton")},
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "gpu_memory_gib": (torch.cuda.get_device_properties(0).total_memory / 2**30
                           if torch.cuda.is_available() else None),
    }
    return summary


def summarise(phases: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers: per-backend s/step, tokens/s, memory, ratio, stages, export, 16 GB fit."""
    summary: dict[str, Any] = {}
    unsloth, plain = phases.get("train_unsloth", {}), phases.get("train_trl_peft", {})
    for label, run in (("unsloth", unsloth), ("trl_peft", plain)):
        if "median_step_s_after_first" in run:
            summary[label] = {k: run.get(k) for k in ("backend_used", "median_step_s_after_first",
                                                      "completion_tokens_per_s_after_first",
                                                      "peak_allocated_gib", "peak_reserved_gib", "stages")}
    if unsloth.get("median_step_s_after_first") and plain.get("median_step_s_after_first"):
        summary["trl_over_unsloth_step_time"] = plain["median_step_s_after_first"] / unsloth["median_step_s_after_first"]
    memory = phases.get("memory_1.5b", {})
    if memory.get("peak_reserved_gib") is not None:
        summary["memory_1.5b_peak_reserved_gib"] = memory["peak_reserved_gib"]
        summary["memory_1.5b_fits_t4_16gb"] = memory["peak_reserved_gib"] * 1024 <= T4_USABLE_MIB
    rollout = phases.get("unsloth_rollout", {})
    if "rollout_backend" in rollout:
        summary["unsloth_rollout"] = {k: rollout.get(k) for k in ("backend_used", "rollout_backend", "tokens_per_s",
                                                                  "records_aligned", "finish_reasons")}
    export = phases.get("export_verify", {})
    if "adapter_verify" in export:
        summary["export_adapter_ok"] = export.get("adapter_verify", {}).get("ok")
        summary["export_merged_ok"] = export.get("merged_ok")
    measured = {name: row["tokens_per_s"] for phase in ("generation", "generation_compile")
                for name, row in phases.get(phase, {}).get("variants", {}).items() if "tokens_per_s" in row}
    if measured:
        summary["generation_fastest"] = max(measured, key=measured.get)
    tests = phases.get("gpu_tests", {})
    if "returncode" in tests:
        summary["gpu_tests"] = tests["summary"]
    return summary


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def render_markdown(results: dict[str, Any]) -> str:
    env, phases = results["environment"], results["phases"]
    lines = [f"# gpu_check {'(dry run, CPU) ' if results['dry_run'] else ''}{results['date']}", "",
             f"Command: `{results['command']}`", "",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in env.items() if v is not None), ""]
    lines += ["| training run | model | backend used | trainer base | stages | median s/step (after the first) | "
              "completion tokens/s | peak allocated GiB | peak reserved GiB |", "|---|---|---|---|---|---:|---:|---:|---:|"]
    for name in ("train_unsloth", "train_trl_peft", "memory_1.5b"):
        run = phases.get(name)
        if run is None:
            continue
        if "median_step_s_after_first" not in run:
            lines.append(f"| {name} | {short_status(run)} | | | | | | | |")
            continue
        lines.append(f"| {name} | {Path(run['model']).name} | {run['backend_used']} | {run['trainer_base_class']} | {run['stages']} | "
                     f"{_fmt(run['median_step_s_after_first'], 3)} | {_fmt(run['completion_tokens_per_s_after_first'], 0)} | "
                     f"{_fmt(run['peak_allocated_gib'])} | {_fmt(run['peak_reserved_gib'])} |")
    summary = results.get("summary", {})
    if "trl_over_unsloth_step_time" in summary:
        lines += ["", f"TRL+PEFT / Unsloth step time: {summary['trl_over_unsloth_step_time']:.2f}"]
    if "memory_1.5b_fits_t4_16gb" in summary:
        lines += ["", f"1.5B-shaped LoRA run: peak reserved {summary['memory_1.5b_peak_reserved_gib']:.2f} GiB; "
                      f"fits a 16 GB T4 ({T4_USABLE_MIB} MiB usable): {summary['memory_1.5b_fits_t4_16gb']}"]
    rollout = phases.get("unsloth_rollout", {})
    if "rollout_backend" in rollout:
        lines += ["", f"Unsloth rollout: backend {rollout['backend_used']}, rollouts through {rollout['rollout_backend']}"
                      f", {rollout.get('rollouts', '-')} rollouts, {rollout.get('completion_tokens', '-')} tokens in "
                      f"{_fmt(rollout.get('rollout_s'))} s ({_fmt(rollout.get('tokens_per_s'), 0)} tokens/s), "
                      f"records aligned: {rollout.get('records_aligned')}, finish reasons "
                      f"{rollout.get('finish_reasons')}"]
    export = phases.get("export_verify", {})
    if "adapter_verify" in export:
        name = Path(export["source_run"]).name
        verify = export["adapter_verify"]
        problems = "; ".join(verify["problems"])
        lines += ["", f"Export ({name}, verified without Unsloth): adapter ok={verify['ok']} (reloaded "
                      f"{verify['reloaded']}, non-zero B {verify['nonzero_lora_b']}/{verify['total_lora_b']}, changed "
                      f"{verify['changed_outputs']}/{verify['prompts_checked']} greedy outputs"
                      f"{', problems: ' + problems if problems else ''}); merged {export['merged_dtype']} reloaded, "
                      f"changed {export['merged_changed_outputs']}/{export['merged_prompts_checked']} greedy outputs "
                      f"vs the base; GGUF: {export['gguf']}"]
    generation = phases.get("generation")
    if generation and "generation_compile" in phases:  # one table: the compile variant is its own, later phase
        compiled = phases["generation_compile"]
        generation = {**generation, "variants": {**generation.get("variants", {}), **compiled.get(
            "variants", {"model.generate, static cache, torch.compile": {"skipped": short_status(compiled)}})}}
    if generation:
        lines += ["", f"Generation ({generation.get('device', '-')}, {generation.get('prompts', '-')} prompts x "
                      f"{generation.get('samples', '-')} samples x {generation.get('max_new_tokens', '-')} new tokens):", "",
                  "| decoder | s | tokens | tokens/s |", "|---|---:|---:|---:|"]
        for name, row in generation.get("variants", {}).items():
            if "tokens_per_s" in row:
                lines.append(f"| {name} | {row['seconds']:.3f} | {row['tokens']} | {row['tokens_per_s']:.0f} |")
            else:
                lines.append(f"| {name} | {row.get('skipped') or row.get('error')} | | |")
        if "error" in generation:
            lines.append(f"| (phase) | ERROR {generation['error'][:200]} | | |")
    tests = phases.get("gpu_tests")
    if tests and "command" in tests:
        lines += ["", f"GPU tests: `{tests['command']}` -> {tests.get('summary') or short_status(tests)}"]
    other = [f"- {name}: {short_status(r)}" for name, r in phases.items() if "error" in r or "skipped" in r]
    if other:
        lines += ["", "Skipped or failed phases:", *other]
    return "\n".join(lines) + "\n"


@dataclass
class Step:
    """One phase of the plan: its result name, the phase function, its spec and time limit, and
    what it shows."""

    name: str
    phase: str
    spec: dict[str, Any]
    limit_s: float
    shows: str
    skip_reason: str | None = None


def plan(*, dry: bool, on_cuda: bool, has_unsloth: bool, work: Path, main_model: str, memory_model: str,
         train: dict[str, Any], args: argparse.Namespace) -> list[Step]:
    """The phases in order: cheap, decisive ones first (does Unsloth load and decode, does a GRPO
    step run under it, how fast against TRL + PEFT, does the export reload without Unsloth), the
    memory and generation measurements next, the compile variant and the gpu tests last."""
    no_unsloth = None if has_unsloth else ("no CUDA device (Unsloth needs one)" if not on_cuda
                                           else "unsloth is not installed (scripts/gpu_bundle.sh)")
    unsloth_run = str(work / "run-unsloth")
    plain_run = str(work / "run-trl-peft")
    generation = {"model": main_model, "prompts": train["prompts"], "generations": train["generations"],
                  "max_new_tokens": train["max_completion_length"], "repeats": 1 if dry else 2,
                  "tools_in_prompt": args.tools_in_prompt}
    gpu_tests_skip = ("dry run: every gpu test skips without CUDA (--with-gpu-tests runs them anyway)"
                      if dry and not args.with_gpu_tests else None)
    steps = [
        Step("unsloth_rollout", "unsloth_rollout", {**train, "backend": "unsloth"}, 120,
             "Unsloth loads the policy and one batch of tool rollouts decodes (backend picked, tokens/s)",
             no_unsloth),
        Step("train_unsloth", "train", {**train, "backend": "unsloth", "run_dir": unsloth_run}, 150,
             "2 ParetoPO steps (stage 1, then 2) with Unsloth fast LoRA: s/step, tokens/s, peak memory", no_unsloth),
        Step("train_trl_peft", "train", {**train, "backend": "transformers", "run_dir": plain_run}, 150,
             "the same 2 steps with TRL + PEFT: the TRL/Unsloth s/step ratio"),
        Step("export_verify", "export", {**train, "run_dir": unsloth_run if has_unsloth else plain_run,
                                         "export_dir": str(work / "export")}, 120,
             "adapter + merged 16-bit export of the Unsloth run (TRL+PEFT without it), verified in a process "
             "without Unsloth"),
        Step("memory_1.5b", "train", {**train, "model": memory_model, "backend": "unsloth" if has_unsloth
                                      else "transformers", "build_shape": None if dry else "qwen2.5-1.5b",
                                      "hash_scored": True, "run_dir": str(work / "run-memory")}, 150,
             "2 LoRA steps on the 1.5B shape: peak reserved memory against a 16 GB T4"),
        Step("generation", "generation", {**generation, "variants": "eager"}, 120,
             "tokens/s: tool loop, segmented_generate, model.generate (dynamic and static cache), eager"),
        Step("generation_compile", "generation", {**generation, "variants": "compile"}, 150,
             "tokens/s: model.generate with a static cache and torch.compile (may compile for minutes)"),
        Step("gpu_tests", "gpu_tests", {"timeout_s": 150}, 150, "pytest -m gpu, Unsloth imported first",
             gpu_tests_skip),
    ]
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    for step in steps:
        if step.name in skip:
            step.skip_reason = "--skip"
    return steps


def print_plan(steps: list[Step], deadline_s: float) -> None:
    print(f"[gpu_check] plan (deadline {deadline_s:.0f} s; no phase starts with under {MIN_PHASE_START_S} s left; "
          "each phase's result is written as it ends):", flush=True)
    for index, step in enumerate(steps, start=1):
        state = f"skipped: {step.skip_reason}" if step.skip_reason else f"limit {step.limit_s:.0f} s"
        print(f"[gpu_check]   {index}. {step.name:<19} {state:<40} {step.shows}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="folder for gpu_check.json, gpu_check.md, phases.log")
    parser.add_argument("--dry-run", action="store_true", help="CPU, one process, tiny policy, tiny sizes")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder for models, runs, exports "
                                                                "(default: a new temporary folder; must be empty)")
    parser.add_argument("--stage1-steps", type=int, default=1, help="default 1")
    parser.add_argument("--stage2-steps", type=int, default=1, help="default 1")
    parser.add_argument("--prompts", type=int, default=None, help="prompts per step, default 8 (dry run 4)")
    parser.add_argument("--generations", type=int, default=None, help="completions per prompt, default 8 (dry run 4)")
    parser.add_argument("--max-completion-length", type=int, default=None, help="default 160 (dry run 24)")
    parser.add_argument("--tools-in-prompt", action="store_true", help="render the tools block into prompts "
                                                                       "(about 1,500 byte-level tokens)")
    parser.add_argument("--deadline-s", type=float, default=None,
                        help="no phase starts later than this minus 60 s, none runs past it (default 420; dry run 1200)")
    parser.add_argument("--with-gpu-tests", action="store_true", help="run the gpu tests in a dry run too")
    parser.add_argument("--skip", default="", help="comma-separated phase names to skip")
    parser.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    parser.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.phase:  # a child process: run one phase, write its result (a failure keeps the steps it finished)
        spec = json.loads(args.spec.read_text())
        result_path = Path(spec["result_path"])
        try:
            result = PHASES[args.phase](spec)
        except Exception as error:  # noqa: BLE001 - the parent records it and goes on
            traceback.print_exc()
            done = json.loads(result_path.read_text()) if result_path.exists() else {}
            result_path.write_text(json.dumps({**done, "error": f"{type(error).__name__}: {error}"[:2000]},
                                              default=str))
            return 1
        result_path.write_text(json.dumps(result, default=str))
        return 0
    if args.out is None:
        parser.error("--out DIR is required")
    if args.work is not None and args.work.exists() and any(args.work.iterdir()):
        parser.error(f"--work {args.work} is not empty: pass a new folder (a rerun must not append to old runs)")

    import torch

    on_cuda = torch.cuda.is_available()
    if not on_cuda and not args.dry_run:
        parser.error("no CUDA device here: run with --dry-run (CPU), or on the GPU machine (docs/gpu.md)")
    dry = args.dry_run
    if dry:
        torch.set_num_threads(1)
    deadline_s = args.deadline_s if args.deadline_s is not None else (1200.0 if dry else 420.0)
    work = args.work or Path(tempfile.mkdtemp(prefix="paretopo-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/gpu_check.py " + " ".join(argv if argv is not None else sys.argv[1:])
    check = Check(args.out.resolve(), work.resolve(), in_process=dry, deadline_s=deadline_s, command=command,
                  dry_run=dry)
    os.environ.update({k: v for k, v in _child_environment().items() if k not in os.environ})

    if dry:
        from paretopo.training.train import tiny_policy_path

        main_model = str(tiny_policy_path())  # read only; never written
        built = {"main": {"shape": "shipped tiny policy", "path": main_model},
                 "memory": build_shaped_model("tiny-padded", work / "tiny-padded", device="cpu")}
        memory_model = str(work / "tiny-padded")
    else:  # the 1.5B shape is built by its own phase, late: the decisive phases come first
        started = time.perf_counter()
        built = {"main": build_shaped_model("qwen2.5-0.5b", work / "qwen2.5-0.5b", device="cuda"),
                 "phase_seconds": time.perf_counter() - started}
        main_model, memory_model = built["main"]["path"], str(work / "qwen2.5-1.5b")
    check.record("build_models", built)
    train = {"model": main_model, "stage1_steps": args.stage1_steps, "stage2_steps": args.stage2_steps,
             "prompts": args.prompts or (4 if dry else 8), "generations": args.generations or (4 if dry else 8),
             "max_completion_length": args.max_completion_length or (24 if dry else 160),
             "tools_in_prompt": args.tools_in_prompt, "hash_scored": not dry,
             "verify_prompts": 2 if dry else 4, "verify_tokens": 12 if dry else 24,
             # a few LoRA steps at the default rate leave the confident tiny policy's greedy output
             # unchanged, so the dry run's export check would have nothing to see
             "learning_rate": 5e-2 if dry else None}
    has_unsloth = on_cuda and importlib.util.find_spec("unsloth") is not None
    steps = plan(dry=dry, on_cuda=on_cuda, has_unsloth=has_unsloth, work=work, main_model=main_model,
                 memory_model=memory_model, train=train, args=args)
    check.results["plan"] = [{"name": s.name, "limit_s": s.limit_s, "shows": s.shows, "skipped": s.skip_reason}
                             for s in steps]
    print_plan(steps, deadline_s)
    for step in steps:
        if step.skip_reason:
            check.record(step.name, {"skipped": step.skip_reason})
        else:
            check.run(step.name, step.phase, step.spec, limit_s=step.limit_s)
    summary = check.results["summary"]
    print(json.dumps(summary, indent=2, default=str))
    failed = [name for name, r in check.results["phases"].items() if "error" in r]
    if failed:
        print(f"[gpu_check] failed phases: {', '.join(failed)} (see {args.out / PHASE_LOG})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
