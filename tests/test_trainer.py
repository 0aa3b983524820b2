import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from safetensors.torch import load_file
from trainer_fixtures import ToyTask, fast_settings, tiny_random_policy

from paretopo.core.advantages import compute_advantages
from paretopo.core.config import PRESETS, ParetoPOConfig
from paretopo.evaluation.runlog import read_run
from paretopo.training.train import train_run
from paretopo.training.trainer import STATE_FILE, paretopo_trainer_class

TESTS = Path(__file__).parent


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    return tiny_random_policy(tmp_path_factory.mktemp("policy"))


def _two_stage_overrides(name):
    config = ParetoPOConfig.from_preset(name)
    return {"stage1_steps": 1} if config.stage2_estimator is not None and config.stage1_steps is None else {}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_trains_switches_stage_and_uses_the_logged_advantages(name, policy, tmp_path, monkeypatch):
    trainer_class = paretopo_trainer_class()
    original_loss = trainer_class._compute_loss
    used = []

    def recording_loss(self, model, inputs):
        used.append(inputs["advantages"].detach().clone())
        return original_loss(self, model, inputs)

    monkeypatch.setattr(trainer_class, "_compute_loss", recording_loss)
    result = train_run(name, fast_settings(tmp_path / name, policy, checkpoint_eval=False),
                       method_overrides=_two_stage_overrides(name))
    trainer = result.trainer
    assert result.steps == 2

    # trainable (LoRA) parameters changed: PEFT starts every B matrix at zero
    adapter = load_file(str(tmp_path / name / "final" / "adapter_model.safetensors"))
    assert any(t.abs().sum() > 0 for key, t in adapter.items() if "lora_B" in key)

    # the stage switch happens where the preset says
    config = trainer.method
    expected = [config.stage_at(step, trainer.steps_per_epoch) for step in range(2)]
    run = read_run(tmp_path / name)
    assert run.steps.sort("step")["stage"].to_list() == expected

    # advantages: the loss used exactly what was logged (TRL shuffles rows, so compare as sets)
    last = trainer.last_advantages
    assert torch.equal(torch.sort(used[-1].cpu()).values, torch.sort(last).values)
    np.testing.assert_allclose(list(trainer._logs["advantages"])[-len(last):], last.numpy(), rtol=0, atol=0)
    last_groups = run.groups.filter(pl.col("step") == 2).sort("group", "completion")
    np.testing.assert_allclose(last_groups["advantage"].to_numpy(), last.numpy(), rtol=1e-6)
    # ... and they are the configured estimator's output on the logged objective vectors
    objectives = last_groups.select(f"obj_{o}" for o in config.objectives).to_numpy()
    stage = expected[-1]
    options = config.estimator_options(stage, meta_reward=run.steps.sort("step")["weights/meta_reward"][-1])
    recomputed = compute_advantages(config.estimator_for_stage(stage), objectives, 4, **options).advantages
    np.testing.assert_allclose(recomputed, last.numpy(), atol=1e-5)


RESUME_SCRIPT = """
import sys, time
sys.path.insert(0, {tests!r})
from trainer_fixtures import fast_settings
import paretopo.training.trainer as trainer_module
from paretopo.training.train import train_run

original = trainer_module.RunLogCallback.on_log
def slow_on_log(self, *args, **kwargs):  # give the test time to kill mid-run
    time.sleep(0.7)
    return original(self, *args, **kwargs)
trainer_module.RunLogCallback.on_log = slow_on_log
train_run("paretopo", fast_settings({run!r}, {policy!r}, max_steps=8, save_steps=2),
          method_overrides={{"stage1_steps": 3, "stage1_outcome": "validation"}})
"""


