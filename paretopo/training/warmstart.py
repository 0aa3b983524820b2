"""Warm start of the tiny CPU policy: supervised traces with a real accuracy/efficiency conflict.

RL from a random policy never sees a well-formed tool call, so the demo's policy is first
taught the conversation format by supervised fine-tuning on synthetic arithmetic traces. The
traces are built so that RL has something to choose, and a reason to:

* **behaviour is diverse**: each trace answers directly (``none``), calls the calculator once
  (``one``) or twice with the same expression (``two``, the redundant habit accuracy-only
  training keeps); shares depend a little on the tier (``BEHAVIOUR_SHARES``) and every
  behaviour appears in every tier;
* **direct answers are a gamble where they should be**: sums without a carry (tier 1) are
  answered right; on sums with a carry (tier 2) a direct answer in the traces *forgets the
  carry* with probability ``carry_slip`` (the answer is 10 too small), so the policy learns a
  direct answer that is right only part of the time; products (tier 3) are beyond a model this
  size, so direct answers there are wrong: the traces teach their format but put no loss on
  their digits (a product the model cannot compute, learned as a guess, made it "guess" after
  a tool response too and copy the calculator's result wrongly). After a calculator call the
  answer is the tool's.

So one call is safe but costs efficiency on tiers 1-2, no call is free and right on tier 1,
and on tier 3 a call is needed: the optimum depends on the question. Each trace is
token-for-token what ``paretopo.agent.rollout`` produces (the prompt rendered by the chat template,
the tool call, the environment's response from ``ToolProtocol.response_ids``, the answer); the
loss covers the model's tokens only.

Training is a plain PyTorch loop (AdamW, warm-up + cosine) on one CPU thread. The result is
shipped in ``data/tiny_policy/`` with ``warmstart.json`` (config, per-tier behaviour of the
saved policy on the test split, sha256); ``paretopo warmstart`` regenerates it.

**The lookup task** (``paretopo warmstart --task lookup`` -> ``data/tiny_policy_lookup``) uses
the same loop with its own :class:`TraceRecipe` (``RECIPES``): one call is
``lookup(entity, attribute)``; direct answers on known entities (tier 1) are right and
supervised, so the policy memorises those 64 facts; direct answers on unknown entities (tier 2)
teach the format but put no loss on the value (a guess; the traces cannot know it); and the
shares lean towards calling twice on unknown entities (``LOOKUP_BEHAVIOUR_SHARES``), so the
greedy policy calls redundantly and RL has calls to save.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from paretopo.agent import tiny_policy_path
from paretopo.agent.models import build_tiny_policy, build_tiny_tokenizer, save_tiny_policy
from paretopo.agent.rollout import ToolProtocol
from paretopo.tasks.base import Example, Task

__all__ = ["BEHAVIOUR_SHARES", "LOOKUP_BEHAVIOUR_SHARES", "RECIPES", "TraceRecipe", "WarmStartConfig", "build_trace",
           "default_policy_path", "recipe_for", "warm_start", "weights_sha256"]

# tier -> (none, one, two) shares
BEHAVIOUR_SHARES: dict[int, tuple[float, float, float]] = {
    1: (0.55, 0.30, 0.15),
    2: (0.40, 0.40, 0.20),
    3: (0.25, 0.50, 0.25),
}
UNSUPERVISED_DIRECT_TIERS = (3,)
"""Tiers whose direct answers' digits carry no loss (products: beyond a model this size)."""
LOOKUP_BEHAVIOUR_SHARES: dict[int, tuple[float, float, float]] = {
    1: (0.45, 0.30, 0.25),  # known entity: a direct answer is right, yet most traces call
    2: (0.20, 0.35, 0.45),  # unknown entity: some direct guesses, and mostly a redundant second call
}


def weights_sha256(folder: str | Path) -> str:
    """sha256 of a saved policy's ``model.safetensors`` (recorded in ``warmstart.json``)."""
    return hashlib.sha256((Path(folder) / "model.safetensors").read_bytes()).hexdigest()


def default_policy_path(task_name: str = "arithmetic") -> Path:
    """Where a task's shipped warm-started tiny policy lives (``paretopo.agent.tiny_policy_path``)."""
    return tiny_policy_path(task_name)


