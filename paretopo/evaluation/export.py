"""Export a trained LoRA adapter, verify it, and optionally merge it or convert it to GGUF.

``export_adapter`` copies a run's adapter (``runs/<name>/final`` or a checkpoint folder) with
its tokenizer and chat template into a self-contained folder and adds ``paretopo.json``: the
method config, weights and objectives, the run's final test point on the frontier, the base
model and the library versions. ``verify_adapter`` then checks what a user relies on:

1. the adapter's tensors are finite and its LoRA ``B`` matrices are not all zero (PEFT
   initialises ``B`` to zero, so an untrained adapter is a no-op);
2. it reloads onto the base model with PEFT;
3. it changes greedy output versus the base model on a few prompts.

``merged=True`` also writes base + adapter merged into plain 16-bit weights (loadable without
PEFT). GGUF goes through Unsloth's ``save_pretrained_gguf`` on a CUDA machine and is
best-effort: it needs llama.cpp tooling that Unsloth fetches on first use.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from paretopo import library_versions
from paretopo.agent.models import load_adapter
from paretopo.evaluation.runlog import atomic_write_json, read_run, run_paths

__all__ = ["ExportReport", "VerifyReport", "export_adapter", "verify_adapter"]

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


@dataclass
class VerifyReport:
    ok: bool
    nonzero_lora_b: int
    total_lora_b: int
    finite: bool
    reloaded: bool
    changed_outputs: int
    prompts_checked: int
    problems: list[str] = field(default_factory=list)


@dataclass
class ExportReport:
    path: Path
    verify: VerifyReport
    merged_path: Path | None = None
    gguf_path: Path | None = None


def _adapter_source(path: Path) -> Path:
    """The folder holding the adapter: the path itself, ``final/`` of a run, or its last checkpoint."""
    paths = run_paths(path)
    for candidate in (path, paths.final):
        if all((candidate / name).exists() for name in ADAPTER_FILES):
            return candidate
    checkpoints = paths.checkpoint_folders()
    if checkpoints and all((checkpoints[-1] / name).exists() for name in ADAPTER_FILES):
        return checkpoints[-1]
    raise FileNotFoundError(
        f"no LoRA adapter ({', '.join(ADAPTER_FILES)}) in {path}, {paths.final} or its last checkpoint; "
        "pass a run folder, its final/ folder or a checkpoint folder of a LoRA run"
    )


def _run_folder(source: Path) -> Path | None:
    for candidate in (source, source.parent, source.parent.parent):
        paths = run_paths(candidate)
        if paths.config.exists() and paths.steps.exists():
            return candidate
    return None


def _sample_prompts(tokenizer: Any, run_config: dict[str, Any], count: int) -> list[str]:
    messages = [[{"role": "user", "content": q}] for q in ("What is 417*38?", "What is 7+8?", "What is 42+5?")]
    task_name = run_config.get("task")
    if task_name:
        try:
            from paretopo.tasks import get_task

            task = get_task(task_name)
            messages = [task.messages(e) for e in task.load("test")[:count]]
        except (ValueError, FileNotFoundError):
            pass
    return [tokenizer.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in messages[:count]]


def verify_adapter(path: str | Path, base_model: str | None = None, prompts: list[str] | None = None,
                   max_new_tokens: int = 48, n_prompts: int = 12) -> VerifyReport:
    """Check an exported adapter: non-zero, finite, reloads, and changes greedy output."""
    from safetensors.torch import load_file

    folder = Path(path)
    problems: list[str] = []
    tensors = load_file(str(folder / "adapter_model.safetensors"))
    lora_b = {name: t for name, t in tensors.items() if "lora_B" in name}
    nonzero = sum(int(bool(t.abs().sum() > 0)) for t in lora_b.values())
    finite = all(bool(torch.isfinite(t).all()) for t in tensors.values())
    if not lora_b:
        problems.append("the adapter holds no LoRA B matrices")
    elif nonzero == 0:
        problems.append("every LoRA B matrix is zero: the adapter was never trained (it is a no-op)")
    if not finite:
        problems.append("the adapter holds NaN or infinite values")

    config = json.loads((folder / "adapter_config.json").read_text())
    base_name = base_model or config.get("base_model_name_or_path")
    reloaded, changed, checked = False, 0, 0
    try:
        model, tokenizer = load_adapter(folder, base_name)
        reloaded = True
        meta_path = folder / "paretopo.json"
        run_config = json.loads(meta_path.read_text()).get("run", {}) if meta_path.exists() else {}
        device = next(model.parameters()).device  # load_adapter moves the model to CUDA where there is one
        for prompt in prompts or _sample_prompts(tokenizer, run_config, n_prompts):
            inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(device)
            with torch.no_grad():
                tuned = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
                with model.disable_adapter():
                    plain = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
            checked += 1
            changed += int(not torch.equal(tuned, plain))
        if checked and not changed:
            problems.append(f"the adapter did not change greedy output on any of {checked} prompts")
    except Exception as error:  # noqa: BLE001 - report any reload failure with its message
        problems.append(f"reloading onto {base_name!r} failed: {type(error).__name__}: {error}")
    ok = not problems
    return VerifyReport(ok, nonzero, len(lora_b), finite, reloaded, changed, checked, problems)


def export_adapter(
    source: str | Path, out_dir: str | Path, *, merged: bool = False, gguf: bool = False,
    gguf_quantization: str = "q4_k_m", verify: bool = True,
) -> ExportReport:
    """Copy an adapter with its tokenizer into ``out_dir``, add ``paretopo.json``, verify it.

    Args:
        source: a run folder, its ``final/`` folder, or a checkpoint folder.
        out_dir: the export folder (created; an existing folder is replaced only when the new
            export is complete, so a failed export never leaves half a folder).
        merged: also write merged 16-bit weights to ``out_dir/merged``.
        gguf: also convert to GGUF through Unsloth (CUDA only, best-effort).
    """
    from transformers import AutoTokenizer

    adapter = _adapter_source(Path(source))
    out = Path(out_dir)
    staging = out.with_name(f".{out.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for item in adapter.iterdir():
        if item.is_file() and not item.name.startswith(("optimizer", "scheduler", "rng_state", "trainer_state",
                                                         "training_args", "paretopo_state")):
            shutil.copy2(item, staging / item.name)
    AutoTokenizer.from_pretrained(adapter).save_pretrained(staging)  # tokenizer + chat template

    run = _run_folder(adapter)
    metadata: dict[str, Any] = {"source": str(adapter.resolve()), "versions": library_versions()}
    config = json.loads((staging / "adapter_config.json").read_text())
    metadata["base_model"] = config.get("base_model_name_or_path")
    if run is not None:
        data = read_run(run)
        method = data.config.get("method", {})
        metadata["run"] = {"name": data.name, "task": data.config.get("task"), "settings": data.config.get("settings")}
        metadata["method"] = method.get("method")
        metadata["objectives"] = method.get("objectives")
        metadata["weights"] = method.get("weights")
        metadata["config"] = method
        if data.evals.height:
            final = data.evals.filter(data.evals["split"] == "test").sort("step")
            if final.height:
                metadata["frontier_point"] = final.to_dicts()[-1]
    atomic_write_json(staging / "paretopo.json", metadata)

    report = verify_adapter(staging) if verify else VerifyReport(True, 0, 0, True, False, 0, 0)
    if verify and not report.ok:
        shutil.rmtree(staging, ignore_errors=True)
        raise ValueError("adapter verification failed: " + "; ".join(report.problems))
    atomic_write_json(staging / "verification.json", asdict(report))
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)

    result = ExportReport(path=out, verify=report)
    if merged:
        result.merged_path = _merge(out, metadata["base_model"])
    if gguf:
        result.gguf_path = _gguf(out, metadata["base_model"], gguf_quantization)
    return result


def _merge(adapter: Path, base_name: str) -> Path:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float16
    base = AutoModelForCausalLM.from_pretrained(base_name, dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, adapter).merge_and_unload().to(dtype)
    target = adapter / "merged"
    merged.save_pretrained(target)
    AutoTokenizer.from_pretrained(adapter).save_pretrained(target)
    return target


def _gguf(adapter: Path, base_name: str, quantization: str) -> Path:
    if not torch.cuda.is_available():
        raise RuntimeError("GGUF export goes through Unsloth, which needs a CUDA GPU; export the adapter or "
                           "merged weights here and convert them with llama.cpp's convert_hf_to_gguf.py")
    from unsloth import FastLanguageModel  # imported only on CUDA (see paretopo.agent.models)

    model, tokenizer = FastLanguageModel.from_pretrained(str(adapter))
    target = adapter / "gguf"
    model.save_pretrained_gguf(str(target), tokenizer, quantization_method=quantization)
    return target
