"""Test-wide settings: one torch thread (2 threads on 2 busy cores were 6-25x slower), GPU tests
skipped without CUDA, and Unsloth imported before anything else when PARETOPO_UNSLOTH_FIRST=1."""

import importlib
import os

if os.environ.get("PARETOPO_UNSLOTH_FIRST") == "1":  # benchmarks/gpu_check.py's gpu tests: Unsloth patches
    importlib.import_module("unsloth")                  # transformers, PEFT and TRL on import, so it comes first

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
