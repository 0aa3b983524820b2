"""What every task provides, and the shared loading code.

A task bundles: named splits (a JSONL file under the repository's ``data/`` folder, or a
Hugging Face dataset read with ``datasets.load_dataset`` when online), the chat prompt, the
final-answer checker, the tools the agent may call and its default tool-call budget.

Data files are found in ``$PARETOPO_DATA_DIR`` if set, else in the ``data/`` folder next to the
``paretopo`` package (the repository checkout, which is where an editable install points).
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

__all__ = [
    "BoxedAnswerTask",
    "Example",
    "HubSplit",
    "LocalSplit",
    "Task",
    "data_dir",
    "data_path",
    "load_hub_examples",
    "read_jsonl_examples",
]


@dataclass(frozen=True)
class Example:
    """One question. ``answer`` is a string, or a list of acceptable strings for QA."""

    id: str
    question: str
    answer: str | list[str]
    metadata: dict[str, Any] = field(default_factory=dict)


def data_dir() -> Path:
    """The folder holding the shipped data files (``$PARETOPO_DATA_DIR`` overrides)."""
    override = os.environ.get("PARETOPO_DATA_DIR")
    return Path(override) if override else Path(__file__).resolve().parents[2] / "data"


def data_path(relative: str) -> Path:
    """Absolute path of a shipped data file, with a clear error when it is not there."""
    path = data_dir() / relative
    if not path.exists():
        raise FileNotFoundError(
            f"data file {relative!r} not found in {data_dir()}. The data ships with the repository "
            "checkout (install with `pip install -e .` from it), or set PARETOPO_DATA_DIR to a copy "
            "of its data/ folder."
        )
    return path


def read_jsonl_examples(
    path: str | Path, answer_field: str = "answer", metadata_fields: Sequence[str] = ()
) -> list[Example]:
    """Read examples from JSONL with fields ``id``, ``question`` and ``answer_field``.

    ``metadata_fields`` are copied into ``Example.metadata`` when present in a row. A row that
    is not JSON or lacks a required field raises ValueError naming the file and line; a file
    without any example raises ValueError too.
    """
    required = ("id", "question", answer_field)
    examples = []
    with open(path, encoding="utf-8") as file:
        for line_number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}, line {line_number}: not valid JSON ({error.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}, line {line_number}: expected a JSON object, got {type(row).__name__}")
            missing = [name for name in required if name not in row]
            if missing:
                raise ValueError(f"{path}, line {line_number}: missing field {', '.join(map(repr, missing))}")
            metadata = {name: row[name] for name in metadata_fields if name in row}
            examples.append(Example(str(row["id"]), row["question"], row[answer_field], metadata))
    if not examples:
        raise ValueError(f"{path} holds no examples (empty dataset)")
    return examples


class LocalSplit(NamedTuple):
    """A split shipped as JSONL under data/."""

    file: str  # relative to data/
    answer_field: str = "answer"  # "answers" for QA: the list of acceptable strings
    metadata_fields: tuple[str, ...] = ()  # copied into Example.metadata


@dataclass(frozen=True)
class HubSplit:
    """A split read from the Hugging Face Hub; ``to_example(row, index)`` converts one row."""

    path: str
    name: str | None
    split: str
    to_example: Callable[[dict[str, Any], int], Example]


def load_hub_examples(source: HubSplit) -> list[Example]:
    """Download (or read from the local cache) a Hub split and convert its rows."""
    from datasets import load_dataset

    rows = load_dataset(source.path, source.name, split=source.split)
    examples = [source.to_example(row, index) for index, row in enumerate(rows)]
    if not examples:
        raise ValueError(f"{source.path} ({source.name}, {source.split}) holds no examples (empty dataset)")
    return examples


class Task(ABC):
    """A tool-using task: splits, prompt, answer checker, tools and tool-call budget.

    Subclasses set ``name``, ``local_splits``, optionally ``hub_splits`` and ``default_splits``, and implement the
    abstract methods. ``max_tool_calls`` is an instance attribute so a run can change the budget.
    """

    name: ClassVar[str]
    local_splits: ClassVar[dict[str, LocalSplit]] = {}
    hub_splits: ClassVar[dict[str, HubSplit]] = {}
    # (train, validation, test) split names a run uses unless told otherwise; validation takes
    # its first RunSettings.validation_examples questions
    default_splits: ClassVar[tuple[str, str, str]] = ("train", "validation", "test")

    def __init__(self, max_tool_calls: int) -> None:
        if max_tool_calls < 0:
            raise ValueError(f"max_tool_calls must be >= 0, got {max_tool_calls}")
        self.max_tool_calls = max_tool_calls

    @property
    def splits(self) -> list[str]:
        """Split names ``load`` accepts: local files first, then Hub splits."""
        return [*self.local_splits, *(s for s in self.hub_splits if s not in self.local_splits)]

    def load(self, split: str) -> list[Example]:
        """Examples of a split; local files need no network, Hub splits do (or a warm cache)."""
        if split in self.local_splits:
            local = self.local_splits[split]
            return read_jsonl_examples(data_path(local.file), local.answer_field, local.metadata_fields)
        if split in self.hub_splits:
            return load_hub_examples(self.hub_splits[split])
        raise ValueError(f"task {self.name!r} has no split {split!r}; known splits: {', '.join(self.splits)}")

    @abstractmethod
    def messages(self, example: Example) -> list[dict[str, str]]:
        """Chat messages for one question: a system message (tool and answer format) + the user turn."""

    @abstractmethod
    def extract_answer(self, completion_text: str) -> str | None:
        """The final answer in a completion, or None when it gives none."""

    @abstractmethod
    def is_correct(self, completion_text: str, example: Example) -> bool:
        """Whether the completion's final answer is right for ``example``."""

    @abstractmethod
    def tools(self) -> list[Callable[[str], str]]:
        """Tool callables (typed, Google-style docstrings) the agent may call."""


class BoxedAnswerTask(Task):
    """A task whose prompt is a system message plus the question, answered in ``\\boxed{}``.

    Subclasses set ``system_prompt`` (may use ``{max_tool_calls}``) and implement the checker.
    """

    system_prompt: ClassVar[str]

    def messages(self, example: Example) -> list[dict[str, str]]:
        return [
            {"role": "system", "content": self.system_prompt.format(max_tool_calls=self.max_tool_calls)},
            {"role": "user", "content": example.question},
        ]

    def extract_answer(self, completion_text: str) -> str | None:
        from .answers import extract_boxed

        return extract_boxed(completion_text)
