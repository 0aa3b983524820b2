"""Open-domain QA with a search tool (docs/method.md): HotpotQA and NQ-open.

The final answer is the last ``<answer>...</answer>`` span; it is correct when it matches any
gold answer after SQuAD normalisation (exact match, as Search-R1 grades); token F1 is available
as ``f1``. The default budget is 4 search calls, and a search returns the top 3 passages.

* ``HotpotQATask`` searches a local BM25 index over the paragraphs pooled from
  ``data/hotpotqa_dev_500.jsonl`` (built on first use, about a second) unless given another
  retriever. Split ``dev_500`` ships; ``train`` / ``validation`` (distractor setting) come from
  the Hub -- their paragraphs are not in the default index, so pass a retriever over
  ``build_hotpotqa_corpus(example.metadata for example in examples)``.
* ``NQOpenTask`` has no local passage corpus (the usual one is a 21M-passage Wikipedia dump), so
  it needs a ``retriever`` to offer a tool.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from typing import Any

from ..tools.search import BM25Retriever, Retriever, load_hotpotqa_corpus, make_search_tool
from .answers import extract_tag, qa_exact_match, qa_f1
from .base import Example, HubSplit, LocalSplit, Task, data_path

__all__ = ["HotpotQATask", "NQOpenTask"]

SYSTEM_PROMPT = (
    "Answer the question. You can call the search tool to look up Wikipedia passages (at most "
    "{max_tool_calls} calls); search only when you need to. Give the final answer, a few words "
    "without explanation, inside <answer> and </answer>, for example <answer> Beijing </answer>."
)


class _SearchQATask(Task):
    """Shared prompt, answer extraction and scoring of the QA tasks."""

    def __init__(self, max_tool_calls: int = 4, retriever: Retriever | None = None, top_k: int = 3) -> None:
        super().__init__(max_tool_calls)
        self.retriever = retriever
        self.top_k = top_k

    def messages(self, example: Example) -> list[dict[str, str]]:
        return [
            {"role": "system", "content": SYSTEM_PROMPT.format(max_tool_calls=self.max_tool_calls)},
            {"role": "user", "content": example.question},
        ]

    def extract_answer(self, completion_text: str) -> str | None:
        return extract_tag(completion_text, "answer")

    def is_correct(self, completion_text: str, example: Example) -> bool:
        return qa_exact_match(self.extract_answer(completion_text), example.answer) == 1.0

    def f1(self, completion_text: str, example: Example) -> float:
        """SQuAD token F1 of the final answer against the gold answers (0 without an answer)."""
        return qa_f1(self.extract_answer(completion_text), example.answer)

    @abstractmethod
    def _default_retriever(self) -> Retriever:
        """The retriever used when none was passed to the constructor."""

    def tools(self) -> list[Callable[[str], str]]:
        if self.retriever is None:
            self.retriever = self._default_retriever()  # built once, reused by later calls
        return [make_search_tool(self.retriever, k=self.top_k)]


def _hotpotqa_hub_example(row: dict[str, Any], index: int) -> Example:
    supporting = list(dict.fromkeys(row["supporting_facts"]["title"]))
    context = [
        # Hub sentences keep their leading spaces, so joining them restores the paragraph.
        {"title": title, "text": "".join(sentences), "is_supporting": title in supporting}
        for title, sentences in zip(row["context"]["title"], row["context"]["sentences"], strict=True)
    ]
    metadata = {"type": row["type"], "level": row["level"], "supporting_titles": supporting, "context": context}
    return Example(row["id"], row["question"], [row["answer"]], metadata)


class HotpotQATask(_SearchQATask):
    """HotpotQA (distractor); answers in ``<answer>``; tool: search (budget 4, top 3)."""

    name = "hotpotqa"
    default_splits = ("train", "dev_500", "dev_500")  # train from the Hub; the local dev sample validates
    local_splits = {
        "dev_500": LocalSplit("hotpotqa_dev_500.jsonl", "answers", ("type", "level", "supporting_titles", "context")),
    }
    hub_splits = {
        split: HubSplit("hotpotqa/hotpot_qa", "distractor", split, _hotpotqa_hub_example)
        for split in ("train", "validation")
    }

    def _default_retriever(self) -> Retriever:
        return BM25Retriever.from_passages(load_hotpotqa_corpus(data_path("hotpotqa_dev_500.jsonl")))


def _nq_open_hub_converter(split: str) -> Callable[[dict[str, Any], int], Example]:
    def to_example(row: dict[str, Any], index: int) -> Example:
        return Example(f"nq-open-{split}-{index}", row["question"], list(row["answer"]))

    return to_example


class NQOpenTask(_SearchQATask):
    """NQ-open; answers in ``<answer>``; tool: search over a retriever you provide (budget 4)."""

    name = "nq_open"
    default_splits = ("train", "dev", "dev")
    local_splits = {"dev": LocalSplit("nq_open_dev.jsonl", "answers")}
    hub_splits = {
        split: HubSplit("google-research-datasets/nq_open", None, split, _nq_open_hub_converter(split))
        for split in ("train", "validation")
    }

    def _default_retriever(self) -> Retriever:
        raise ValueError(
            "NQ-open has no local passage corpus (the usual one is a 21M-passage Wikipedia dump). "
            "Pass retriever=... to NQOpenTask / get_task('nq_open', retriever=...), e.g. a "
            "BM25Retriever or DenseRetriever over your own passages."
        )
