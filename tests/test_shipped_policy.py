"""The warm-started tiny policy shipped in data/tiny_policy is the one its record describes.

A policy file overwritten by accident (a notebook or script saving into data/) would silently
change the demo; the checksum recorded by ``paretopo.warmstart`` catches it.
"""

import json

from paretopo.tasks.base import data_dir
from paretopo.warmstart import weights_sha256


def test_shipped_policy_matches_its_warm_start_record():
    folder = data_dir() / "tiny_policy"
    record = json.loads((folder / "warmstart.json").read_text())
    assert weights_sha256(folder) == record["model_sha256"], (
        "data/tiny_policy/model.safetensors changed without re-running `python -m paretopo.warmstart`; "
        "restore it with `git checkout data/tiny_policy` or regenerate it"
    )
    assert record["history"] and record["history"][-1]["accuracy"] > 0.2
