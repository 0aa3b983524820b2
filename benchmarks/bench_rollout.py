#!/usr/bin/env python3
"""Rollout speed: paretopo's KV-cached tool loop versus transformers' ``generate``, tiny policy.

B prompts x G samples x N new tokens on one CPU thread, with the compact arithmetic prompt the
tiny policy was warm-started on, and with the tools block rendered into the prompt (what a
real chat model sees). ``generate`` is single-turn and runs no tools, so it is a lower bound
for what a tool loop must do; the loop stops rows at their answer, ``generate`` runs to N.

    python benchmarks/bench_rollout.py [--prompts 8] [--samples 8] [--tokens 64]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from paretopo.agent.models import load_policy
from paretopo.agent.rollout import generate_rollouts
from paretopo.tasks import get_task
from paretopo.training.train import tiny_policy_path


def median_seconds(call, repeats: int = 5) -> float:
    call()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, tokenizer = load_policy(tiny_policy_path(), lora=False)
    task = get_task("arithmetic")
    chats = [task.messages(e) for e in task.load("test")[: args.prompts]]
    tools = {tool.__name__: tool for tool in task.tools()}
    print(f"tiny policy, {args.prompts} prompts x {args.samples} samples x {args.tokens} new tokens, one thread")
    print("| prompt | prompt tokens | paretopo.agent.rollout (tool loop, KV cache) | model.generate (single turn) |")
    print("|---|---:|---:|---:|")
    for label, with_tools in (("compact", False), ("with tools block", True)):
        text = tokenizer.apply_chat_template(chats[0], tools=list(tools.values()) if with_tools else None,
                                             add_generation_prompt=True, tokenize=False)
        loop = median_seconds(lambda w=with_tools: generate_rollouts(
            model, tokenizer, chats, tools=tools, num_samples=args.samples, max_new_tokens=args.tokens,
            max_tool_calls=task.max_tool_calls, tools_in_prompt=w, seed=0))
        texts = [tokenizer.apply_chat_template(c, tools=list(tools.values()) if with_tools else None,
                                               add_generation_prompt=True, tokenize=False) for c in chats]
        tokenizer.padding_side = "left"
        batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)

        def plain_generate(batch=batch) -> None:
            with torch.no_grad():
                model.generate(**batch, do_sample=True, num_return_sequences=args.samples,
                               max_new_tokens=args.tokens, min_new_tokens=args.tokens,
                               pad_token_id=tokenizer.pad_token_id)

        generate = median_seconds(plain_generate)
        prompt_tokens = len(tokenizer.encode(text, add_special_tokens=False))
        print(f"| {label} | {prompt_tokens} | {loop:.2f} s | {generate:.2f} s |")


if __name__ == "__main__":
    main()
