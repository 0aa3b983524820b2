"""Competition and grade-school maths with a Python tool (docs/method.md).

Splits are benchmarks: ``math500``, ``gsm8k_test``, ``gsm8k_train_first200``, ``aime2024``,
``aime2025``, ``amc23``, ``olympiadbench`` ship in ``data/``; ``gsm8k_train`` (all 7,473) comes
from the Hub. The final answer is the last ``\\boxed{}`` of the completion, checked against the
gold answer with ``paretopo.tasks.answers.math_equal`` (string equality, then math-verify). The tool
is the sandboxed Python interpreter; the default budget is 3 calls (OTC's setting for ToRL).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .answers import math_equal
from .base import BoxedAnswerTask, Example, HubSplit, LocalSplit

__all__ = ["MathTask"]

SYSTEM_PROMPT = (
    "Solve the math problem. Reason step by step, and run Python code with the python tool when "
    "it helps (at most {max_tool_calls} calls). Put the final answer in \\boxed{{}}."
)

_CONTEST_FIELDS = ("contest", "problem_number")


def _gsm8k_hub_example(row: dict[str, Any], index: int) -> Example:
    # GSM8K's answer field is a worked solution ending in "#### <number>".
    final = row["answer"].rsplit("####", 1)[-1].strip().replace(",", "")
    return Example(f"gsm8k-train-{index}", row["question"], final, {"solution": row["answer"]})


class MathTask(BoxedAnswerTask):
    """Maths benchmarks; final answer in ``\\boxed{}``; tool: python sandbox (budget 3)."""

    system_prompt = SYSTEM_PROMPT
    name = "math"
    # trains on the local GSM8K sample (the full train split loads from the Hub)
    default_splits = ("gsm8k_train_first200", "gsm8k_test", "math500")
    local_splits = {
        "math500": LocalSplit("math500.jsonl", metadata_fields=("subject", "level")),
        "gsm8k_test": LocalSplit("gsm8k_test.jsonl"),
        "gsm8k_train_first200": LocalSplit("gsm8k_train_first200.jsonl"),
        "aime2024": LocalSplit("aime2024.jsonl", metadata_fields=_CONTEST_FIELDS),
        "aime2025": LocalSplit("aime2025.jsonl", metadata_fields=_CONTEST_FIELDS),
        "amc23": LocalSplit("amc23.jsonl", metadata_fields=_CONTEST_FIELDS),
        "olympiadbench": LocalSplit(
            "olympiadbench.jsonl", metadata_fields=("subfield", "answer_type", "unit", "is_multiple_answer")
        ),
    }
    hub_splits = {"gsm8k_train": HubSplit("openai/gsm8k", "main", "train", _gsm8k_hub_example)}

    def __init__(self, max_tool_calls: int = 3, answer_timeout_s: float = 5.0) -> None:
        super().__init__(max_tool_calls)
        self.answer_timeout_s = answer_timeout_s

    def is_correct(self, completion_text: str, example: Example) -> bool:
        predicted = self.extract_answer(completion_text)
        return predicted is not None and math_equal(predicted, example.answer, self.answer_timeout_s)

    def tools(self) -> list[Callable[[str], str]]:
        # Imported on use: loading and checking maths needs no sandbox.
        from ..tools.sandbox import make_python_tool

        return [make_python_tool()]
