"""Tasks: data, prompts, answer checking, tools and tool budgets.

``get_task(name, **options)`` builds a task by name; options go to its constructor
(``max_tool_calls`` for every task, ``retriever`` / ``top_k`` for the QA tasks). The task
classes live in ``paretopo.tasks.arithmetic``, ``.lookup``, ``.math`` and ``.multihop_qa``.

| name | splits shipped in data/ | tool | budget |
|---|---|---|---|
| ``arithmetic`` | train, validation, test (synthetic) | calculator | 2 |
| ``lookup`` | train, validation, test (synthetic entities) | lookup (key-value table) | 2 |
| ``math`` | math500, gsm8k_test, gsm8k_train_first200, aime2024, aime2025, amc23, olympiadbench | python | 3 |
| ``hotpotqa`` (alias ``multihop_qa``) | dev_500 | search (local BM25) | 4 |
| ``nq_open`` | dev | search (retriever you provide) | 4 |
"""

from __future__ import annotations

import importlib
from typing import Any

from .base import Example, Task

__all__ = ["Example", "Task", "available_tasks", "get_task", "tier_names"]

# name -> "module:class", imported on use so `import paretopo.tasks` stays light and
# `python -m paretopo.tasks.arithmetic` does not find its module already imported.
_TASKS = {
    "arithmetic": "arithmetic:ArithmeticTask",
    "lookup": "lookup:LookupTask",
    "math": "math:MathTask",
    "hotpotqa": "multihop_qa:HotpotQATask",
    "multihop_qa": "multihop_qa:HotpotQATask",  # the paper's multi-hop QA benchmark, local corpus
    "nq_open": "multihop_qa:NQOpenTask",
}


def available_tasks() -> list[str]:
    """Names ``get_task`` accepts."""
    return sorted(_TASKS)


def get_task(name: str, **options: Any) -> Task:
    """Build a task by name, e.g. ``get_task("math", max_tool_calls=1)``.

    Raises ValueError listing the known names when ``name`` is unknown.
    """
    if name not in _TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(available_tasks())}")
    module_name, class_name = _TASKS[name].split(":")
    task_class = getattr(importlib.import_module(f".{module_name}", __name__), class_name)
    return task_class(**options)


def tier_names(name: str) -> dict[int, str]:
    """A task's tier number -> what the tier is (its module's ``TIER_NAMES``; empty for untiered tasks)."""
    if name not in _TASKS:
        return {}
    module = importlib.import_module(f".{_TASKS[name].split(':')[0]}", __name__)
    return dict(getattr(module, "TIER_NAMES", {}))