@dataclass
class WarmStartConfig:
    steps: int = 1500
    batch_size: int = 128
    learning_rate: float = 3e-3
    weight_decay: float = 0.01
    warmup_steps: int = 100
    hidden_size: int = 64
    num_layers: int = 3
    carry_slip: float = 0.6  # share of tier-2 direct answers in the traces that forget the carry
    seed: int = 0
    eval_every: int = 500
    eval_examples: int = 60
    final_samples: int = 4  # sampled completions per test question for the recorded tier table
    init: str = ""  # continue from this saved policy instead of a random one
    shares: str = ""  # JSON {tier: [none, one, two]} overriding BEHAVIOUR_SHARES
    polish_steps: int = 400  # then this many steps more from the result, as a fresh `--init` run ...
    polish_learning_rate: float = 5e-4  # ... at this peak learning rate (0 steps: no polish)

    @classmethod
    def for_task(cls, task_name: str) -> WarmStartConfig:
        """The config ``paretopo warmstart --task <task_name>`` uses: these defaults and the task's recipe."""
        return cls(**recipe_for(task_name).config)


def _call_text(tool_name: str, arguments: dict[str, str]) -> str:
    return f'<tool_call>\n{{"name": "{tool_name}", "arguments": {json.dumps(arguments)}}}\n</tool_call>'


def direct_answer(example: Example, rng: random.Random, carry_slip: float) -> str:
    """The answer a trace gives without the calculator (see the module docstring).

    Example:
        >>> e = Example("x", "What is 47+8?", "55", {"tier": 2, "expression": "47+8"})
        >>> direct_answer(e, random.Random(0), carry_slip=1.0)
        '45'
    """
    if int(example.metadata.get("tier", 0)) == 2 and rng.random() < carry_slip:
        return str(int(example.answer) - 10)
    return str(example.answer)


def _right_answer(example: Example, rng: random.Random, carry_slip: float) -> str:
    """A direct answer that is always right (the lookup task: known facts; unknown ones carry no loss)."""
    return str(example.answer)


def _arithmetic_call(example: Example) -> dict[str, str]:
    return {"expression": str(example.metadata.get("expression") or example.question.split()[-1].rstrip("?"))}


def _lookup_call(example: Example) -> dict[str, str]:
    return {"entity": str(example.metadata["entity"]), "attribute": str(example.metadata["attribute"])}


@dataclass(frozen=True)
class TraceRecipe:
    """What one task's supervised traces look like, and where its policy is shipped."""

    tool_name: str
    call_arguments: Callable[[Example], dict[str, str]]  # the one right call for a question
    behaviour_shares: dict[int, tuple[float, float, float]]  # tier -> (none, one, two)
    unsupervised_direct_tiers: tuple[int, ...]  # tiers whose direct answers' values carry no loss
    direct_answer: Callable[[Example, random.Random, float], str]  # (example, rng, carry_slip) -> answer
    tokenizer_pieces: tuple[str, ...] = ()  # single tokens beside the protocol's (build_tiny_tokenizer's extra_pieces)
    config: dict = field(default_factory=dict)  # WarmStartConfig fields that differ for this task


def recipe_for(task_name: str) -> TraceRecipe:
    """The warm-start recipe of a task; ValueError naming the tasks that have one."""
    if task_name not in RECIPES:
        raise ValueError(f"no warm start for task {task_name!r}; tasks with one: {', '.join(RECIPES)}")
    return RECIPES[task_name]


