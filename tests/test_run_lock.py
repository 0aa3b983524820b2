"""One process per run folder (issue 24): a second `paretopo train` on a held folder exits 2 with
one line naming the holder's pid; the lock goes with its process however it ends."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from paretopo.evaluation.runlock import LOCK_FILE, RunFolderBusy, hold_run_folder

REPO = Path(__file__).resolve().parents[1]
HOLDER = """
import sys, time
from paretopo.evaluation.runlock import hold_run_folder
with hold_run_folder(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""


def _environment():
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1"}


@pytest.fixture
def holder(tmp_path):
    """A separate process holding the lock of tmp_path/run (killed with SIGKILL at the end)."""
    run_dir = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir)], stdout=subprocess.PIPE, text=True,
                               env=_environment())
    assert process.stdout.readline().strip() == "held"
    yield run_dir, process
    process.kill()
    process.wait()


def test_second_train_on_a_held_run_folder_exits_2_naming_the_holder(holder):
    run_dir, process = holder
    second = subprocess.run([sys.executable, "-m", "paretopo.commands.cli", "train", "--run-dir", str(run_dir),
                             "--steps", "1", "--prompts", "2", "--generations", "2", "--validation-examples", "2",
                             "--test-examples", "2", "--no-progress"],
                            capture_output=True, text=True, env=_environment(), timeout=300)
    lines = second.stderr.strip().splitlines()
    assert second.returncode == 2, second.stderr
    assert len(lines) == 1 and f"in use by process {process.pid}" in lines[0], second.stderr
    assert sorted(p.name for p in run_dir.iterdir()) == [LOCK_FILE]  # the second process wrote nothing


def test_a_lock_left_by_a_killed_process_is_free(holder):
    run_dir, process = holder
    with pytest.raises(RunFolderBusy, match=f"process {process.pid} "):
        hold_run_folder(run_dir).acquire()
    process.send_signal(signal.SIGKILL)  # no chance to clean up: the kernel drops its flock
    process.wait()
    assert (run_dir / LOCK_FILE).read_text().split()[0] == str(process.pid)  # the stale record is still there
    with hold_run_folder(run_dir):
        assert (run_dir / LOCK_FILE).read_text().split()[0] == str(os.getpid())


def test_train_run_releases_the_lock_when_it_fails(tmp_path):
    from paretopo.training.train import RunSettings, train_run

    run_dir = tmp_path / "run"
    with hold_run_folder(run_dir), pytest.raises(RunFolderBusy):  # held here: train_run refuses
        train_run("paretopo", RunSettings(run_dir=str(run_dir), task="chess"))
    with pytest.raises(Exception, match="chess"):  # free again: train_run runs (and fails on the task)
        train_run("paretopo", RunSettings(run_dir=str(run_dir), task="chess"))
    with hold_run_folder(run_dir):  # and released after failing
        pass


def test_the_lock_file_follows_the_umask(tmp_path):
    previous = os.umask(0o027)
    try:
        with hold_run_folder(tmp_path / "run"):
            mode = (tmp_path / "run" / LOCK_FILE).stat().st_mode & 0o777
    finally:
        os.umask(previous)
    assert mode == 0o640
