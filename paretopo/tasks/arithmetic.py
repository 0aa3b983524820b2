"""Synthetic arithmetic with a calculator: the CPU demo task, built so accuracy and tool use conflict.

Three tiers of questions, recorded in ``Example.metadata["tier"]``:

1. ``a+b`` with ``a < 100``, ``b < 10`` and no carry out of the units digit (``42+5``, ``3+6``):
   the answer needs only the units table, which every split shares, so a tiny model can
   answer directly.
2. the same sums *with* a carry (``47+8``, ``7+8``): one more step, which a tiny model gets
   only partly right, so a direct answer is a gamble and a call is safe but costs efficiency.
3. a three-digit times a two-digit number (``417*38``): needs the calculator.

Rewarding the right amount of tool use is the objective's job (n* tracking), not the task's:
``is_correct`` ignores tool calls, and a redundant call on an easy question is not penalised
here.

Splits are disjoint by construction: a question goes to train / validation / test by a hash
of its canonical form (operands sorted, so ``3+5`` and ``5+3`` land in the same split). Each
split draws the same share of rows from each tier by cycling a seeded shuffle of that tier's
questions in the split, so a tier with few questions (tiers 1-2 have 550 and 450 in all)
repeats questions rather than skewing the mix; ids stay unique. Regenerate the shipped files
with ``python -m paretopo.tasks.arithmetic --out data/arithmetic``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from ..tools.calculator import calculator
from .base import BoxedAnswerTask, Example, LocalSplit

__all__ = [
    "ArithmeticTask",
    "DEFAULT_SPLIT_SIZES",
    "QUESTION_FORM",
    "TIER_NAMES",
    "generate_split",
    "question_tier",
    "split_of",
    "tier_questions",
    "write_arithmetic_splits",
]

TIER_NAMES = {1: "sum without carry", 2: "sum with carry", 3: "3-digit x 2-digit product"}
SPLIT_SHARES = {"train": 0.70, "validation": 0.15, "test": 0.15}  # share of each tier's questions
DEFAULT_SPLIT_SIZES = {"train": 2000, "validation": 200, "test": 200}
DEFAULT_TIER_WEIGHTS = (1 / 3, 1 / 3, 1 / 3)
QUESTION_FORM = ("*What is a+b?* with a < 100 and b < 10 (e.g. *What is 47+8?*), or *What is a\\*b?* with a "
                 "three-digit a and a two-digit b (e.g. *What is 417\\*38?*)")
"""Every question of the task, in words (markdown): what a policy trained on it has seen."""
_QUESTION = re.compile(r"What is (0|[1-9]\d*)([+*])(0|[1-9]\d*)\?")

SYSTEM_PROMPT = (
    "Answer the arithmetic question. If you are not sure, call the calculator tool "
    "(at most {max_tool_calls} calls). Give the final number in \\boxed{{}}."
)


def tier_questions(tier: int) -> list[tuple[int, str, int]]:
    """Every question of a tier as ``(left, operator, right)``, in a fixed order.

    Example:
        >>> len(tier_questions(1)), len(tier_questions(2)), len(tier_questions(3))
        (550, 450, 81000)
    """
    if tier in (1, 2):
        sums = [(a, "+", b) for a in range(100) for b in range(10)]
        return [(a, op, b) for a, op, b in sums if ((a % 10 + b) >= 10) == (tier == 2)]
    if tier == 3:
        return [(a, "*", b) for a in range(100, 1000) for b in range(10, 100)]
    raise ValueError(f"tier must be 1, 2 or 3, got {tier}")


def question_tier(question: str) -> int | None:
    """The tier of a question written in the task's own form, None for any other text.

    Example:
        >>> question_tier("What is 47+8?"), question_tier("What is 417*38?"), question_tier("what is 48 + 77?")
        (2, 3, None)
    """
    match = _QUESTION.fullmatch(question.strip())
    if match is None:
        return None
    left, operator, right = int(match[1]), match[2], int(match[3])
    if operator == "+" and left < 100 and right < 10:
        return 2 if left % 10 + right >= 10 else 1
    if operator == "*" and 100 <= left < 1000 and 10 <= right < 100:
        return 3
    return None


def _canonical(left: int, operator: str, right: int) -> str:
    low, high = sorted((left, right))  # both operators are commutative
    return f"{low}{operator}{high}"


def split_of(left: int, operator: str, right: int) -> str:
    """The split a question belongs to, from a hash of its canonical form.

    Example:
        >>> split_of(3, "+", 5) == split_of(5, "+", 3)
        True
    """
    digest = hashlib.sha256(_canonical(left, operator, right).encode()).digest()
    bucket = int.from_bytes(digest[:8], "big") / 2**64
    cumulative = 0.0
    for split, share in SPLIT_SHARES.items():
        cumulative += share
        if bucket < cumulative:
            return split
    return list(SPLIT_SHARES)[-1]  # float rounding at the very top of the range


def generate_split(
    split: str, num_examples: int, seed: int = 0, tier_weights: Sequence[float] = DEFAULT_TIER_WEIGHTS
) -> list[Example]:
    """``num_examples`` questions of one split, tiers mixed by ``tier_weights`` (deterministic).

    Example:
        >>> [e.question for e in generate_split("test", 3, seed=0)]
        ['What is 527*46?', 'What is 14+7?', 'What is 50+4?']
    """
    if split not in SPLIT_SHARES:
        raise ValueError(f"unknown split {split!r}; known splits: {', '.join(SPLIT_SHARES)}")
    if len(tier_weights) != 3 or min(tier_weights) < 0 or sum(tier_weights) <= 0:
        raise ValueError(f"tier_weights must be 3 non-negative numbers, not all 0; got {tier_weights}")
    total_weight = sum(tier_weights)
    counts = [int(num_examples * w / total_weight) for w in tier_weights]
    for tier_index in range(num_examples - sum(counts)):  # hand out the rounding remainder
        counts[tier_index % 3] += 1

    rows = []
    for tier, count in zip((1, 2, 3), counts, strict=True):
        pool = [q for q in tier_questions(tier) if split_of(*q) == split]
        random.Random(f"{seed}/{split}/{tier}").shuffle(pool)
        rows += [(tier, pool[i % len(pool)]) for i in range(count)]
    random.Random(f"{seed}/{split}/order").shuffle(rows)

    examples = []
    for index, (tier, (left, operator, right)) in enumerate(rows):
        value = left + right if operator == "+" else left * right
        expression = f"{left}{operator}{right}"
        examples.append(
            Example(
                id=f"arithmetic-{split}-{index:05d}",
                question=f"What is {expression}?",
                answer=str(value),
                metadata={"tier": tier, "expression": expression},
            )
        )
    return examples


def write_arithmetic_splits(
    out_dir: str | Path, sizes: dict[str, int] | None = None, seed: int = 0
) -> dict[str, Path]:
    """Write ``{split}.jsonl`` (fields id, question, answer, tier, expression) for every split."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, size in (sizes or DEFAULT_SPLIT_SIZES).items():
        path = out_dir / f"{split}.jsonl"
        with open(path, "w", encoding="utf-8") as file:
            for example in generate_split(split, size, seed=seed):
                row = {"id": example.id, "question": example.question, "answer": example.answer, **example.metadata}
                file.write(json.dumps(row) + "\n")
        paths[split] = path
    return paths


