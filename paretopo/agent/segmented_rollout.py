"""Tool-using rollouts through ``model.generate``, one segment per model turn: the backend for
Unsloth policies.

Why a second backend: Unsloth patches a model's forward for inference. Its decode path takes
one token per row, returns the KV cache as a tuple of ``(K, V)`` pairs, and keeps the cache it
really attends over in buffers on each attention module (``paged_attention_K/V``), sized for
the batch at the first decode step. ``paretopo.agent.rollout``'s KV-cached loop needs the
opposite: a ``DynamicCache`` it can repeat (``batch_repeat_interleave``), rows it can drop from
the cache when they finish, and multi-token chunks (a tool response fed in one forward). On an
Unsloth model the first rollout dies on the tuple cache, and converting it back to a
``DynamicCache`` would not help: the module buffers do not follow dropped rows or chunks.

How it decodes: every live row's text so far (prompt + completion) is left-padded into one
batch and handed to ``model.generate`` (Unsloth's fast generate for an Unsloth model), which
runs until each row has sampled an end-of-turn token, closed a tool call (``</tool_call>``) or
used its remaining token budget. Then, per row and with the very functions the KV-cached loop
uses (``_handle_tool_call``, ``_finish_turn``), the tool runs and its response is appended with
loss mask 0, or the row finishes; the rows still going get the next segment. A segment
re-prefills its rows' text (one prefill per tool call; ``generate`` owns its cache between
prefills, which is all Unsloth supports). Sampling is the KV-cached loop's: one logits
processor applies the temperature and top-p (``_top_p_filter``) and records the sampling
log-probability of each token, and ``generate``'s own warpers and penalties are switched off,
so a greedy rollout gives the same records and masks as the KV-cached loop
(``tests/test_segmented_rollout.py``). Sampled rollouts draw from the same distribution with
``generate``'s random stream (``seed``/``generator`` seed it), so they are not token-identical.

Why not TRL's own tool loop (``GRPOTrainer(tools=...)`` / ``environment_factory``, TRL 1.15 and
1.16): it is the same idea (generate a turn, run the tools, regenerate from the concatenated
ids), but (1) TRL runs it only when no ``rollout_func`` is given, and ParetoPO's
``rollout_func`` is how the trainer gets ``num_tool_calls``, ``tool_errors``, the finish reason
and the transcript per completion (``paretopo.training.trainer``); (2) it generates whole turns
up to ``<|im_end|>`` and parses calls afterwards, so a turn may carry several calls and the
model writes the turn's closing token, while paretopo's contract runs the call at
``</tool_call>``, one call per turn, the environment writing the close (mask 0), with its own
tool budget and error accounting; records would differ from the KV-cached loop's and from
evaluation's; (3) it lives inside the trainer, so evaluation, the apps and the notebooks could
not use it. This module keeps the contract and reuses the KV-cached loop's per-row code.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from transformers import (
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    PreTrainedTokenizerBase,
    StoppingCriteria,
    StoppingCriteriaList,
)

from paretopo.agent.models import uses_unsloth_generate
from paretopo.agent.rollout import (
    Prompt,
    Rollout,
    ToolFunction,
    ToolProtocol,
    _assemble_rollouts,
    _check_options,
    _finish_turn,
    _handle_tool_call,
    _prepare_rows,
    _RowState,
    _top_p_filter,
)

__all__ = ["generate_rollouts_segmented"]

# generate's own logits processors, all off: the recorder below is the only one (no model default
# such as Qwen2.5-Instruct's top_k=20 / repetition_penalty=1.05 may change the distribution).
# None would mean "the model's default", so each is set to its no-op value.
NEUTRAL_PROCESSING = {
    "repetition_penalty": 1.0, "encoder_repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "min_length": 0,
    "num_beams": 1, "renormalize_logits": False,
}
NEUTRAL_SAMPLING = {  # the warpers, added only when sampling
    "temperature": 1.0, "top_k": 0, "top_p": 1.0, "min_p": 0.0, "typical_p": 1.0, "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0,
}


class _SamplingRecorder(LogitsProcessor):
    """The KV-cached loop's sampling distribution, and the log-probability of each chosen token.

    ``generate`` calls a logits processor once per new token, before choosing it; the token it
    chose is the last column of ``input_ids`` at the next call (and of the output sequences
    after the last). So each call records the previous step's choice from the previous step's
    log-probabilities, and ``finish`` records the last one.
    """

    def __init__(self, temperature: float, top_p: float, greedy: bool):
        self.temperature, self.top_p, self.greedy = temperature, top_p, greedy
        self.previous: torch.Tensor | None = None
        self.chosen: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        scores = scores.float()
        if not self.greedy:  # as rollout._Sampler: temperature, then top-p
            scores = scores / self.temperature
            if self.top_p < 1.0:
                scores = _top_p_filter(scores, self.top_p)
        self._take(input_ids[:, -1])
        self.previous = scores.log_softmax(-1)
        return scores

    def finish(self, sequences: torch.Tensor) -> torch.Tensor:
        """[steps, rows] log-probabilities of the generated tokens."""
        self._take(sequences[:, -1])
        return torch.stack(self.chosen) if self.chosen else torch.empty(0, len(sequences))

    def _take(self, tokens: torch.Tensor) -> None:
        if self.previous is not None:
            self.chosen.append(self.previous.gather(1, tokens[:, None]).squeeze(1))
            self.previous = None


class _SegmentEnd(StoppingCriteria):
    """A row's segment ends at an end-of-turn token, a closed tool call, or its token budget."""

    def __init__(self, start: int, call_end_ids: list[int], stop_ids: list[int], budget: torch.Tensor):
        self.start, self.budget = start, budget
        self.call_end = torch.tensor(call_end_ids, device=budget.device)
        self.stop_ids = torch.tensor(stop_ids, device=budget.device)

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        generated = input_ids.shape[1] - self.start
        done = torch.isin(input_ids[:, -1], self.stop_ids) | (generated >= self.budget)
        width = len(self.call_end)
        if generated >= width:
            done |= (input_ids[:, -width:] == self.call_end).all(1)
        return done