class TraceBuilder:
    """Token ids and loss masks of supervised traces; the fixed pieces are encoded once."""

    def __init__(self, task: Task, tokenizer, protocol: ToolProtocol, recipe: TraceRecipe | None = None):
        self.task, self.tokenizer, self.protocol = task, tokenizer, protocol
        self.recipe = recipe or recipe_for(task.name)
        self._prompts: dict[str, list[int]] = {}

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def prompt(self, example: Example) -> list[int]:
        if example.id not in self._prompts:
            text = self.tokenizer.apply_chat_template(self.task.messages(example), add_generation_prompt=True,
                                                      tokenize=False)
            self._prompts[example.id] = self._encode(text)
        return self._prompts[example.id]

    def __call__(self, example: Example, behaviour: str, answer: str) -> tuple[list[int], list[int]]:
        """(ids, mask) of one trace; mask 1 on the model's tokens, 0 on prompt and tool output."""
        recipe = self.recipe
        ids = list(self.prompt(example))
        mask = [0] * len(ids)
        calls = {"none": 0, "one": 1, "two": 2}[behaviour]
        for _ in range(calls):
            call = self._encode(_call_text(recipe.tool_name, recipe.call_arguments(example)))
            response = self.protocol.response_ids(recipe.tool_name, str(example.answer))
            ids += call + response
            mask += [1] * len(call) + [0] * len(response)
        if calls == 0 and int(example.metadata.get("tier", 0)) in recipe.unsupervised_direct_tiers:
            # the format is taught, the digits are not: a guess this model cannot learn would only
            # teach it to guess, and that habit leaked into copying the calculator's result
            opening, digits, closing = self._encode("\\boxed{"), self._encode(answer), self._encode("}")
            ids += opening + digits + closing + [self.protocol.turn_end_id]
            mask += [1] * len(opening) + [0] * len(digits) + [1] * (len(closing) + 1)
            return ids, mask
        final = self._encode(f"\\boxed{{{answer if calls == 0 else example.answer}}}") + [self.protocol.turn_end_id]
        ids += final
        mask += [1] * len(final)
        return ids, mask


def build_trace(
    task: Task, example: Example, behaviour: str, tokenizer, protocol: ToolProtocol, answer: str | None = None
) -> tuple[list[int], list[int]]:
    """Token ids and loss mask (1 = model token) of one supervised trace.

    ``answer`` is what a direct answer says (default: the right one); after a call the trace
    always gives the tool's result.
    """
    return TraceBuilder(task, tokenizer, protocol)(example, behaviour, str(example.answer) if answer is None else answer)


RECIPES: dict[str, TraceRecipe] = {
    "arithmetic": TraceRecipe("calculator", _arithmetic_call, BEHAVIOUR_SHARES, UNSUPERVISED_DIRECT_TIERS,
                              direct_answer),
    # the call's names as single tokens, as "calculator" and "expression" are: ~20 tokens a call, not ~40
    "lookup": TraceRecipe("lookup", _lookup_call, LOOKUP_BEHAVIOUR_SHARES, (2,), _right_answer,
                          tokenizer_pieces=("lookup", "entity", "attribute", '", "'),
                          # 1,000 steps and no polish: that already met issue 22's targets (warmstart.json)
                          config={"steps": 1000, "polish_steps": 0}),
}


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


def _tier_table(model, tokenizer, task: Task, examples: Sequence[Example], samples: int, seed: int,
                greedy: bool = False) -> list[dict]:
    from paretopo.evaluation.evaluate import behaviour_table, evaluate_policy

    result = evaluate_policy(model, tokenizer, task, examples, num_samples=samples, greedy=greedy, temperature=1.0,
                             max_new_tokens=160, tools_in_prompt=False, progress=False, seed=seed)
    return behaviour_table(result.rows, "tier").to_dicts()


