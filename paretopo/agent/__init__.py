"""The policy as an agent: loading it (``models``), tool-using generation (``rollout``) and the
registry of rollout backends. Used by training, evaluation and the apps; imports none of them."""

from pathlib import Path

__all__ = ["TINY_POLICY_FOLDERS", "tiny_policy_path"]

TINY_POLICY_FOLDERS = {"arithmetic": "tiny_policy", "lookup": "tiny_policy_lookup"}
"""Task name -> its shipped warm-started tiny policy's folder under data/ (``paretopo warmstart --task``)."""


def tiny_policy_path(task_name: str = "arithmetic") -> Path:
    """Where a task's shipped warm-started tiny policy lives (light: no torch). Tasks without one of
    their own (math, QA: real models) fall back to arithmetic's."""
    from paretopo.tasks.base import data_dir

    return data_dir() / TINY_POLICY_FOLDERS.get(task_name, TINY_POLICY_FOLDERS["arithmetic"])