def test_resume_after_sigkill_restores_the_full_state(policy, tmp_path, monkeypatch):
    run = tmp_path / "run"
    script = RESUME_SCRIPT.format(tests=str(TESTS), run=str(run), policy=policy)
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    saved = run / "checkpoints" / "checkpoint-4" / STATE_FILE
    deadline = time.monotonic() + 240
    while not saved.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert saved.exists(), process.stderr.read().decode()[-3000:] if process.poll() is not None else "timed out"
    os.kill(process.pid, signal.SIGKILL)  # mid-training, somewhere after step 4
    process.wait()
    assert process.returncode == -signal.SIGKILL
    killed = read_run(run)  # the log is readable right after the kill
    assert killed.steps.height >= 4

    restored = {}
    trainer_class = paretopo_trainer_class()
    original_load = trainer_class.load_paretopo_state_dict

    def recording_load(self, state):
        original_load(self, state)
        restored.update(self.paretopo_state_dict())

    monkeypatch.setattr(trainer_class, "load_paretopo_state_dict", recording_load)
    last = sorted((run / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))[-1]
    expected = json.loads((last / STATE_FILE).read_text())
    result = train_run("paretopo", fast_settings(run, policy, max_steps=8, save_steps=2),
                       method_overrides={"stage1_steps": 3, "stage1_outcome": "validation"}, resume=True)

    for key in ("nstar", "validation_nstar", "scalarizer"):
        assert restored[key] == expected[key]
    assert expected["scalarizer"]["state"]["archive"] is not None
    # the step counter continues and every step is logged exactly once, stage switch included
    assert result.steps == 8
    steps = read_run(run).steps.sort("step")
    assert steps["step"].to_list() == list(range(1, 9))
    assert steps["stage"].to_list() == [1, 1, 1, 2, 2, 2, 2, 2]
    groups = read_run(run).groups
    assert sorted(set(groups["step"].to_list())) == list(range(1, 9))


def test_reward_functions_are_required(policy, tmp_path):
    from datasets import Dataset
    from trl import GRPOConfig

    from paretopo.agent.models import load_policy

    model, tokenizer = load_policy(policy)
    with pytest.raises(ValueError, match="make_reward_functions"):
        paretopo_trainer_class()(
            model=model, processing_class=tokenizer, reward_funcs=[lambda completions, **kw: [0.0] * len(completions)],
            args=GRPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none",
                            per_device_train_batch_size=4, num_generations=4),
            train_dataset=Dataset.from_list([{"prompt": [{"role": "user", "content": "x"}], "id": "a", "answer": "1"}]),
        )


def test_config_records_which_sandbox_level_the_python_tool_had(policy, tmp_path):
    from paretopo.tools.sandbox import PythonSandbox, make_python_tool

    class PythonToyTask(ToyTask):
        def tools(self):
            return [make_python_tool(PythonSandbox(mode="rlimits-only"))]

    train_run("torl_grpo", fast_settings(tmp_path / "run", policy, task=PythonToyTask(), max_steps=1,
                                         checkpoint_eval=False))
    assert read_run(tmp_path / "run").config["tool_isolation"] == {"python": "rlimits-only"}


def test_resume_finds_the_checkpoints_the_trainer_completed(policy, tmp_path):
    """The trainer writes its state file under the name the run log looks for: a checkpoint without it
    counts as cut short, and resume falls back to the one before."""
    from paretopo.evaluation.runlog import CHECKPOINT_STATE_FILE, last_complete_checkpoint

    run_dir = tmp_path / "run"
    train_run("torl_grpo", fast_settings(run_dir, policy, checkpoint_eval=False))  # 2 steps, a checkpoint each
    assert last_complete_checkpoint(run_dir, "torl_grpo").name == "checkpoint-2"
    (run_dir / "checkpoints" / "checkpoint-2" / CHECKPOINT_STATE_FILE).unlink()
    assert last_complete_checkpoint(run_dir, "torl_grpo").name == "checkpoint-1"


def test_the_task_objective_is_the_tasks_own_checker_on_the_completion_text(policy, tmp_path):
    """Every logged completion's correctness and task objective are the task's is_correct on its text
    (ToyTask: "holds a digit"), and a random policy's groups mix right and wrong, so advantages flow."""
    train_run("torl_grpo", fast_settings(tmp_path / "run", policy, checkpoint_eval=False, max_steps=1, save_steps=1))
    run = read_run(tmp_path / "run")
    logged = run.samples.with_columns((pl.col("row") % 4).alias("completion")).join(
        run.groups, on=["step", "group", "completion"])
    assert logged.height == 8  # 2 prompts x 4 completions, every text kept
    judged = [ToyTask().is_correct(text, None) for text in logged["text"]]
    assert logged["correct"].to_list() == judged
    assert logged["obj_task"].to_list() == [float(c) for c in judged]
    assert 0 < sum(judged) < len(judged) and (run.groups["advantage"] != 0).any()


