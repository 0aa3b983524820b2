"""The policy as an agent: loading it (``models``), tool-using generation (``rollout``) and the
registry of rollout backends. Used by training, evaluation and the apps; imports none of them."""

from pathlib import Path

__all__ = ["tiny_policy_path"]


def tiny_policy_path() -> Path:
    """Where the shipped warm-started tiny policy lives (``data/tiny_policy``; light: no torch)."""
    from paretopo.tasks.base import data_dir

    return data_dir() / "tiny_policy"
