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

    # the plan, printed first and recorded: cheap decisive phases first, compile and gpu tests last
    order = ["unsloth_rollout", "train_unsloth", "train_trl_peft", "export_verify", "memory_1.5b", "generation",
             "generation_compile", "gpu_tests"]
    assert [step["name"] for step in results["plan"]] == order
    assert set(phases) == {"build_models", *order}  # every phase recorded (the JSON's keys are sorted)
    printed = completed.stdout
    assert "plan (deadline" in printed and printed.index("1. unsloth_rollout") < printed.index("8. gpu_tests")

    train = phases["train_trl_peft"]
    assert train["backend_used"] == "transformers" and train["rollout_backend"] == "tool_loop"
    assert train["stages"] == [1, 2]  # one stage-1 step, then the switch to stage 2
    assert train["median_step_s_after_first"] > 0 and train["completion_tokens_per_s_after_first"] > 0
    export = phases["export_verify"]  # on a CPU, the TRL + PEFT run's export
    assert export["source_run"].endswith("run-trl-peft")
    assert export["adapter_verify"]["ok"], export["adapter_verify"]["problems"]
    assert export["merged_ok"] and export["merged_changed_outputs"] > 0
    assert "llama.cpp" in export["gguf"]

    generation = phases["generation"]["variants"]
    assert generation["tool_loop (paretopo, DynamicCache, eager)"]["tokens_per_s"] > 0
    assert generation["segmented_generate (paretopo, model.generate per turn, eager)"]["tokens_per_s"] > 0
    assert generation["model.generate, dynamic cache, eager"]["tokens_per_s"] > 0
    assert "skipped" in phases["generation_compile"]["variants"]["model.generate, static cache, torch.compile"]

    memory = phases["memory_1.5b"]  # the dry run's stand-in: the tiny shape, vocabulary padded
    assert memory["stages"] == [1, 2] and phases["build_models"]["memory"]["vocab_size"] == 512
    if not torch.cuda.is_available():
        assert all("skipped" in phases[name] for name in ("unsloth_rollout", "train_unsloth", "gpu_tests"))
        assert memory["peak_reserved_gib"] is None
    markdown = (out / "gpu_check.md").read_text()
    assert "train_trl_peft" in markdown and "tokens/s" in markdown


def test_gpu_check_refuses_a_used_work_folder(tmp_path):
    """A rerun must not append to an earlier run's step logs: --work must be new or empty."""
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "old").write_text("")
    completed = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--dry-run", "--out",
                                str(tmp_path / "out"), "--work", str(tmp_path / "work")],
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 2 and "is not empty" in completed.stderr
    assert "Traceback" not in completed.stderr and not (tmp_path / "out").exists()


def test_a_phase_is_not_started_with_under_a_minute_left(tmp_path, monkeypatch):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    monkeypatch.setattr(gpu_check, "environment_summary", lambda: {})
    check = gpu_check.Check(tmp_path / "out", tmp_path, in_process=True, deadline_s=59, command="test", dry_run=True)
    ran = []
    monkeypatch.setitem(gpu_check.PHASES, "train", lambda spec: ran.append(spec) or {})
    assert check.run("train_trl_peft", "train", {}, limit_s=100) is None and not ran
    assert "a phase needs 60 s" in check.results["phases"]["train_trl_peft"]["skipped"]
    check.deadline += 10  # 69 s left: it runs
    assert check.run("train_trl_peft", "train", {}, limit_s=100) is not None and ran
    saved = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert "phase_seconds" in saved["phases"]["train_trl_peft"]  # written as the phase ended


def test_a_failing_phase_process_is_recorded_with_its_own_error(tmp_path, monkeypatch):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    monkeypatch.setattr(gpu_check, "environment_summary", lambda: {})
    check = gpu_check.Check(tmp_path / "out", tmp_path, in_process=False, deadline_s=600, command="test",
                            dry_run=False)
    result = check.run("export_verify", "export", {"run_dir": str(tmp_path / "no-run"),
                                                  "export_dir": str(tmp_path / "export")}, limit_s=120)
    assert result["error"].startswith("FileNotFoundError: no LoRA adapter") and "exited with 1" in result["error"]
    assert "Traceback" in (tmp_path / "out" / "phases.log").read_text()
    assert json.loads((tmp_path / "out" / "gpu_check.json").read_text())["phases"]["export_verify"]["error"]
