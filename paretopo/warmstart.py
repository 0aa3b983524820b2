"""Warm start of the tiny CPU policy: supervised traces with mixed tool behaviour.

RL from a random policy never sees a well-formed tool call, so the demo's policy is first
taught the conversation format by supervised fine-tuning on synthetic arithmetic traces. The
traces mix tool behaviour on purpose, so the initial policy is *diverse* and RL has something
to choose between:

* ``none``: answer directly, ``\\boxed{<answer>}``;
* ``one``: one calculator call, then the answer;
* ``two``: the same call twice (redundant), then the answer.

Shares depend on the question's tier (easy sums are answered directly more often, products
more often with the calculator), but every behaviour appears in every tier. Each trace is
token-for-token what ``paretopo.rollout`` produces: the prompt rendered by the chat template,
the model's tool call, the environment's tool response (``ToolProtocol.response_ids``) and the
answer; the loss covers the model's tokens only.

Training is a plain PyTorch loop (AdamW, cosine schedule) on one CPU thread, a few minutes. The
result is shipped in ``data/tiny_policy/`` so the demo and the tests start from it;
``python -m paretopo.warmstart`` regenerates it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from paretopo.models import build_tiny_policy, build_tiny_tokenizer, save_tiny_policy
from paretopo.rollout import ToolProtocol
from paretopo.tasks.base import Example, Task, data_dir

__all__ = ["BEHAVIOUR_SHARES", "WarmStartConfig", "build_trace", "default_policy_path", "warm_start",
           "weights_sha256"]

# tier -> (none, one, two) shares
BEHAVIOUR_SHARES: dict[int, tuple[float, float, float]] = {
    1: (0.55, 0.30, 0.15),
    2: (0.40, 0.40, 0.20),
    3: (0.25, 0.50, 0.25),
}
TOOL_NAME = "calculator"


def weights_sha256(folder: str | Path) -> str:
    """sha256 of a saved policy's ``model.safetensors`` (recorded in ``warmstart.json``)."""
    return hashlib.sha256((Path(folder) / "model.safetensors").read_bytes()).hexdigest()


def default_policy_path() -> Path:
    """Where the shipped warm-started tiny policy lives (``data/tiny_policy``)."""
    return data_dir() / "tiny_policy"


@dataclass
class WarmStartConfig:
    steps: int = 1500
    batch_size: int = 32
    learning_rate: float = 3e-3
    weight_decay: float = 0.01
    warmup_steps: int = 50
    hidden_size: int = 64
    num_layers: int = 2
    seed: int = 0
    eval_every: int = 250
    eval_examples: int = 60
    init: str = ""  # continue from this saved policy instead of a random one
    shares: str = ""  # JSON {tier: [none, one, two]} overriding BEHAVIOUR_SHARES


def _call_text(expression: str) -> str:
    arguments = json.dumps({"expression": expression})
    return f'<tool_call>\n{{"name": "{TOOL_NAME}", "arguments": {arguments}}}\n</tool_call>'


def build_trace(
    task: Task, example: Example, behaviour: str, tokenizer, protocol: ToolProtocol
) -> tuple[list[int], list[int]]:
    """Token ids and loss mask (1 = model token) of one supervised trace."""
    expression = str(example.metadata.get("expression") or example.question.split()[-1].rstrip("?"))
    prompt = tokenizer.apply_chat_template(task.messages(example), add_generation_prompt=True, tokenize=False)
    ids = tokenizer.encode(prompt, add_special_tokens=False)
    mask = [0] * len(ids)

    def model(text: str) -> None:
        tokens = tokenizer.encode(text, add_special_tokens=False)
        ids.extend(tokens)
        mask.extend([1] * len(tokens))

    def environment(tokens: list[int]) -> None:
        ids.extend(tokens)
        mask.extend([0] * len(tokens))

    calls = {"none": 0, "one": 1, "two": 2}[behaviour]
    for _ in range(calls):
        model(_call_text(expression))
        environment(protocol.response_ids(TOOL_NAME, str(example.answer)))
    model(f"\\boxed{{{example.answer}}}")
    ids.append(protocol.turn_end_id)
    mask.append(1)
    return ids, mask


