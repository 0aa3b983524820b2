#!/usr/bin/env python3
"""Seconds per GRPO step on the tiny CPU policy: 2026-11-30's configuration, today's default, the floor.

One run, interleaved in rounds (so load drift hits every side alike), one thread, same task:

* **legacy** - the configuration of 2026-11-30 (``benchmarks/fixtures/tiny_policy_2026-11-30``:
  2 layers, byte tokenizer, 175-token prompt with instructions, LoRA rank 16), ``torl_grpo``;
* **default** - today's defaults (the shipped tiny policy, compact prompt and protocol tokens,
  full fine-tuning, the loss pass in 4 length-sorted chunks), ``torl_grpo`` (also with one
  padded loss batch, ``length_buckets=0``, to measure that idea) and ``paretopo`` (its default stage-1 outcome source,
  amortised over stage 1: every step of the measured window is a stage-1 step);
* **floor** of each configuration's own batch: a bare transformers forward + backward over the
  same token tensors (no TRL, no PEFT, no optimiser), plus a bare KV-cached decode (prefill,
  then one token per row per step, argmax) for as many steps as the batch's longest completion.

A step's time is the trainer's whole wall time per optimiser step after the first (TRL's
``train_runtime`` minus the first ``step_time``, over the remaining steps), so callbacks such
as stage 1's validation evaluation count. Targets (issue 9): default step <= 2.5x its floor and
>= 4x faster than the legacy step; ParetoPO / GRPO step <= 1.05 (issue 15).

    python benchmarks/bench_trainer.py [--rounds 2] [--steps 8] [--prompts 8] [--generations 8]
    python benchmarks/bench_trainer.py --batch-lengths   # the floor batch's completion lengths
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from paretopo.agent.models import load_policy
from paretopo.agent.rollout import generate_rollouts
from paretopo.tasks.arithmetic import ArithmeticTask
from paretopo.training.train import RunSettings, tiny_policy_path, train_run

LEGACY_POLICY = Path(__file__).parent / "fixtures" / "tiny_policy_2026-11-30"


def _configurations(args: argparse.Namespace, root: Path) -> dict[str, tuple[str, RunSettings, dict]]:
    common = dict(max_steps=args.steps, prompts_per_step=args.prompts, num_generations=args.generations,
                  save_steps=10_000, checkpoint_eval=False, test_examples=1, progress=False)
    legacy = RunSettings(model=str(LEGACY_POLICY), task=ArithmeticTask(instructions=True), lora=True,
                         learning_rate=2e-3, tools_in_prompt=False, length_buckets=0, **common)
    default = RunSettings(**common)
    stage1_all_steps = {"stage1_steps": args.steps}
    return {
        "legacy torl_grpo": ("torl_grpo", legacy, {}),
        "default torl_grpo": ("torl_grpo", default, {}),
        "default torl_grpo, one padded loss batch (length_buckets=0)": ("torl_grpo", replace(default, length_buckets=0),
                                                                         {}),
        "default paretopo": ("paretopo", default, stage1_all_steps),
    }


def _step_seconds(method: str, settings: RunSettings, overrides: dict, run_dir: Path) -> float:
    result = train_run(method, replace(settings, run_dir=str(run_dir)), method_overrides=overrides)
    history = result.trainer.state.log_history
    runtime = next(entry["train_runtime"] for entry in reversed(history) if "train_runtime" in entry)
    first_step = next(entry["step_time"] for entry in history if "step_time" in entry)
    return (runtime - first_step) / (settings.max_steps - 1)


def _batch_tensors(settings: RunSettings, task: ArithmeticTask, model, tokenizer, tools_in_prompt: bool):
    """A real batch of the configuration (prompts x generations rollouts) as padded token tensors."""
    examples = task.load("train")[: settings.prompts_per_step]
    rollouts = generate_rollouts(model, tokenizer, [task.messages(e) for e in examples],
                                 tools={t.__name__: t for t in task.tools()}, num_samples=settings.num_generations,
                                 max_new_tokens=settings.max_completion_length, max_tool_calls=task.max_tool_calls,
                                 seed=0, answer_extractor=task.extract_answer, tools_in_prompt=tools_in_prompt)
    prompt_width = max(len(r.prompt_ids) for r in rollouts)
    completion_width = max(len(r.completion_ids) for r in rollouts)
    pad = tokenizer.pad_token_id
    ids = torch.full((len(rollouts), prompt_width + completion_width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, rollout in enumerate(rollouts):  # prompts left-padded, completions right-padded, as TRL does
        start = prompt_width - len(rollout.prompt_ids)
        sequence = rollout.prompt_ids + rollout.completion_ids
        ids[row, start : start + len(sequence)] = torch.tensor(sequence)
        mask[row, start : start + len(sequence)] = 1
    return ids, mask, prompt_width, completion_width


def _floor_seconds(model, ids, mask, prompt_width, completion_width, repeats: int = 3) -> tuple[float, float]:
    """(forward + backward, prefill + decode) seconds: medians of ``repeats``."""
    model.train()
    backward = []
    for _ in range(repeats):
        started = time.perf_counter()
        logits = model(input_ids=ids, attention_mask=mask).logits[:, prompt_width - 1 : -1]
        logps = logits.float().log_softmax(-1).gather(-1, ids[:, prompt_width:, None]).squeeze(-1)
        (-(logps * mask[:, prompt_width:]).sum() / mask[:, prompt_width:].sum()).backward()
        backward.append(time.perf_counter() - started)
        model.zero_grad(set_to_none=True)
    model.eval()
    decode = []
    prompt_ids, prompt_mask = ids[:, :prompt_width], mask[:, :prompt_width]
    with torch.no_grad():
        for _ in range(repeats):
            started = time.perf_counter()
            output = model(input_ids=prompt_ids, attention_mask=prompt_mask, use_cache=True, logits_to_keep=1)
            cache, token = output.past_key_values, output.logits[:, -1].argmax(-1, keepdim=True)
            attention = torch.cat([prompt_mask, torch.ones((len(ids), completion_width), dtype=torch.long)], 1)
            position = prompt_mask.sum(-1, keepdim=True)
            for step in range(completion_width - 1):
                output = model(input_ids=token, attention_mask=attention[:, : prompt_width + step + 1],
                               position_ids=position + step, past_key_values=cache, use_cache=True)
                cache, token = output.past_key_values, output.logits[:, -1].argmax(-1, keepdim=True)
            decode.append(time.perf_counter() - started)
    return statistics.median(backward), statistics.median(decode)


def _floors(configurations) -> dict[str, dict[str, float]]:
    floors = {}
    for name in ("legacy torl_grpo", "default torl_grpo"):
        _, settings, _ = configurations[name]
        model, tokenizer = load_policy(settings.model or str(tiny_policy_path()), lora=False)
        task = settings.task if not isinstance(settings.task, str) else ArithmeticTask()
        ids, mask, prompt_width, completion_width = _batch_tensors(settings, task, model, tokenizer,
                                                                   tools_in_prompt=False)
        backward, decode = _floor_seconds(model, ids, mask, prompt_width, completion_width)
        floors[name] = {"forward_backward": backward, "decode": decode, "prompt_tokens": prompt_width,
                        "new_tokens": completion_width}
    return floors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (medians are reported)")
    parser.add_argument("--steps", type=int, default=8, help="optimiser steps per run (the first is not timed)")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--generations", type=int, default=8)
    parser.add_argument("--batch-lengths", action="store_true",
                        help="only print the completion lengths of the default configuration's floor batch (what "
                             "TRL pads to its longest) and exit")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.batch_lengths:
        settings = RunSettings(prompts_per_step=args.prompts, num_generations=args.generations)
        model, tokenizer = load_policy(str(tiny_policy_path()), lora=False)
        _, mask, prompt_width, completion_width = _batch_tensors(settings, ArithmeticTask(), model, tokenizer,
                                                                 tools_in_prompt=False)
        lengths = sorted(mask[:, prompt_width:].sum(1).tolist())
        print(f"{len(lengths)} completions, padded to {completion_width} tokens; lengths: {lengths}")
        return
    root = Path(tempfile.mkdtemp(prefix="paretopo-bench-"))
    configurations = _configurations(args, root)
    steps: dict[str, list[float]] = {name: [] for name in configurations}
    floor_rounds = []
    for round_index in range(args.rounds):
        for name, (method, settings, overrides) in configurations.items():
            steps[name].append(_step_seconds(method, settings, overrides, root / f"{round_index}-{name.replace(' ', '-')}"))
        floor_rounds.append(_floors(configurations))

    def floor_of(name: str, key: str) -> float:
        return statistics.median(r[name][key] for r in floor_rounds)

    step = {name: statistics.median(values) for name, values in steps.items()}
    print(f"{time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, one thread, "
          f"{args.prompts} prompts x {args.generations} completions, {args.steps} steps per run, {args.rounds} rounds")
    print("| configuration | s/step | floor fwd+bwd | floor prefill+decode | floor | step / floor | batch (prompt + new tokens) |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for name in configurations:
        floor_name = "legacy torl_grpo" if name.startswith("legacy") else "default torl_grpo"  # same batch
        backward, decode = floor_of(floor_name, "forward_backward"), floor_of(floor_name, "decode")
        tokens = f"{floor_of(floor_name, 'prompt_tokens'):.0f} + {floor_of(floor_name, 'new_tokens'):.0f}"
        print(f"| {name} | {step[name]:.3f} | {backward:.3f} | {decode:.3f} | {backward + decode:.3f} | "
              f"{step[name] / (backward + decode):.2f}x | {tokens} |")
    default_floor = floor_of("default torl_grpo", "forward_backward") + floor_of("default torl_grpo", "decode")
    print(f"\ndefault step / its floor: {step['default torl_grpo'] / default_floor:.2f}x (target <= 2.5x)")
    print(f"legacy step / default step: {step['legacy torl_grpo'] / step['default torl_grpo']:.2f}x (target >= 4x)")
    print(f"ParetoPO / GRPO step with defaults: {step['default paretopo'] / step['default torl_grpo']:.3f} "
          "(target <= 1.05)")


if __name__ == "__main__":
    main()
