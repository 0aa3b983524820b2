"""The policy as an agent: loading it (``models``), tool-using generation (``rollout``) and the
registry of rollout backends. Used by training, evaluation and the apps; imports none of them."""

from pathlib import Path

__all__ = ["TINY_POLICY_FOLDERS", "TINY_POLICY_LEARNING_RATES", "chosen_learning_rates", "tiny_policy_learning_rate",
           "tiny_policy_path"]

TINY_POLICY_FOLDERS = {"arithmetic": "tiny_policy", "lookup": "tiny_policy_lookup"}
"""Task name -> its shipped warm-started tiny policy's folder under data/ (``paretopo warmstart --task``)."""

TINY_POLICY_LEARNING_RATES = {"arithmetic": 3e-4, "lookup": 3e-5}
"""Task name -> the learning rate for full fine-tuning of its tiny policy, chosen once on validation for
the accuracy-only baseline and used by every method (``scripts/choose_lr.py``; results/lr_choice/)."""


def tiny_policy_path(task_name: str = "arithmetic") -> Path:
    """Where a task's shipped warm-started tiny policy lives (light: no torch). Tasks without one of
    their own (math, QA: real models) fall back to arithmetic's."""
    from paretopo.tasks.base import data_dir

    return data_dir() / TINY_POLICY_FOLDERS.get(task_name, TINY_POLICY_FOLDERS["arithmetic"])


def tiny_policy_learning_rate(task_name: str = "arithmetic") -> float:
    """The chosen learning rate of a task's tiny policy (tasks without one of their own: arithmetic's)."""
    return TINY_POLICY_LEARNING_RATES.get(task_name, TINY_POLICY_LEARNING_RATES["arithmetic"])


def chosen_learning_rates() -> str:
    """``"arithmetic 3e-4, lookup 3e-5"``: the chosen rates, for help texts."""
    return ", ".join(f"{task} {rate:.0e}".replace("e-0", "e-") for task, rate in TINY_POLICY_LEARNING_RATES.items())
