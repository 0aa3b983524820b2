"""Synthetic fact lookup: questions about made-up entities that only a tool can answer for sure.

The second CPU testbed (beside ``paretopo.tasks.arithmetic``). Where arithmetic's direct answer
is a skill the policy can practise, here the tool carries information the model does not have:
a knowledge base of made-up entities (names like ``Bazo``), each with an ``age`` (20-89) and a
``town`` (one of 16 made-up towns). Questions read ``What is the age of Bazo?``. Tiers, in
``Example.metadata["tier"]``:

1. one of the 32 **known** entities, whose facts the warm-started policy memorised from its
   training traces (the same 64 questions appear in every split, as arithmetic's units table
   does): a direct answer is right.
2. an **unknown** entity (480 of them, never in the warm start's direct answers): a direct
   answer is a guess, right about 1 time in 70 (age) or 16 (town).

No two-lookup tier (issue 22's optional tier 3) yet.

Splits are disjoint by unknown entity: an unknown entity goes to train / validation / test by a
hash of its name, so no practice on train (direct or with the tool) can teach a test answer.

The tool is a key-value lookup (``paretopo.tools.lookup``: ``lookup(entity, attribute)``
returns the value alone), not the BM25 search over passages: a ~200k-parameter character-level
policy reading a value out of ranked passages would spend hundreds of tokens per call (slow on a
CPU) and a skill it lacks (reading comprehension) on every call. With the value returned alone,
a call is right whenever the policy copies the entity's name into it and the value out of it, so
the accuracy/efficiency conflict sits where the testbed puts it: in the decision to call.

Regenerate the shipped files with ``python -m paretopo.tasks.lookup --out data/lookup``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path

from ..tools.lookup import KeyValueTable, make_lookup_tool
from .base import BoxedAnswerTask, Example, LocalSplit, data_path

__all__ = [
    "ATTRIBUTES",
    "DEFAULT_SPLIT_SIZES",
    "LookupTask",
    "TIER_NAMES",
    "TOWNS",
    "generate_entities",
    "generate_split",
    "split_of_entity",
    "write_lookup_files",
]

TIER_NAMES = {1: "known entity (memorised)", 2: "unknown entity (tool only)"}
SPLIT_SHARES = {"train": 0.70, "validation": 0.15, "test": 0.15}  # share of the unknown entities
DEFAULT_SPLIT_SIZES = {"train": 2000, "validation": 200, "test": 200}
DEFAULT_TIER_WEIGHTS = (0.5, 0.5)
KNOWN_ENTITIES = 32
UNKNOWN_ENTITIES = 480
ATTRIBUTES = ("age", "town")
AGES = range(20, 90)
TOWNS = ("Arvel", "Bostrim", "Cendra", "Dolvik", "Esmar", "Fennick", "Gorlow", "Halden",
         "Irnis", "Jovra", "Kestrel", "Lumen", "Marrow", "Nolde", "Orsk", "Pell")
ENTITIES_FILE = "lookup/entities.jsonl"

SYSTEM_PROMPT = (
    "Answer the question about the entity. If you do not know the answer, call the lookup tool "
    "(at most {max_tool_calls} calls). Give the final answer in \\boxed{{}}."
)


def _names(count: int) -> list[str]:
    """``count`` distinct made-up names (consonant-vowel syllables), in a fixed order."""
    rng = random.Random("lookup/names")
    consonants, vowels = "bdfgklmnprstvz", "aeiou"
    names: dict[str, None] = {}
    while len(names) < count:
        syllables = "".join(rng.choice(consonants) + rng.choice(vowels) for _ in range(2))
        names[(syllables + rng.choice(["", rng.choice(consonants)])).capitalize()] = None
    return list(names)


def generate_entities() -> list[dict]:
    """The knowledge base: every entity's name, facts and whether the warm start knows it.

    Example:
        >>> entities = generate_entities()
        >>> len(entities), sum(e["known"] for e in entities), entities[0]["name"]
        (512, 32, 'Tami')
    """
    rng = random.Random("lookup/facts")
    return [{"name": name, "age": str(rng.choice(AGES)), "town": rng.choice(TOWNS), "known": index < KNOWN_ENTITIES}
            for index, name in enumerate(_names(KNOWN_ENTITIES + UNKNOWN_ENTITIES))]


def split_of_entity(name: str) -> str:
    """The split an unknown entity belongs to, from a hash of its name (known ones are in all).

    Example:
        >>> split_of_entity("Tami") in SPLIT_SHARES
        True
    """
    bucket = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") / 2**64
    cumulative = 0.0
    for split, share in SPLIT_SHARES.items():
        cumulative += share
        if bucket < cumulative:
            return split
    return list(SPLIT_SHARES)[-1]  # float rounding at the very top of the range


def _tier_questions(entities: Sequence[dict], tier: int, split: str) -> list[tuple[dict, str]]:
    if tier == 1:
        chosen = [e for e in entities if e["known"]]
    elif tier == 2:
        chosen = [e for e in entities if not e["known"] and split_of_entity(e["name"]) == split]
    else:
        raise ValueError(f"tier must be 1 or 2, got {tier}")
    return [(entity, attribute) for entity in chosen for attribute in ATTRIBUTES]


def generate_split(split: str, num_examples: int, seed: int = 0,
                   tier_weights: Sequence[float] = DEFAULT_TIER_WEIGHTS) -> list[Example]:
    """``num_examples`` questions of one split, tiers mixed by ``tier_weights`` (deterministic).

    Each tier's questions in the split are cycled in a seeded shuffle, so a small pool (64
    known-entity questions) repeats rather than skewing the mix; ids stay unique.

    Example:
        >>> [e.question for e in generate_split("test", 2)]
        ['What is the age of Fugol?', 'What is the town of Zoga?']
    """
    if split not in SPLIT_SHARES:
        raise ValueError(f"unknown split {split!r}; known splits: {', '.join(SPLIT_SHARES)}")
    if len(tier_weights) != 2 or min(tier_weights) < 0 or sum(tier_weights) <= 0:
        raise ValueError(f"tier_weights must be 2 non-negative numbers, not all 0; got {tier_weights}")
    entities = generate_entities()
    counts = [int(num_examples * w / sum(tier_weights)) for w in tier_weights]
    for tier_index in range(num_examples - sum(counts)):  # hand out the rounding remainder
        counts[tier_index % 2] += 1
    rows = []
    for tier, count in zip((1, 2), counts, strict=True):
        pool = _tier_questions(entities, tier, split)
        random.Random(f"{seed}/{split}/{tier}").shuffle(pool)
        rows += [(tier, pool[i % len(pool)]) for i in range(count)]
    random.Random(f"{seed}/{split}/order").shuffle(rows)
    return [
        Example(id=f"lookup-{split}-{index:05d}", question=f"What is the {attribute} of {entity['name']}?",
                answer=entity[attribute], metadata={"tier": tier, "entity": entity["name"], "attribute": attribute})
        for index, (tier, (entity, attribute)) in enumerate(rows)
    ]


def write_lookup_files(out_dir: str | Path, sizes: dict[str, int] | None = None, seed: int = 0) -> dict[str, Path]:
    """Write ``entities.jsonl`` (the tool's table) and ``{split}.jsonl`` for every split."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"entities": out_dir / "entities.jsonl"}
    with open(paths["entities"], "w", encoding="utf-8") as file:
        for entity in generate_entities():
            file.write(json.dumps(entity) + "\n")
    for split, size in (sizes or DEFAULT_SPLIT_SIZES).items():
        paths[split] = out_dir / f"{split}.jsonl"
        with open(paths[split], "w", encoding="utf-8") as file:
            for example in generate_split(split, size, seed=seed):
                row = {"id": example.id, "question": example.question, "answer": example.answer, **example.metadata}
                file.write(json.dumps(row) + "\n")
    return paths


def _normalise(text: str) -> str:
    return " ".join(text.split()).lower()


class LookupTask(BoxedAnswerTask):
    """Questions about made-up entities; final answer in ``\\boxed{}``; tool: ``lookup`` (budget 2).

    Args:
        max_tool_calls: tool-call budget per completion.
        instructions: put ``SYSTEM_PROMPT`` in the prompt (for a chat model meeting the task
            cold); off by default, as for arithmetic: the warm-started tiny policy learned the
            format from its traces.
    """

    system_prompt = SYSTEM_PROMPT
    name = "lookup"
    local_splits = {
        split: LocalSplit(f"lookup/{split}.jsonl", metadata_fields=("tier", "entity", "attribute"))
        for split in SPLIT_SHARES
    }

    def __init__(self, max_tool_calls: int = 2, instructions: bool = False) -> None:
        super().__init__(max_tool_calls)
        self.instructions = instructions

    def messages(self, example: Example) -> list[dict[str, str]]:
        if self.instructions:
            return super().messages(example)
        return [{"role": "system", "content": ""}, {"role": "user", "content": example.question}]

    def is_correct(self, completion_text: str, example: Example) -> bool:
        """The last ``\\boxed{}`` equals the answer, ignoring case and spacing (``orsk`` = ``Orsk``)."""
        predicted = self.extract_answer(completion_text)
        answers = [example.answer] if isinstance(example.answer, str) else list(example.answer)
        return predicted is not None and _normalise(predicted) in {_normalise(a) for a in answers}

    @cached_property
    def table(self) -> KeyValueTable:
        """The knowledge base the tool reads (``data/lookup/entities.jsonl``)."""
        with open(data_path(ENTITIES_FILE), encoding="utf-8") as file:
            rows = [json.loads(line) for line in file if line.strip()]
        return KeyValueTable({k: v for k, v in row.items() if k != "known"} for row in rows)

    def tools(self) -> list[Callable[..., str]]:
        return [make_lookup_tool(self.table)]


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: regenerate the lookup task's files."""
    parser = argparse.ArgumentParser(description="Write the synthetic lookup task's table and splits as JSONL.")
    parser.add_argument("--out", default="data/lookup", help="output folder (default: data/lookup)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (split membership does not depend on it)")
    for split, size in DEFAULT_SPLIT_SIZES.items():
        parser.add_argument(f"--{split}", type=int, default=size, help=f"rows in {split} (default {size})")
    args = parser.parse_args(argv)
    sizes = {split: getattr(args, split) for split in DEFAULT_SPLIT_SIZES}
    for name, path in write_lookup_files(args.out, sizes, seed=args.seed).items():
        print(f"{name} -> {path}")


if __name__ == "__main__":
    main()