def warm_start(task: Task, out_dir: str | Path | None = None, config: WarmStartConfig | None = None,
               progress: bool = True) -> Path:
    """Train the tiny policy on mixed-behaviour traces of ``task``'s train split and save it.

    Progress (loss, and a sampled per-tier table on the validation split every ``eval_every``
    steps) goes to the progress bar; the saved ``warmstart.json`` records the config, that
    history, the per-tier table of the saved policy on the *test* split (``final_samples``
    sampled completions per question: the numbers the README quotes), the same under greedy
    decoding (``test_greedy_by_tier``) and the weights' sha256.
    """
    recipe = recipe_for(task.name)
    config = config or WarmStartConfig.for_task(task.name)
    out = Path(out_dir) if out_dir is not None else default_policy_path(task.name)
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    if config.init:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(config.init)
        model = AutoModelForCausalLM.from_pretrained(config.init)
    else:
        tokenizer = build_tiny_tokenizer(extra_pieces=recipe.tokenizer_pieces)
        model = build_tiny_policy(tokenizer, hidden_size=config.hidden_size, num_layers=config.num_layers,
                                  seed=config.seed)
    shares = {int(k): tuple(v) for k, v in json.loads(config.shares).items()} if config.shares else recipe.behaviour_shares
    protocol = ToolProtocol(tokenizer, model)
    traces = TraceBuilder(task, tokenizer, protocol, recipe)
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
        batch = []
        for example in rng.choices(examples, k=config.batch_size):
            behaviour = _sample_behaviour(int(example.metadata.get("tier", 2)), rng, shares)
            batch.append(traces(example, behaviour, recipe.direct_answer(example, rng, config.carry_slip)))
        input_ids, labels, attention = _batch(batch, tokenizer.pad_token_id)
        loss = model(input_ids=input_ids, attention_mask=attention, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if (step + 1) % config.eval_every == 0 and step + 1 < config.steps:
            model.eval()
            history.append({"step": step + 1, "loss": loss.item(), "seconds": time.perf_counter() - started,
                            "validation_by_tier": _tier_table(model, tokenizer, task, validation, 2, step)})
            tqdm.write(json.dumps(history[-1]))
            model.train()
    model.eval()
    train_seconds = time.perf_counter() - started
    test_by_tier = _tier_table(model, tokenizer, task, task.load("test"), config.final_samples, config.seed)
    greedy_by_tier = _tier_table(model, tokenizer, task, task.load("test"), 1, config.seed, greedy=True)
    save_tiny_policy(model, tokenizer, out)
    previous = []
    if config.init and (Path(config.init) / "warmstart.json").exists():
        previous = [json.loads((Path(config.init) / "warmstart.json").read_text())]
    record = {"config": config.__dict__, "task": task.name, "behaviour_shares": shares,
              "train_seconds": round(train_seconds, 1), "final_loss": loss.item(), "history": history,
              "test_by_tier": test_by_tier, "test_samples_per_question": config.final_samples,
              "test_greedy_by_tier": greedy_by_tier,
              "continued_from": previous, "model_sha256": weights_sha256(out)}
    (out / "warmstart.json").write_text(json.dumps(record, indent=2) + "\n")
    return out


def build_tiny_policy_from_scratch(task: Task, out_dir: str | Path | None = None,
                                   config: WarmStartConfig | None = None, progress: bool = True) -> Path:
    """What ``paretopo warmstart`` runs: the warm start, then its polish as a continuation.

    The polish is exactly ``warm_start(init=<first result>, steps=polish_steps,
    learning_rate=polish_learning_rate, warmup_steps=20)``: a fresh optimiser and schedule over
    the first result (measured: the first 1,500 steps leave easy sums at ~0.93 direct accuracy,
    the polish lifts them over the 0.95 target).
    """
    import dataclasses
    import tempfile

    config = config or WarmStartConfig.for_task(task.name)
    out = Path(out_dir) if out_dir is not None else default_policy_path(task.name)
    if config.polish_steps <= 0:
        return warm_start(task, out, config, progress=progress)
    with tempfile.TemporaryDirectory(prefix="paretopo-warmstart-") as first:
        warm_start(task, first, dataclasses.replace(config, polish_steps=0), progress=progress)
        polish = dataclasses.replace(config, init=first, steps=config.polish_steps,
                                     learning_rate=config.polish_learning_rate, warmup_steps=20, polish_steps=0)
        return warm_start(task, out, polish, progress=progress)


def main(argv: Sequence[str] | None = None) -> None:
    from paretopo.tasks import get_task

    parser = argparse.ArgumentParser(description="Warm-start the tiny CPU policy on a task (arithmetic or lookup).")
    parser.add_argument("--task", default="arithmetic", choices=list(RECIPES), help="task (default: arithmetic)")
    parser.add_argument("--out", default=None, help="output folder (default: data/tiny_policy, "
                                                     "data/tiny_policy_lookup for lookup)")
    task_name = parser.parse_known_args(argv)[0].task
    for name, value in WarmStartConfig.for_task(task_name).__dict__.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value,
                            help=f"(default {value!r})")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    config = WarmStartConfig(**{k: getattr(args, k) for k in WarmStartConfig().__dict__})
    path = build_tiny_policy_from_scratch(get_task(task_name), args.out, config)
    print(f"saved the warm-started tiny policy to {path}")


if __name__ == "__main__":
    main()
