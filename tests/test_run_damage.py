"""Runs that go wrong keep what is good (issue 24): non-finite weights stop the run before they
are saved, a save cut short (a full disk) is skipped by --resume or cleared by a rerun, damaged
files are named in one line, names that cannot be written are refused, files follow the umask."""

import errno
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import torch
from trainer_fixtures import fast_settings, tiny_random_policy

from paretopo.evaluation.integrity import DamagedFile, check_model_files
from paretopo.evaluation.runlog import last_complete_checkpoint, run_paths
from paretopo.training.guard import NonFiniteTraining
from paretopo.training.train import train_run

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    return tiny_random_policy(tmp_path_factory.mktemp("policy") / "policy")


def _settings(run_dir, policy, **overrides):
    return fast_settings(run_dir, policy, **{"max_steps": 3, "save_steps": 1, "checkpoint_eval": False,
                                             "test_examples": 2, **overrides})


def _finite(folder: Path) -> bool:
    from safetensors.torch import load_file

    return all(bool(torch.isfinite(t).all()) for t in load_file(str(folder / "adapter_model.safetensors")).values())


def test_non_finite_weights_stop_the_run_and_keep_the_last_good_checkpoint(tmp_path, policy, monkeypatch):
    run = tmp_path / "run"
    original, steps = torch.optim.AdamW.step, []

    def step_then_poison(self, *args, **kwargs):  # the second optimiser step leaves NaN weights
        result = original(self, *args, **kwargs)
        steps.append(1)
        if len(steps) == 2:
            with torch.no_grad():
                for group in self.param_groups:
                    for parameter in group["params"]:
                        parameter.fill_(float("nan"))
        return result

    monkeypatch.setattr(torch.optim.AdamW, "step", step_then_poison)
    with pytest.raises(NonFiniteTraining, match=r"training stopped at step 2: weight \S+ became NaN or infinite; "
                                                r"\S+checkpoint-1 is the last good checkpoint") as stopped:
        train_run("paretopo", _settings(run, policy), method_overrides={"stage1_steps": 1})
    assert "\n" not in str(stopped.value)
    paths = run_paths(run)
    assert [c.name for c in paths.checkpoint_folders()] == ["checkpoint-1"] and not paths.final.exists()
    assert _finite(paths.checkpoint(1))

    monkeypatch.setattr(torch.optim.AdamW, "step", original)
    result = train_run("paretopo", _settings(run, policy), method_overrides={"stage1_steps": 1}, resume=True)
    assert result.steps == 3 and _finite(paths.final)


def _full_disk_at(step: int, monkeypatch) -> None:
    """Saving checkpoint-<step> fails half-way, as a full disk makes it: weights written, half an
    optimizer file, no trainer state."""
    from transformers import Trainer

    original = Trainer._save_optimizer_and_scheduler

    def save(self, output_dir):
        if Path(output_dir).name == f"checkpoint-{step}":
            (Path(output_dir) / "optimizer.pt").write_bytes(b"PK\x03\x04 cut short")
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, output_dir)

    monkeypatch.setattr(Trainer, "_save_optimizer_and_scheduler", save)


def test_resume_after_a_failed_save_continues_from_the_last_complete_checkpoint(tmp_path, policy, monkeypatch):
    run = tmp_path / "run"
    _full_disk_at(2, monkeypatch)
    with pytest.raises(OSError, match="No space left"):
        train_run("paretopo", _settings(run, policy), method_overrides={"stage1_steps": 1})
    paths = run_paths(run)
    assert [c.name for c in paths.checkpoint_folders()] == ["checkpoint-1", "checkpoint-2"]  # 2 is partial
    assert last_complete_checkpoint(run, "paretopo") == paths.checkpoint(1)

    monkeypatch.undo()
    result = train_run("paretopo", _settings(run, policy), method_overrides={"stage1_steps": 1}, resume=True)
    assert result.steps == 3
    assert [c.name for c in paths.checkpoint_folders(complete=True)] == ["checkpoint-1", "checkpoint-2",
                                                                         "checkpoint-3"]
    check_model_files(paths.checkpoint(2))  # rewritten whole
    assert pl.read_parquet(paths.steps)["step"].to_list() == [1, 2, 3]


def test_a_run_whose_first_save_failed_can_be_run_again_in_its_folder(tmp_path, policy, monkeypatch):
    run = tmp_path / "run"
    _full_disk_at(1, monkeypatch)
    with pytest.raises(OSError, match="No space left"):
        train_run("paretopo", _settings(run, policy, max_steps=2), method_overrides={"stage1_steps": 1})
    with pytest.raises(FileNotFoundError, match="no complete checkpoint to resume; drop resume"):
        last_complete_checkpoint(run, "paretopo")

    monkeypatch.undo()
    result = train_run("paretopo", _settings(run, policy, max_steps=2), method_overrides={"stage1_steps": 1})
    paths = run_paths(run)
    assert result.steps == 2 and paths.final.is_dir()
    assert [c.name for c in paths.checkpoint_folders(complete=True)] == ["checkpoint-1", "checkpoint-2"]
    assert pl.read_parquet(paths.steps)["step"].to_list() == [1, 2]


def test_run_log_files_follow_the_umask(tmp_path, policy):
    previous = os.umask(0o027)
    try:
        train_run("paretopo", _settings(tmp_path / "run", policy, max_steps=1), method_overrides={"stage1_steps": 1})
    finally:
        os.umask(previous)
    paths = run_paths(tmp_path / "run")
    written = [paths.config, paths.steps, paths.evals, *paths.groups.iterdir(), *paths.checkpoint(1).iterdir(),
               *paths.final.iterdir()]  # weights included: safetensors itself writes them 0600
    assert {f.name: oct(f.stat().st_mode & 0o777) for f in written} == {f.name: oct(0o640) for f in written}


def test_a_damaged_checkpoint_is_named_in_one_line(tmp_path):
    folder = tmp_path / "checkpoint-3"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": 1}")
    with pytest.raises(DamagedFile, match=r"model.safetensors is damaged \(Error while deserializing header"):
        check_model_files(folder, "checkpoint")
    (folder / "model.safetensors").unlink()
    (folder / "optimizer.pt").write_bytes(b"not a zip")
    with pytest.raises(DamagedFile, match=r"optimizer.pt is damaged \(not a torch file"):
        check_model_files(folder, "checkpoint")
    torch.save({"x": torch.ones(1000)}, folder / "optimizer.pt")
    data = bytearray((folder / "optimizer.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside the tensor data
    (folder / "optimizer.pt").write_bytes(bytes(data))
    with pytest.raises(DamagedFile, match="fails its CRC check"):
        check_model_files(folder, "checkpoint")


def test_a_run_dir_that_is_not_utf8_is_refused_before_anything_is_written(tmp_path):
    environment = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "paretopo.commands.cli", "train", "--run-dir", b"run\xff",
                           "--steps", "1"], cwd=tmp_path, capture_output=True, env=environment, timeout=300)
    error = done.stderr.decode(errors="replace").strip()
    assert done.returncode == 2 and "\n" not in error, error
    assert "--run-dir 'run\\udcff' is not valid UTF-8" in error, error
    assert list(tmp_path.iterdir()) == []