def _sample_behaviour(tier: int, rng: random.Random, table: dict[int, tuple[float, float, float]]) -> str:
    shares = table.get(tier, table[2])
    return rng.choices(("none", "one", "two"), weights=shares)[0]


def _batch(traces: Sequence[tuple[list[int], list[int]]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    length = max(len(ids) for ids, _ in traces)
    input_ids = torch.full((len(traces), length), pad_id, dtype=torch.long)
    labels = torch.full((len(traces), length), -100, dtype=torch.long)
    attention = torch.zeros((len(traces), length), dtype=torch.long)
    for row, (ids, mask) in enumerate(traces):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention[row, : len(ids)] = 1
        labels[row, : len(ids)] = torch.tensor([t if m else -100 for t, m in zip(ids, mask, strict=True)])
    return input_ids, labels, attention


def warm_start(task: Task, out_dir: str | Path | None = None, config: WarmStartConfig | None = None,
               progress: bool = True) -> Path:
    """Train the tiny policy on mixed-behaviour traces of ``task``'s train split and save it."""
    from paretopo.evaluate import evaluate_policy

    config = config or WarmStartConfig()
    out = Path(out_dir) if out_dir is not None else default_policy_path()
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    if config.init:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(config.init)
        model = AutoModelForCausalLM.from_pretrained(config.init)
    else:
        tokenizer = build_tiny_tokenizer()
        model = build_tiny_policy(tokenizer, hidden_size=config.hidden_size, num_layers=config.num_layers,
                                  seed=config.seed)
    shares = {int(k): tuple(v) for k, v in json.loads(config.shares).items()} if config.shares else BEHAVIOUR_SHARES
    protocol = ToolProtocol(tokenizer, model)
    examples = task.load("train")
    validation = task.load("validation")[: config.eval_examples]
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)

    def learning_rate(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        progress_share = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress_share))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, learning_rate)
    started = time.perf_counter()
    history = []
    model.train()
    bar = tqdm(range(config.steps), desc="warm start", disable=not progress)
    for step in bar:
        chosen = rng.sample(examples, config.batch_size)
        traces = [build_trace(task, e, _sample_behaviour(int(e.metadata.get("tier", 2)), rng, shares), tokenizer, protocol)
                  for e in chosen]
        input_ids, labels, attention = _batch(traces, tokenizer.pad_token_id)
        loss = model(input_ids=input_ids, attention_mask=attention, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if (step + 1) % config.eval_every == 0 or step + 1 == config.steps:
            result = evaluate_policy(model, tokenizer, task, validation, greedy=False, temperature=1.0,
                                     max_new_tokens=160, tools_in_prompt=False, progress=False, seed=step)
            by_tier = result.rows.group_by("meta_tier").agg(
                __import__("polars").col("correct").mean().alias("accuracy"),
                __import__("polars").col("tool_calls").mean().alias("calls"),
            ).sort("meta_tier")
            history.append({"step": step + 1, "loss": loss.item(), "accuracy": result.accuracy,
                            "mean_tool_calls": result.mean_tool_calls, "by_tier": by_tier.to_dicts(),
                            "seconds": time.perf_counter() - started})
            tqdm.write(json.dumps(history[-1]))
            model.train()
    model.eval()
    save_tiny_policy(model, tokenizer, out)
    previous = []
    if config.init and (Path(config.init) / "warmstart.json").exists():
        previous = [json.loads((Path(config.init) / "warmstart.json").read_text())]
    (out / "warmstart.json").write_text(json.dumps({"config": config.__dict__, "history": history,
                                                    "task": task.name, "behaviour_shares": shares,
                                                    "continued_from": previous,
                                                    "model_sha256": weights_sha256(out)},
                                                   indent=2) + "\n")
    return out


def main(argv: Sequence[str] | None = None) -> None:
    from paretopo.tasks import get_task

    parser = argparse.ArgumentParser(description="Warm-start the tiny CPU policy on the arithmetic task.")
    parser.add_argument("--out", default=None, help="output folder (default: data/tiny_policy)")
    for name, value in WarmStartConfig().__dict__.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    config = WarmStartConfig(**{k: getattr(args, k) for k in WarmStartConfig().__dict__})
    path = warm_start(get_task("arithmetic"), args.out, config)
    print(f"saved the warm-started tiny policy to {path}")


if __name__ == "__main__":
    main()
