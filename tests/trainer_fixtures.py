"""A tiny random policy and a task whose rewards vary without any training, for trainer tests.

A random policy never answers arithmetic correctly, so every group would be degenerate and
every advantage zero. ``ToyTask`` calls a completion correct when its text holds a digit, which
a random byte-level policy's 24-token completion does about half the time, so groups differ
and gradients flow.
"""

from __future__ import annotations

from pathlib import Path

from paretopo.agent.models import build_tiny_policy, build_tiny_tokenizer, save_tiny_policy
from paretopo.tasks.arithmetic import ArithmeticTask


class ToyTask(ArithmeticTask):
    name = "toy"

    def is_correct(self, completion_text, example):
        return any(character.isdigit() for character in completion_text)


def tiny_random_policy(folder: str | Path, hidden_size: int = 32, seed: int = 0) -> str:
    """Save a random tiny policy (smaller than the demo's, for speed) and return its path."""
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_policy(tokenizer, hidden_size=hidden_size, num_layers=1, num_heads=2, num_key_value_heads=1,
                              seed=seed)
    return str(save_tiny_policy(model, tokenizer, folder))


def fast_settings(run_dir, model_path, **overrides):
    from paretopo.training.train import RunSettings

    values = dict(run_dir=str(run_dir), task=ToyTask(), model=model_path, tools_in_prompt=False, max_steps=2,
                  prompts_per_step=2, num_generations=4, max_completion_length=24, save_steps=1,
                  validation_examples=4, test_examples=4, train_examples=64, progress=False,
                  learning_rate=5e-2)
    values.update(overrides)
    return RunSettings(**values)
