#!/usr/bin/env python3
"""Quality and speed of the local HotpotQA search tool.

BM25 (bm25s, English stemmer, English stop words, title + text) over the 4,858 passages pooled
from ``data/hotpotqa_dev_500.jsonl``; each question is the query. Prints, next to the anchors
measured as anchors:

* recall@3 and recall@5 -- the share of questions with at least one ("one") / both ("both")
  gold paragraphs among the top k;
* index build time, and query latency of ``retriever.search(q, k=3)`` and of the agent-facing
  tool (search + formatting), median and 95th percentile over all questions.

    python benchmarks/bench_search.py              # all 500 questions
    python benchmarks/bench_search.py --limit 200  # the first 200 (all "bridge" questions)
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

from paretopo.tasks.base import data_path
from paretopo.tools.search import (
    BM25Retriever,
    build_hotpotqa_corpus,
    make_search_tool,
    supporting_title_recall,
)

ANCHORS = {"recall@3/one": 0.93, "recall@3/both": 0.44, "recall@5/one": 0.96, "recall@5/both": 0.59}


def latencies_ms(call, queries: list[str], repeats: int) -> list[float]:
    """Per-call latency in ms of ``call(query)`` over all queries, after one warm-up pass."""
    for query in queries:
        call(query)
    samples = []
    for _ in range(repeats):
        for query in queries:
            started = time.perf_counter()
            call(query)
            samples.append((time.perf_counter() - started) * 1e3)
    return samples


def describe(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return f"median {statistics.median(ordered):.3f} ms, p95 {p95:.3f} ms, mean {statistics.fmean(ordered):.3f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="only the first N questions")
    parser.add_argument("--repeats", type=int, default=3, help="timing passes over the questions")
    args = parser.parse_args()

    with open(data_path("hotpotqa_dev_500.jsonl"), encoding="utf-8") as file:
        all_records = [json.loads(line) for line in file]
    records = all_records[: args.limit]

    started = time.perf_counter()
    corpus = build_hotpotqa_corpus(all_records)  # the whole pool, whatever --limit says
    retriever = BM25Retriever.from_passages(corpus)
    build_s = time.perf_counter() - started

    recall = supporting_title_recall(retriever, records, ks=(3, 5))
    queries = [record["question"] for record in records]
    search_ms = latencies_ms(lambda q: retriever.search(q, k=3), queries, args.repeats)
    tool_ms = latencies_ms(make_search_tool(retriever, k=3), queries, args.repeats)

    print(f"{platform.machine()} | Python {platform.python_version()} | {len(corpus)} passages | {len(records)} questions")
    print(f"index build (pool + tokenize + index): {build_s:.2f} s")
    print(f"{'metric':<16}{'measured':>10}{'anchor':>10}{'ratio':>8}")
    for name, value in recall.items():
        anchor = ANCHORS[name]
        print(f"{name:<16}{value:>10.3f}{anchor:>10.2f}{value / anchor:>8.2f}")
    if args.limit is not None:
        print("(anchors are over all 500 questions; the first 250 are bridge questions, which score lower)")
    print(f"search(k=3):      {describe(search_ms)}")
    print(f"search tool call: {describe(tool_ms)}")


if __name__ == "__main__":
    main()