def test_parallel_runs_match_their_settings_and_return_in_job_order(policy, tmp_path):
    from paretopo.training.train import RunJob, train_runs_parallel

    jobs = [RunJob(method, fast_settings(tmp_path / method, policy, checkpoint_eval=False, seed=seed))
            for method, seed in (("torl_grpo", 0), ("paretopo", 1))]
    finished = []
    results = train_runs_parallel(jobs, processes=2, on_done=lambda job, result: finished.append(job.method))
    assert [r.method for r in results] == ["torl_grpo", "paretopo"] and sorted(finished) == ["paretopo", "torl_grpo"]
    for job, result in zip(jobs, results, strict=True):
        assert result.steps == 2 and result.trainer is None
        run = read_run(job.settings.run_dir)
        assert run.config["settings"]["seed"] == job.settings.seed and run.steps.height == 2
    with pytest.raises(ValueError, match="own run_dir"):
        train_runs_parallel([jobs[0], jobs[0]])


def test_train_batch_ema_outcome_smooths_batch_means_and_is_checkpointed():
    from types import SimpleNamespace

    from paretopo.training.trainer import ParetoPOMixin

    method = ParetoPOConfig(stage1_outcome="train_batch_ema", stage1_outcome_decay=0.5)
    holder = SimpleNamespace(method=method, _outcome_ema=None)
    first = ParetoPOMixin._train_batch_outcome(holder, np.array([[1.0, 0.0], [0.0, 0.0]]))
    second = ParetoPOMixin._train_batch_outcome(holder, np.array([[1.0, 1.0], [1.0, 1.0]]))
    assert np.allclose(first, [0.5, 0.0]) and np.allclose(second, [0.75, 0.5])
    plain = SimpleNamespace(method=ParetoPOConfig(stage1_outcome="train_batch"), _outcome_ema=None)
    assert np.allclose(ParetoPOMixin._train_batch_outcome(plain, np.array([[1.0, 1.0], [0.0, 0.0]])), [0.5, 0.5])
    with pytest.raises(ValueError, match="stage1_outcome_decay"):
        ParetoPOConfig(stage1_outcome_decay=1.0)

CRASH_SCRIPT = """
import os, sys, time
sys.path.insert(0, {tests!r})
from trainer_fixtures import fast_settings
from paretopo.training.train import train_run

def hang(marker):  # tell the test where we are, then wait for its SIGKILL
    open(marker, "w").close()
    time.sleep(600)

{hook}
train_run("paretopo", fast_settings({run!r}, {policy!r}, max_steps=4, save_steps=2),
          method_overrides={{"stage1_steps": 3}})
"""

# Killed while checkpoint-4 is half written: weights saved, optimizer and paretopo state not yet.
HANG_IN_CHECKPOINT_SAVE = """
import transformers
original_save = transformers.Trainer._save_optimizer_and_scheduler
def save_then_hang(self, output_dir):
    if output_dir.endswith("checkpoint-4"):
        hang({marker!r})
    return original_save(self, output_dir)
transformers.Trainer._save_optimizer_and_scheduler = save_then_hang
"""

# Killed while the first validation evaluation is being written: the temporary parquet file is
# complete on disk but not yet renamed over eval.parquet.
HANG_IN_EVALUATION_WRITE = """
import paretopo.evaluation.runlog as runlog
original_replace = os.replace
def replace_then_hang(source, target):
    if str(target).endswith("eval.parquet"):
        hang({marker!r})
    return original_replace(source, target)
runlog.os = type(sys)("os_with_hang")
runlog.os.__dict__.update(os.__dict__, replace=replace_then_hang)
"""


def _kill_when_hung(run, policy, hook, tmp_path):
    """Run the crash script until it reaches `hook`'s hang, SIGKILL it, return the marker path."""
    marker = tmp_path / "hung"
    script = CRASH_SCRIPT.format(tests=str(TESTS), run=str(run), policy=policy,
                                 hook=hook.format(marker=str(marker)))
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert marker.exists(), process.stderr.read().decode()[-3000:] if process.poll() is not None else "timed out"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL


