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

An export never removes anything it did not write (:func:`check_export_target`): the output
must be a new or empty folder, not the source, a folder inside it or one holding it;
``overwrite=True`` replaces only a folder that holds an earlier export's marker
(:data:`EXPORT_MARKER`, which lists what that export wrote) and nothing else. The export is
built in a fresh hidden folder next to the output and renamed into place once verified.
``paretopo.json`` records paths relative to the export folder (or hub ids), never an absolute
local path.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from paretopo import library_versions
from paretopo.agent.models import load_adapter
from paretopo.evaluation.integrity import check_model_files
from paretopo.evaluation.runlog import (
    atomic_write_json,
    current_umask,
    follow_umask,
    read_run,
    run_paths,
)

__all__ = ["EXPORT_MARKER", "ExportReport", "VerifyReport", "check_export_target", "export_adapter",
           "verify_adapter"]

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
EXPORT_MARKER = ".paretopo-export.json"
"""Written into every export folder: the names export wrote there (all that --overwrite may remove)."""


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


def check_export_target(source: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
                        overwrite: bool = False) -> None:
    """Refuse (a one-line ValueError) an output folder whose use could lose data.

    Refused: a file; the source itself, a folder inside it or one holding it; an existing
    non-empty folder, unless ``overwrite`` and it holds an earlier export (its marker) and
    nothing that export did not write.
    """
    given, out = Path(source), Path(out_dir)
    source_path, target = given.resolve(), out.resolve()
    if target == source_path or source_path in target.parents:
        raise ValueError(f"{out} is inside the source {given}; export to a folder outside it")
    if target in source_path.parents:
        raise ValueError(f"{out} holds the source {given}; export to a new folder outside it")
    if target.exists() and not target.is_dir():
        raise ValueError(f"{out} is a file; pass a folder to export into")
    if not target.is_dir() or not any(target.iterdir()):
        return
    if not overwrite:
        raise ValueError(f"{out} already exists and is not empty; pass a new or empty folder (--overwrite replaces "
                         "only an earlier export)")
    foreign = _not_written_by_export(target)
    if foreign is None:
        raise ValueError(f"{out} is not an earlier paretopo export (it has no {EXPORT_MARKER}); --overwrite replaces "
                         "only an earlier export: pass a new or empty folder")
    if foreign:
        raise ValueError(f"{out} holds {', '.join(foreign[:5])}, which the earlier export did not write; move them "
                         "away or pass a new folder")


def _not_written_by_export(folder: Path) -> list[str] | None:
    """The entries of ``folder`` its export marker does not list (None: no readable marker)."""
    try:
        written = set(json.loads((folder / EXPORT_MARKER).read_text())["written"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return sorted(p.name for p in folder.iterdir() if p.name != EXPORT_MARKER and p.name not in written)


def _write_marker(folder: Path, written: list[str]) -> None:
    atomic_write_json(folder / EXPORT_MARKER, {"written_by": "paretopo export", "written": sorted(written)})


def _install(staging: Path, out: Path, *, overwrite: bool) -> None:
    """Move the finished export into place; an earlier export is removed only after that."""
    if out.is_dir() and any(out.iterdir()) and overwrite:
        old = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.old")
        out.rename(old)
        staging.rename(out)
        shutil.rmtree(old)
        return
    if out.is_dir():
        out.rmdir()  # empty (checked): fails, removing nothing, if something arrived since
    staging.rename(out)


def _portable_paths(value: Any, out: Path) -> Any:
    """``value`` with every absolute path written relative to the export folder ``out``."""
    if isinstance(value, dict):
        return {key: _portable_paths(item, out) for key, item in value.items()}
    if isinstance(value, list):
        return [_portable_paths(item, out) for item in value]
    if isinstance(value, str) and os.path.isabs(value) and "\n" not in value:
        return os.path.relpath(value, out.resolve())
    return value


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
    gguf_quantization: str = "q4_k_m", verify: bool = True, overwrite: bool = False,
) -> ExportReport:
    """Copy an adapter with its tokenizer into ``out_dir``, add ``paretopo.json``, verify it.

    Args:
        source: a run folder, its ``final/`` folder, or a checkpoint folder.
        out_dir: the export folder: new or empty (see :func:`check_export_target`); it appears
            only once the export is complete, so a failed export leaves no half folder.
        merged: also write merged 16-bit weights to ``out_dir/merged``.
        gguf: also convert to GGUF through Unsloth (CUDA only, best-effort).
        overwrite: replace ``out_dir`` if it holds an earlier export (and nothing else).
    """
    out = Path(out_dir)
    check_export_target(source, out, overwrite=overwrite)
    adapter = _adapter_source(Path(source))
    check_model_files(adapter, "adapter")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".partial"))
    staging.chmod(0o777 & ~current_umask())  # mkdtemp makes it 0700; the export is the user's usual folder
    try:
        report = _build_export(adapter, staging, out, verify)
        check_export_target(source, out, overwrite=overwrite)  # again: the folder may have changed meanwhile
        _install(staging, out, overwrite=overwrite)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # made by mkdtemp above: only what this export wrote
        raise

    base_model = json.loads((out / "adapter_config.json").read_text()).get("base_model_name_or_path")
    result = ExportReport(path=out, verify=report)
    written = [p.name for p in out.iterdir()]
    if merged:
        result.merged_path = _merge(out, base_model)
        follow_umask(result.merged_path)
        _write_marker(out, written := [*written, result.merged_path.name])
    if gguf:
        result.gguf_path = _gguf(out, base_model, gguf_quantization)
        _write_marker(out, [*written, result.gguf_path.name])
    return result


def _build_export(adapter: Path, staging: Path, out: Path, verify: bool) -> VerifyReport:
    """Write the export into ``staging``: adapter, tokenizer, paretopo.json, verification, marker."""
    from transformers import AutoTokenizer

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
    atomic_write_json(staging / "paretopo.json", _portable_paths(metadata, out))

    report = verify_adapter(staging) if verify else VerifyReport(True, 0, 0, True, False, 0, 0)
    if verify and not report.ok:
        raise ValueError("adapter verification failed: " + "; ".join(report.problems))
    atomic_write_json(staging / "verification.json", asdict(report))
    follow_umask(staging)  # files copied from a run keep its modes (safetensors writes weights 0600)
    _write_marker(staging, [p.name for p in staging.iterdir()])
    return report


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
