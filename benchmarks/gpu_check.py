#!/usr/bin/env python3
"""The GPU path in one command: Unsloth vs TRL+PEFT ParetoPO steps, export, generation speed, GPU tests.

On a CUDA machine (the lent H200; see docs/gpu.md for the wheels and the two device calls)::

    python benchmarks/gpu_check.py --out DIR

1. builds Qwen2.5-0.5B- and 1.5B-shaped models from their configs with random weights (bf16)
   and a local tokenizer: the tiny policy's byte-level tokenizer with its vocabulary padded to
   Qwen2.5's 151,936 ids (no hub, no network);
2. runs the ``gpu``-marked tests;
3. trains ParetoPO (``paretopo.training.train.train_run``) on the 0.5B shape for ``--stage1-steps`` stage-1
   and ``--stage2-steps`` stage-2 steps, same batch (``--prompts`` x ``--generations``, the
   arithmetic task) and seed, (a) with Unsloth fast LoRA and (b) with plain TRL + PEFT, each in
   its own process (importing Unsloth patches TRL and transformers for the whole process), and
   reports s/step, completion tokens/s, peak GPU memory, the Unsloth/TRL ratio and the stage of
   every step;
4. exports the Unsloth run's adapter and a merged 16-bit model (``paretopo.evaluation.export``) and checks
   that each reloads and changes greedy outputs against the base model;
5. times generation for the 0.5B shape: paretopo's tool loop vs ``model.generate`` (dynamic
   cache, static cache, static cache + ``torch.compile``), same prompts, samples and length;
6. trains the 1.5B shape for two steps with LoRA and reports its peak memory against a 16 GB
   card (a Colab T4: 15,360 MiB usable; an L4 has 24 GB).

``--dry-run`` runs the same phases on the CPU, in one process, small: the shipped tiny policy
(``data/tiny_policy``, read only) for training, export and generation, a tiny random shape with a
padded vocabulary in place of the 1.5B one, Unsloth and ``torch.compile`` reported as skipped.
The tests run it (tests/test_gpu_check.py), so the script cannot rot between GPU tasks.

Random weights never solve arithmetic, so with the task's own checker every group would be
degenerate (all advantages zero, no gradient, an untrained adapter that cannot change outputs).
Runs on a random-weight shape therefore score correctness with a fixed hash of the completion
text (``HashScoredArithmeticTask``): about half the completions count as correct, groups have
variance, ParetoPO's ranks and advantages are non-trivial, and the backward pass does real work.
The timings are what this check is for; the learning signal is not.

Everything lands in ``--out``: ``gpu_check.json`` (all numbers, versions, the exact command),
``gpu_check.md`` (the tables for docs/gpu.md) and ``phases.log`` (every phase's output). Both
result files are rewritten after each phase, so a run cut short leaves what it measured.
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
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from a checkout: use this checkout's paretopo
    sys.path.insert(0, str(REPO))

RESULTS_JSON = "gpu_check.json"
RESULTS_MARKDOWN = "gpu_check.md"
PHASE_LOG = "phases.log"
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


def _cuda_memory() -> dict[str, float | None]:
    import torch

    if not torch.cuda.is_available():
        return {"peak_allocated_gib": None, "peak_reserved_gib": None}
    return {"peak_allocated_gib": torch.cuda.max_memory_allocated() / 2**30,
            "peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30}


def phase_train(spec: dict[str, Any]) -> dict[str, Any]:
    """ParetoPO steps with one backend; optionally export and verify the adapter."""
    if spec["backend"] == "transformers":
        _block_unsloth()
    import torch

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
    run_steps = read_run(spec["run_dir"]).steps.sort("step")
    rows = run_steps.to_dicts()
    step_times = [r.get("step_time") for r in rows]
    batch_rows = spec["prompts"] * spec["generations"]
    completion_tokens = [r.get("completions/mean_length", float("nan")) * batch_rows for r in rows]
    steady = slice(1, None) if len(rows) > 1 else slice(None)  # the first step pays compilation and warm-up
    timed = [(t, n) for t, n in zip(step_times[steady], completion_tokens[steady], strict=True) if t]
    log_history = trainer.state.log_history
    train_runtime = next((h["train_runtime"] for h in reversed(log_history) if "train_runtime" in h), None)
    out: dict[str, Any] = {
        "backend_requested": spec["backend"],
        "backend_used": policy_backend(model),
        "trainer_base_class": _trl_base_class(type(trainer)),
        "model": spec["model"], "steps": result.steps,
        "stages": [int(r["stage"]) for r in rows if r.get("stage") is not None],
        "step_time_s": step_times,
        "median_step_s_after_first": statistics.median(t for t, _ in timed) if timed else None,
        "train_runtime_s": train_runtime,
        "completion_tokens_per_step": completion_tokens,
        "completion_tokens_per_s_after_first": (sum(n for _, n in timed) / sum(t for t, _ in timed)) if timed else None,
        "prompt_tokens": len(trainer.processing_class.encode(trainer.processing_class.apply_chat_template(
            task.messages(task.load("train")[0]), add_generation_prompt=True, tokenize=False),
            add_special_tokens=False)),
        "rewards_task_correct_mean": [r.get("rewards/task_correct/mean") for r in rows],
        "wall_s_including_load_and_eval": wall,
        "test": result.test,
        **_cuda_memory(),
    }
    if spec.get("export_dir"):
        out["export"] = export_and_verify(Path(spec["run_dir"]), Path(spec["export_dir"]), spec)
    return out


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

    variants = [
        ("tool_loop (paretopo, DynamicCache, eager)", run_tool_loop),
        ("model.generate, dynamic cache, eager", lambda: run_generate(disable_compile=True)),
        ("model.generate, static cache, eager", lambda: run_generate(cache_implementation="static",
                                                                       disable_compile=True)),
    ]
    # transformers compiles the forward for a static cache on CUDA only
    variants.append(("model.generate, static cache, torch.compile",
                     (lambda: run_generate(cache_implementation="static")) if on_cuda else None))
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
    completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=spec["timeout_s"],
                               env=_child_environment())
    output = completed.stdout + completed.stderr
    summary = next((line for line in reversed(output.splitlines())
                    if re.search(r"\d+ (passed|failed|skipped|deselected|error)", line)), "")
    return {"command": " ".join(command[1:]), "returncode": completed.returncode, "summary": summary.strip("= "),
            "output_tail": output[-3000:], "seconds": time.perf_counter() - started}


PHASES = {"train": phase_train, "generation": phase_generation, "gpu_tests": phase_gpu_tests}


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
        if self.remaining() < 5:
            self.record(name, {"skipped": "out of time (--deadline-s)"})
            return None
        timeout = max(5.0, min(limit_s, self.remaining()))
        started = time.perf_counter()
        self.log(f"\n===== {name} ({phase}) =====\n")
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
        with open(self.out / PHASE_LOG, "a") as log:
            try:
                completed = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--phase", phase,
                                            "--spec", str(spec_path)], cwd=self.work, stdout=log,
                                           stderr=subprocess.STDOUT, timeout=timeout, env=_child_environment())
            except subprocess.TimeoutExpired:
                return {"error": f"timed out after {timeout:.0f} s"}
        if result_path.exists():
            return json.loads(result_path.read_text())
        return {"error": f"the phase process exited with {completed.returncode} and wrote no result ({PHASE_LOG})"}

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
    export = (unsloth.get("export") or plain.get("export") or {})
    if export:
        summary["export_adapter_ok"] = export.get("adapter_verify", {}).get("ok")
        summary["export_merged_ok"] = export.get("merged_ok")
    generation = phases.get("generation", {})
    if generation.get("fastest"):
        summary["generation_fastest"] = generation["fastest"]
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
    for name in ("train_unsloth", "train_trl_peft"):
        export = phases.get(name, {}).get("export")
        if export:
            verify = export["adapter_verify"]
            lines += ["", f"Export ({name}): adapter ok={verify['ok']} (reloaded {verify['reloaded']}, non-zero B "
                          f"{verify['nonzero_lora_b']}/{verify['total_lora_b']}, changed {verify['changed_outputs']}/"
                          f"{verify['prompts_checked']} greedy outputs{', problems: ' + '; '.join(verify['problems']) if verify['problems'] else ''}); "
                          f"merged {export['merged_dtype']} reloaded, changed {export['merged_changed_outputs']}/"
                          f"{export['merged_prompts_checked']} greedy outputs vs the base; GGUF: {export['gguf']}"]
    generation = phases.get("generation")
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="folder for gpu_check.json, gpu_check.md, phases.log")
    parser.add_argument("--dry-run", action="store_true", help="CPU, one process, tiny policy, tiny sizes")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder for models, runs, exports "
                                                                "(default: a new temporary folder)")
    parser.add_argument("--stage1-steps", type=int, default=None, help="default 2 (dry run 1)")
    parser.add_argument("--stage2-steps", type=int, default=None, help="default 2 (dry run 1)")
    parser.add_argument("--prompts", type=int, default=None, help="prompts per step, default 8 (dry run 4)")
    parser.add_argument("--generations", type=int, default=None, help="completions per prompt, default 8 (dry run 4)")
    parser.add_argument("--max-completion-length", type=int, default=None, help="default 160 (dry run 24)")
    parser.add_argument("--tools-in-prompt", action="store_true", help="render the tools block into prompts "
                                                                       "(about 1,500 byte-level tokens)")
    parser.add_argument("--deadline-s", type=float, default=420.0, help="skip phases that would start after this")
    parser.add_argument("--with-gpu-tests", action="store_true", help="run the gpu tests in a dry run too")
    parser.add_argument("--skip", default="", help="comma-separated phase names to skip")
    parser.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    parser.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.phase:  # a child process: run one phase, write its result
        spec = json.loads(args.spec.read_text())
        result = PHASES[args.phase](spec)
        Path(spec["result_path"]).write_text(json.dumps(result, default=str))
        return 0
    if args.out is None:
        parser.error("--out DIR is required")

    import torch

    on_cuda = torch.cuda.is_available()
    if not on_cuda and not args.dry_run:
        parser.error("no CUDA device here: run with --dry-run (CPU), or on the GPU machine (docs/gpu.md)")
    dry = args.dry_run
    if dry:
        torch.set_num_threads(1)
    stage1 = args.stage1_steps if args.stage1_steps is not None else (1 if dry else 2)
    stage2 = args.stage2_steps if args.stage2_steps is not None else (1 if dry else 2)
    prompts = args.prompts or (4 if dry else 8)
    generations = args.generations or (4 if dry else 8)
    completion_length = args.max_completion_length or (24 if dry else 160)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    work = args.work or Path(tempfile.mkdtemp(prefix="paretopo-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/gpu_check.py " + " ".join(argv if argv is not None else sys.argv[1:])
    check = Check(args.out.resolve(), work.resolve(), in_process=dry, deadline_s=args.deadline_s, command=command,
                  dry_run=dry)
    os.environ.update({k: v for k, v in _child_environment().items() if k not in os.environ})

    device = "cuda" if on_cuda else "cpu"
    if dry:
        from paretopo.training.train import tiny_policy_path

        main_model = str(tiny_policy_path())  # read only; never written
        check.record("build_models", {"main": {"shape": "shipped tiny policy", "path": main_model},
                                      "memory": build_shaped_model("tiny-padded", work / "tiny-padded", device=device)})
        memory_model = str(work / "tiny-padded")
    else:
        started = time.perf_counter()
        built = {"main": build_shaped_model("qwen2.5-0.5b", work / "qwen2.5-0.5b", device=device),
                 "memory": build_shaped_model("qwen2.5-1.5b", work / "qwen2.5-1.5b", device=device),
                 "phase_seconds": time.perf_counter() - started}
        check.record("build_models", built)
        main_model, memory_model = built["main"]["path"], built["memory"]["path"]

    train = {"model": main_model, "stage1_steps": stage1, "stage2_steps": stage2, "prompts": prompts,
             "generations": generations, "max_completion_length": completion_length,
             "tools_in_prompt": args.tools_in_prompt, "hash_scored": not dry,
             "verify_prompts": 2 if dry else 4, "verify_tokens": 12 if dry else 24,
             # a few LoRA steps at the default rate leave the confident tiny policy's greedy output
             # unchanged, so the dry run's export check would have nothing to see
             "learning_rate": 5e-2 if dry else None}
    if "gpu_tests" not in skip:
        if dry and not args.with_gpu_tests:
            check.record("gpu_tests", {"skipped": "dry run: every gpu test skips without CUDA (--with-gpu-tests runs "
                                                  "them anyway)"})
        else:
            check.run("gpu_tests", "gpu_tests", {"timeout_s": 240}, limit_s=240)
    if "train_unsloth" not in skip:
        if not on_cuda:
            check.record("train_unsloth", {"skipped": "no CUDA device (Unsloth needs one)"})
        elif importlib.util.find_spec("unsloth") is None:
            check.record("train_unsloth", {"skipped": "unsloth is not installed (scripts/gpu_wheels.sh)"})
        else:
            check.run("train_unsloth", "train", {**train, "backend": "unsloth", "run_dir": str(work / "run-unsloth"),
                                                 "export_dir": str(work / "export-unsloth")}, limit_s=300)
    exported = "export" in check.results["phases"].get("train_unsloth", {})
    if "train_trl_peft" not in skip:
        check.run("train_trl_peft", "train", {**train, "backend": "transformers", "run_dir": str(work / "run-trl-peft"),
                                              **({} if exported else {"export_dir": str(work / "export-trl-peft")})},
                  limit_s=300)
    if "generation" not in skip:
        check.run("generation", "generation", {
            "model": main_model, "prompts": prompts, "generations": generations, "max_new_tokens": completion_length,
            "repeats": 1 if dry else 2, "tools_in_prompt": args.tools_in_prompt,
            "deadline_monotonic": check.deadline}, limit_s=240)
    if "memory_1.5b" not in skip:
        backend = "unsloth" if on_cuda and importlib.util.find_spec("unsloth") is not None else "transformers"
        check.run("memory_1.5b", "train", {**train, "model": memory_model, "backend": backend,
                                           "stage1_steps": 1, "stage2_steps": 1, "hash_scored": True,
                                           "run_dir": str(work / "run-memory")}, limit_s=240)
    summary = check.results["summary"]
    print(json.dumps(summary, indent=2, default=str))
    failed = [name for name, r in check.results["phases"].items() if "error" in r]
    if failed:
        print(f"[gpu_check] failed phases: {', '.join(failed)} (see {args.out / PHASE_LOG})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