def _resume_to_the_end(run, policy):
    result = train_run("paretopo", fast_settings(run, policy, max_steps=4, save_steps=2),
                       method_overrides={"stage1_steps": 3}, resume=True)
    assert result.steps == 4
    data = read_run(run)
    assert data.steps.sort("step")["step"].to_list() == [1, 2, 3, 4]  # every step once
    assert sorted(set(data.groups["step"].to_list())) == [1, 2, 3, 4]
    validation = data.evals.filter(pl.col("split") == "validation").sort("step")
    assert validation["step"].to_list() == [2, 4]  # every checkpoint evaluated once
    assert (run / "checkpoints" / "checkpoint-4" / STATE_FILE).exists()
    return data


def test_sigkill_during_a_checkpoint_save_resumes_from_the_last_complete_one(policy, tmp_path):
    run = tmp_path / "run"
    _kill_when_hung(run, policy, HANG_IN_CHECKPOINT_SAVE, tmp_path)
    assert not (run / "checkpoints" / "checkpoint-4" / STATE_FILE).exists()  # cut short
    killed = read_run(run)  # readable right after the kill
    assert killed.steps["step"].max() >= 4 and killed.config["method"]["method"] == "paretopo"
    _resume_to_the_end(run, policy)  # from checkpoint-2; the half-written checkpoint-4 is redone


def test_sigkill_during_evaluation_writes_keeps_the_run_readable_and_resumable(policy, tmp_path):
    run = tmp_path / "run"
    _kill_when_hung(run, policy, HANG_IN_EVALUATION_WRITE, tmp_path)
    assert list(run.glob(".eval.parquet.*.tmp"))  # killed between writing and renaming
    killed = read_run(run)  # the half-finished write is invisible to readers
    assert killed.evals.height == 0 and killed.steps.height == 2
    _resume_to_the_end(run, policy)  # checkpoint-2 is evaluated again, then steps 3 and 4 run


def test_length_buckets_change_no_log_prob_and_no_update(tmp_path, monkeypatch):
    """The loss pass in length-sorted chunks (RunSettings.length_buckets) is a speed-up only: the
    same log-probs and entropies on a batch of very different completion lengths, and the same
    weights after two optimiser steps of the shipped policy."""
    import trl

    from paretopo.training.train import RunSettings

    scored = []  # (rows, columns) of every call TRL's own log-prob pass gets
    trl_pass = trl.GRPOTrainer._get_per_token_logps_and_entropies

    def spy(self, model, input_ids, *args, **kwargs):
        scored.append(tuple(input_ids.shape))
        return trl_pass(self, model, input_ids, *args, **kwargs)

    monkeypatch.setattr(trl.GRPOTrainer, "_get_per_token_logps_and_entropies", spy)

    def run(buckets: int):
        settings = RunSettings(run_dir=str(tmp_path / f"buckets{buckets}"), max_steps=2, prompts_per_step=4,
                               num_generations=4, checkpoint_eval=False, save_steps=2, test_examples=4,
                               progress=False, length_buckets=buckets)
        return train_run("torl_grpo", settings)

    bucketed = run(4)
    chunks, scored[:] = list(scored), []
    padded = run(0)
    assert len(chunks) == 4 * len(scored)  # training went through the chunks: 4 per loss pass
    assert min(columns for _, columns in chunks) < min(columns for _, columns in scored)  # shorter rows
    for name, weight in bucketed.trainer.model.state_dict().items():
        torch.testing.assert_close(weight, padded.trainer.model.state_dict()[name], rtol=1e-5, atol=1e-6)

    trainer = bucketed.trainer
    trainer.model.eval()
    lengths = [1, 3, 40, 7, 74, 2, 19, 74, 5]  # right-padded completions after left-padded prompts
    prompt, width = 6, max(lengths)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 60, (len(lengths), prompt + width), generator=generator)
    mask = torch.zeros_like(ids)
    for row, length in enumerate(lengths):
        mask[row, row % 3 : prompt + length] = 1
    outputs = {}
    for buckets in (0, 3):
        trainer.length_buckets = buckets
        with torch.no_grad():
            logps, entropies, _ = trainer._get_per_token_logps_and_entropies(
                trainer.model, ids, mask, width, compute_entropy=True)
        outputs[buckets] = (logps * mask[:, prompt:], entropies * mask[:, prompt:])
    for padded_value, bucketed_value in zip(outputs[0], outputs[3], strict=True):
        torch.testing.assert_close(bucketed_value, padded_value, rtol=1e-5, atol=1e-5)
    assert (outputs[3][0][mask[:, prompt:] == 1] != 0).all()  # every real token was scored
