"""benchmarks/gpu_check.py --dry-run: the GPU check's phases on the CPU, so the script cannot rot.

Runs the script as a subprocess (one process, one thread, the shipped tiny policy read only,
4 prompts x 4 completions, one stage-1 and one stage-2 step) and checks what it wrote: the
stage switch, the export and its verification, the generation timings and the phases that
need CUDA reported as skipped, not faked.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_run_writes_results(tmp_path):
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
                   "PARETOPO_DATA_DIR": os.environ.get("PARETOPO_DATA_DIR", str(REPO / "data")),
                   "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    out = tmp_path / "out"
    completed = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--dry-run", "--out", str(out),
         "--work", str(tmp_path / "work")],
        cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    results = json.loads((out / "gpu_check.json").read_text())
    phases = results["phases"]
    assert results["dry_run"] is True and "--dry-run" in results["command"]

    train = phases["train_trl_peft"]
    assert train["backend_used"] == "transformers"
    assert train["stages"] == [1, 2]  # one stage-1 step, then the switch to stage 2
    assert train["median_step_s_after_first"] > 0 and train["completion_tokens_per_s_after_first"] > 0
    export = train["export"]
    assert export["adapter_verify"]["ok"], export["adapter_verify"]["problems"]
    assert export["merged_ok"] and export["merged_changed_outputs"] > 0
    assert "llama.cpp" in export["gguf"]

    generation = phases["generation"]["variants"]
    assert generation["tool_loop (paretopo, DynamicCache, eager)"]["tokens_per_s"] > 0
    assert generation["model.generate, dynamic cache, eager"]["tokens_per_s"] > 0
    assert "skipped" in generation["model.generate, static cache, torch.compile"]

    memory = phases["memory_1.5b"]  # the dry run's stand-in: the tiny shape, vocabulary padded
    assert memory["stages"] == [1, 2] and phases["build_models"]["memory"]["vocab_size"] == 512
    if not torch.cuda.is_available():
        assert "skipped" in phases["train_unsloth"] and "skipped" in phases["gpu_tests"]
        assert memory["peak_reserved_gib"] is None
    markdown = (out / "gpu_check.md").read_text()
    assert "train_trl_peft" in markdown and "tokens/s" in markdown