def _as_number(text: str) -> float | None:
    try:
        return float(text.replace(",", "").replace(" ", ""))
    except ValueError:
        return None


class ArithmeticTask(BoxedAnswerTask):
    """Synthetic arithmetic; final answer in ``\\boxed{}``; tool: the calculator (budget 2).

    Args:
        max_tool_calls: tool-call budget per completion.
        instructions: put ``SYSTEM_PROMPT`` (answer format, tool budget) in the prompt, for a
            chat model meeting the task cold. Off by default: the task's policy is the
            warm-started tiny one, which learned the format from its traces, and the
            instructions would be ~2/3 of every sequence it trains on. Off, the prompt is an
            empty system turn (so no template inserts a default one) and the question.
    """

    system_prompt = SYSTEM_PROMPT
    name = "arithmetic"
    local_splits = {
        split: LocalSplit(f"arithmetic/{split}.jsonl", metadata_fields=("tier", "expression")) for split in SPLIT_SHARES
    }

    def __init__(self, max_tool_calls: int = 2, instructions: bool = False) -> None:
        super().__init__(max_tool_calls)
        self.instructions = instructions

    def messages(self, example: Example) -> list[dict[str, str]]:
        if self.instructions:
            return super().messages(example)
        return [{"role": "system", "content": ""}, {"role": "user", "content": example.question}]

    def is_correct(self, completion_text: str, example: Example) -> bool:
        """Numeric equality of the last ``\\boxed{}`` with the answer (``1,080`` = ``1080.0``).

        An example without a numeric answer (e.g. a typed question the task cannot score) is never correct.
        """
        predicted = self.extract_answer(completion_text)
        value = _as_number(predicted) if predicted is not None else None
        expected = _as_number(example.answer or "")
        return value is not None and expected is not None and value == expected

    def tools(self) -> list[Callable[[str], str]]:
        return [calculator]


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: regenerate the arithmetic split files."""
    parser = argparse.ArgumentParser(description="Write the synthetic arithmetic splits as JSONL.")
    parser.add_argument("--out", default="data/arithmetic", help="output folder (default: data/arithmetic)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (split membership does not depend on it)")
    for split, size in DEFAULT_SPLIT_SIZES.items():
        parser.add_argument(f"--{split}", type=int, default=size, help=f"rows in {split} (default {size})")
    args = parser.parse_args(argv)
    sizes = {split: getattr(args, split) for split in DEFAULT_SPLIT_SIZES}
    for split, path in write_arithmetic_splits(args.out, sizes, seed=args.seed).items():
        print(f"{split}: {sizes[split]} rows -> {path}")


if __name__ == "__main__":
    main()