def _segment_length(new_ids: torch.Tensor, budget: int, call_end: list[int], stop_ids: list[int]) -> tuple[int, bool]:
    """(tokens of this segment, whether it ended on an event) for one row's generated ids."""
    ids = new_ids[:budget].tolist()
    width = len(call_end)
    for index, token in enumerate(ids):
        if token in stop_ids or (index + 1 >= width and ids[index + 1 - width : index + 1] == call_end):
            return index + 1, True
    return len(ids), False


@torch.no_grad()
def generate_rollouts_segmented(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Prompt],
    *,
    tools: Mapping[str, ToolFunction] | None = None,
    num_samples: int = 1,
    max_new_tokens: int = 256,
    max_tool_calls: int = 3,
    max_tool_output_tokens: int = 256,
    temperature: float = 1.0,
    top_p: float = 1.0,
    greedy: bool = False,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    answer_extractor: Callable[[str], str | None] | None = None,
    tools_in_prompt: bool = True,
    chat_template_kwargs: Mapping[str, Any] | None = None,
) -> list[Rollout]:
    """``paretopo.agent.rollout.generate_rollouts``' signature and contract, decoded with
    ``model.generate`` one model turn at a time (see the module docstring).

    ``seed`` / ``generator`` seed ``generate``'s sampling (through a forked global RNG, so the
    caller's stream is untouched); without either, the global RNG is used as is.
    """
    _check_options(num_samples, max_new_tokens, max_tool_calls, max_tool_output_tokens, greedy, temperature, top_p)
    tools = dict(tools or {})
    protocol = ToolProtocol(tokenizer, model)
    device = next(model.parameters()).device
    if generator is None and seed is not None:
        generator = torch.Generator(device=device).manual_seed(seed)
    prompt_ids, rows = _prepare_rows(tokenizer, prompts, tools, num_samples, tools_in_prompt, chat_template_kwargs)
    pad_id = protocol.turn_end_id if tokenizer.pad_token_id is None else tokenizer.pad_token_id
    budget = max_new_tokens
    out_ids = torch.full((len(rows), budget), pad_id, dtype=torch.long)
    out_mask = torch.zeros((len(rows), budget), dtype=torch.long)
    out_logprobs = torch.full((len(rows), budget), math.nan)
    cursor = [0] * len(rows)
    live = list(range(len(rows)))
    # Unsloth's generate switches the model to inference and back itself (and restores its
    # gradient-checkpointing mode); a plain model is put in eval mode here, as by the KV-cached loop
    manage_mode = not uses_unsloth_generate(model)
    was_training = model.training
    if manage_mode:
        model.eval()
    try:
        while live:
            texts = [prompt_ids[row // num_samples] + out_ids[row, : cursor[row]].tolist() for row in live]
            remaining = [budget - cursor[row] for row in live]
            new_ids, new_logprobs = _generate_segment(
                model, texts, remaining, protocol=protocol, pad_id=pad_id, greedy=greedy,
                temperature=temperature, top_p=top_p, generator=generator, device=device,
            )
            still_live = []
            for index, row in enumerate(live):
                length, event = _segment_length(new_ids[index], remaining[index], protocol.call_end_ids,
                                                protocol.stop_ids)
                start, end = cursor[row], cursor[row] + length - 1
                out_ids[row, start : end + 1] = new_ids[index, :length]
                out_mask[row, start : end + 1] = 1
                out_logprobs[row, start : end + 1] = new_logprobs[:length, index]
                cursor[row] = end + 1
                if _settle_row(rows[row], out_ids, out_mask, row, end, event, cursor, budget=budget,
                               protocol=protocol, tools=tools, max_tool_calls=max_tool_calls,
                               max_tool_output_tokens=max_tool_output_tokens):
                    still_live.append(row)
            live = still_live
    finally:
        if manage_mode:
            model.train(was_training)

    ids, mask, logprobs = out_ids.tolist(), out_mask.tolist(), out_logprobs.tolist()
    completions = [
        (ids[row][: state.length], mask[row][: state.length],
         [None if math.isnan(value) else value for value in logprobs[row][: state.length]])
        for row, state in enumerate(rows)
    ]
    return _assemble_rollouts(tokenizer, prompt_ids, rows, completions, num_samples, answer_extractor)


def _settle_row(state: _RowState, out_ids: torch.Tensor, out_mask: torch.Tensor, row: int, end: int, event: bool,
                cursor: list[int], *, budget: int, protocol: ToolProtocol, tools: dict[str, ToolFunction],
                max_tool_calls: int, max_tool_output_tokens: int) -> bool:
    """After a segment that ended at completion index ``end``: finish the turn, or run the tool and
    append its response (mask 0). True while the row goes on. Same order of checks as the
    KV-cached loop (``rollout._decode``): the event first, then the budget."""
    token = int(out_ids[row, end])
    if event and token in protocol.stop_ids:
        _finish_turn(state, out_ids[row], protocol, end=end, reason="answer")
        return False
    if event:  # a closed tool call
        response = _handle_tool_call(state, out_ids[row], step=end, steps=budget, protocol=protocol, tools=tools,
                                     max_tool_calls=max_tool_calls, max_tool_output_tokens=max_tool_output_tokens)
        if response is None:  # over the tool budget: _handle_tool_call finished the row
            return False
        response = response[: budget - end - 1]  # every token counts toward the budget
        if response:
            out_ids[row, end + 1 : end + 1 + len(response)] = torch.tensor(response)
            out_mask[row, end + 1 : end + 1 + len(response)] = 0
        cursor[row] = end + 1 + len(response)
    if cursor[row] >= budget:
        _finish_turn(state, out_ids[row], protocol, end=budget, reason="length")
        return False
    return True


def _generate_segment(
    model: torch.nn.Module,
    texts: list[list[int]],
    remaining: list[int],
    *,
    protocol: ToolProtocol,
    pad_id: int,
    greedy: bool,
    temperature: float,
    top_p: float,
    generator: torch.Generator | None,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One ``generate`` call over the live rows: (new ids [rows, steps] on the CPU, their sampling
    log-probabilities [steps, rows] on the CPU). Rows are left-padded."""
    width = max(len(ids) for ids in texts)
    input_ids = torch.full((len(texts), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(texts), width), dtype=torch.long)
    for index, ids in enumerate(texts):
        input_ids[index, width - len(ids) :] = torch.tensor(ids)
        attention_mask[index, width - len(ids) :] = 1
    input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
    recorder = _SamplingRecorder(temperature, top_p, greedy)
    budget = torch.tensor(remaining, device=device)
    config = GenerationConfig(
        **NEUTRAL_PROCESSING, **({} if greedy else NEUTRAL_SAMPLING), do_sample=not greedy,
        max_new_tokens=max(remaining),
        eos_token_id=list(protocol.stop_ids), pad_token_id=pad_id,
    )
    options = {
        "input_ids": input_ids, "attention_mask": attention_mask, "generation_config": config,
        "logits_processor": LogitsProcessorList([recorder]),
        "stopping_criteria": StoppingCriteriaList([_SegmentEnd(width, protocol.call_end_ids, protocol.stop_ids,
                                                               budget)]),
    }
    if greedy or generator is None:
        sequences = model.generate(**options)
    else:  # generate samples from the global RNG: seed it from the caller's generator, in a fork
        segment_seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
        forked = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=forked):
            torch.manual_seed(segment_seed)
            sequences = model.generate(**options)
    if not isinstance(sequences, torch.Tensor):  # a GenerateOutput when a model default asks for one
        sequences = sequences.sequences
    logprobs = recorder.finish(sequences)
    return sequences[:, width:].cpu(), logprobs.float().cpu()
