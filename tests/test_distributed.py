"""Two ranks (torchrun, gloo on CPU) compute the same ranks and advantages as one process."""

import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
from trainer_fixtures import tiny_random_policy

from paretopo.core.advantages import compute_advantages
from paretopo.core.config import ParetoPOConfig


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_ranks_match_a_single_process(tmp_path):
    policy = tiny_random_policy(tmp_path / "policy")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(_free_port()), str(Path(__file__).parent / "dist_worker.py"), str(out), policy]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-4000:]
    ranks = [json.loads((out / f"rank{k}.json").read_text()) for k in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    config = ParetoPOConfig(stage1_steps=1, stage1_outcome="train_batch")
    assert len(ranks[0]["records"]) == len(ranks[1]["records"]) == 2
    for step, (zero, one) in enumerate(zip(ranks[0]["records"], ranks[1]["records"], strict=True)):
        # both ranks gathered the same N rows (4 per rank) and computed the same advantages
        assert zero["objectives"] == one["objectives"] and zero["ids"] == one["ids"] and len(zero["ids"]) == 8
        assert zero["all"] == one["all"]
        # each rank trains on its own slice of them
        np.testing.assert_allclose(zero["local"] + one["local"], zero["all"], rtol=0, atol=0)
        # a single process on the same gathered matrix gives the same ranks and advantages
        stage = zero["stage"]
        assert stage == config.stage_at(step)
        single = compute_advantages(config.estimator_for_stage(stage), np.array(zero["objectives"]), 4,
                                    **config.estimator_options(stage, meta_reward=1.0))  # stage 1 is step 0: meta 1
        if stage == 2:  # pareto_rank does not depend on the meta reward
            np.testing.assert_allclose(single.advantages, zero["all"], rtol=0, atol=1e-6)
        else:  # group_std stage 1: the meta reward cancels up to eps
            np.testing.assert_allclose(single.advantages, zero["all"], rtol=1e-3, atol=1e-4)
