"""Multi-turn tool-using generation: evaluation, apps, and training (through ``paretopo.training.trainer``'s
`rollout_func` adapter; this module knows nothing of TRL).

Protocol (the `<tool_call>` convention of the Qwen2.5 chat template that TRL's tool loop uses):
the model writes `<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>`; as soon as
`</tool_call>` is generated the call is parsed and run, and the environment appends the rest of
the turn and the tool result exactly as the tokenizer's chat template renders a `tool` message,
for Qwen2.5 `<|im_end|>\\n<|im_start|>user\\n<tool_response>\\n391\\n</tool_response><|im_end|>
\\n<|im_start|>assistant\\n`; then generation continues. A rollout ends on an end-of-turn token
outside a tool call ("answer"), at `max_new_tokens` completion tokens, counting appended tool
tokens ("length"), or at a tool call past the budget ("tool_budget").

Differences from TRL's `tools=` loop, on purpose: TRL lets the model write the `<|im_end|>` that
closes a tool-call turn and supports several calls per turn; here the call runs at
`</tool_call>`, so the environment writes that `<|im_end|>` (loss mask 0) and a turn carries one
call. The token sequence is the same as the chat-template rendering of the transcript.

Decoding design: one batched loop over all `B x G` rows with a KV cache (`DynamicCache`).
Prompts are left-padded and prefilled once per distinct prompt, then the cache is repeated `G`
times. Every forward feeds each live row its sampled token; a row whose token just closed a
tool call also gets the whole tool response (the environment's tokens) in that same forward,
right-aligned in a chunk as wide as the longest response, with masked holes before the shorter
rows' tokens, so the cache stays valid, nothing is re-prefilled, every row's next-token logits
sit in the last column, and a tool call costs one forward instead of one per response token.
Environment tokens are recorded with loss mask 0 while generating, so `loss_mask` lines up
with `completion_ids` by construction (as in nanochat's engine). Every token, forced or
sampled, counts toward `max_new_tokens`. Finished rows leave the batch and the cache at once.
Only events (a closed tool call, a finished row) run per-row Python; sampling and stop
detection are tensor ops over the batch. `model.generate` per segment was not chosen: each
tool call would end a segment and re-prefill or re-batch the cache, and it prefills every
sample of a prompt separately. Timings: `benchmarks/bench_rollout.py`, docs/benchmarks.md.

Tool budget: at most `max_tool_calls` tool-call turns get a tool response (malformed calls
included, so a model cannot loop on broken calls); the next `</tool_call>` is not executed and
ends the rollout with finish_reason "tool_budget", closing the turn with the end-of-turn token
(mask 0), like TRL, which stops after `max_tool_calling_iterations`. `num_tool_calls` counts
calls that reached a tool (the efficiency objective's m); `tool_errors` counts malformed JSON,
unknown tools, bad arguments and tools that raised. None of these crash the rollout: the error
text goes back to the model as the tool response.
"""

from __future__ import annotations

import copy
import inspect
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from transformers import PreTrainedTokenizerBase

ToolFunction = Callable[..., Any]
Message = dict[str, Any]
Prompt = str | Sequence[Message]
"""A chat (list of messages, rendered with the chat template) or an already rendered text."""
FinishReason = Literal["answer", "length", "tool_budget"]

CALL_START_TAG = "<tool_call>"
CALL_END_TAG = "</tool_call>"
CHATML_TURN_END = "<|im_end|>"
TRUNCATION_MARKER = "..."
_RESPONSE_SENTINEL = "\x00PARETOPO_TOOL_RESPONSE\x00"


@dataclass
class Rollout:
    """One sampled completion of one prompt, with its tool interactions.

    `completion_ids`, `loss_mask` and `logprobs` have the same length: one entry per
    completion token. `loss_mask` is 0 on tokens appended by the environment (tool responses,
    the turn closing around them) and 1 on tokens the model sampled; `logprobs` holds the
    sampling log-probability of each sampled token (after temperature and top-p) and None on
    environment tokens. `transcript` is the prompt's messages (none for a text prompt) followed
    by the assistant turns and tool messages; `final_answer` is `answer_extractor` applied to
    the content of its last assistant message.
    """

    prompt_ids: list[int]
    completion_ids: list[int]
    loss_mask: list[int]
    logprobs: list[float | None]
    num_tool_calls: int
    tool_errors: int
    transcript: list[Message]
    text: str
    final_answer: str | None
    finish_reason: FinishReason
    truncated: bool


@dataclass
class _RowState:
    """Per-completion bookkeeping touched only at events (tool calls, finishing)."""

    transcript: list[Message]
    turn_start: int = 0  # completion index where the current model turn begins
    tool_call_turns: int = 0  # budgeted: every closed </tool_call>, executed or not
    num_tool_calls: int = 0
    tool_errors: int = 0
    finish_reason: FinishReason | None = None
    length: int = 0
    last_model_text: str = ""  # content of the last assistant message, for the answer


class ToolCallError(ValueError):
    """A tool call that could not be run; its message is sent back as the tool response."""


class ToolProtocol:
    """The token-level view of the chat template's tool convention for one tokenizer.

    Attributes:
        call_end_ids: token ids of `</tool_call>` (one id for Qwen2.5 and the tiny tokenizer).
        stop_ids: end-of-turn ids: the tokenizer's eos, the model's generation-config eos ids,
            and ChatML's `<|im_end|>` when it is a single token.
        turn_end_id: the id closing a turn that ends on an unexecuted tool call.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, model: torch.nn.Module | None = None):
        self.tokenizer = tokenizer
        self.call_end_ids = tokenizer.encode(CALL_END_TAG, add_special_tokens=False)
        chatml_turn_end = tokenizer.get_vocab().get(CHATML_TURN_END)
        generation_config = getattr(model, "generation_config", None)
        config_eos = getattr(generation_config, "eos_token_id", None)
        config_eos = [config_eos] if isinstance(config_eos, int) else list(config_eos or [])
        candidates = [tokenizer.eos_token_id, chatml_turn_end, *config_eos]
        self.stop_ids = sorted({i for i in candidates if i is not None})
        if not self.stop_ids:
            raise ValueError("The tokenizer has no eos token and the model no eos_token_id.")
        self.turn_end_id = chatml_turn_end if chatml_turn_end is not None else self.stop_ids[0]
        self._response_parts: dict[str, tuple[str, str]] = {}

    def response_ids(self, tool_name: str, content: str) -> list[int]:
        """Tokens the environment appends after `</tool_call>` for a tool result `content`.

        Derived from the chat template with a two-message dummy chat, as TRL derives its tool
        suffix: the end of the rendered tool-call turn after `</tool_call>`, then the rendered
        `tool` message and the next assistant header.
        """
        if tool_name not in self._response_parts:
            self._response_parts[tool_name] = self._render_response_parts(tool_name)
        before, after = self._response_parts[tool_name]
        return self.tokenizer.encode(before + content + after, add_special_tokens=False)

    def _render_response_parts(self, tool_name: str) -> tuple[str, str]:
        call = {"type": "function", "function": {"name": tool_name, "arguments": {}}}
        chat = [
            {"role": "user", "content": "."},
            {"role": "assistant", "content": "", "tool_calls": [call]},
        ]
        tool_message = {"role": "tool", "name": tool_name, "content": _RESPONSE_SENTINEL}
        prefix = self.tokenizer.apply_chat_template(chat, tokenize=False)
        full = self.tokenizer.apply_chat_template(
            [*chat, tool_message], tokenize=False, add_generation_prompt=True
        )
        call_end = prefix.rfind(CALL_END_TAG)
        if call_end < 0 or not full.startswith(prefix) or full.count(_RESPONSE_SENTINEL) != 1:
            raise ValueError(
                "The tokenizer's chat template must render tool calls inside "
                f"{CALL_START_TAG}...{CALL_END_TAG}, keep earlier messages unchanged when a tool "
                "message is appended, and insert tool results verbatim (e.g. TRL's "
                "chat_templates/qwen2_5.jinja)."
            )
        suffix = prefix[call_end + len(CALL_END_TAG) :] + full[len(prefix) :]
        before, after = suffix.split(_RESPONSE_SENTINEL)
        return before, after


def parse_tool_call(turn_text: str) -> tuple[str, str, dict[str, Any]]:
    """Split a model turn ending in `</tool_call>` into (content before the call, name, arguments).

    Raises:
        ToolCallError: no opening tag, invalid JSON, or not `{"name": str, "arguments": {...}}`.

    Example:
        >>> text = 'Let me check.\\n<tool_call>\\n{"name": "f", "arguments": {"x": 1}}\\n</tool_call>'
        >>> parse_tool_call(text)
        ('Let me check.', 'f', {'x': 1})
    """
    start = turn_text.rfind(CALL_START_TAG)
    if start < 0:
        raise ToolCallError(f"no {CALL_START_TAG} before {CALL_END_TAG}")
    body = turn_text[start + len(CALL_START_TAG) : turn_text.rfind(CALL_END_TAG)].strip()
    try:
        call = json.loads(body)
    except json.JSONDecodeError as error:
        raise ToolCallError(f"invalid JSON ({error.msg})") from error
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        raise ToolCallError('expected {"name": <tool name>, "arguments": {...}}')
    arguments = call.get("arguments", {})
    if isinstance(arguments, str):  # some models emit the arguments object as a JSON string
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError as error:
            raise ToolCallError(f"arguments are not a JSON object ({error.msg})") from error
    if not isinstance(arguments, dict):
        raise ToolCallError("arguments must be a JSON object")
    content = turn_text[:start].removesuffix("\n")  # the template puts one newline before the call
    return content, call["name"], arguments


def run_tool(tools: Mapping[str, ToolFunction], name: str, arguments: dict[str, Any]) -> str:
    """Call `tools[name](**arguments)` and return its result as text.

    Raises:
        ToolCallError: unknown tool or arguments that do not fit its signature (the tool is
            not called).
        Exception: whatever the tool raises.
    """
    if name not in tools:
        available = ", ".join(sorted(tools)) or "none"
        raise ToolCallError(f"unknown tool {name!r} (available: {available})")
    tool = tools[name]
    try:
        inspect.signature(tool).bind(**arguments)
    except TypeError as error:
        raise ToolCallError(f"bad arguments for {name!r}: {error}") from error
    result = tool(**arguments)
    return result if isinstance(result, str) else str(result)


@torch.no_grad()
def generate_rollouts(
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
    """Sample `num_samples` tool-using completions for each prompt with any causal LM.

    Args:
        model: a transformers causal LM (plain or PEFT-wrapped) accepting `past_key_values`,
            `position_ids` and `logits_to_keep`; put in eval mode during the call.
        tokenizer: its tokenizer; its chat template renders chat prompts and tool responses.
        prompts: B chats (lists of messages) or already rendered texts.
        tools: name -> plain Python function returning text; also passed to the chat template
            as `tools=` (they need typed arguments and a docstring) when `tools_in_prompt`.
        num_samples: G completions per prompt.
        max_new_tokens: cap on completion tokens, tool responses included.
        max_tool_calls: tool-call turns answered per completion (see the module docstring).
        max_tool_output_tokens: a tool result longer than this is cut to its first tokens and
            followed by "...".
        temperature, top_p: sampling; ignored when `greedy`.
        seed, generator: sampling randomness; `generator` wins, else `seed` seeds a fresh one,
            else torch's global RNG is used.
        answer_extractor: text of the last model turn -> answer (e.g. the last `\\boxed{}`);
            None keeps the stripped text (None if empty).
        tools_in_prompt: False renders chats without the tools block (a compact prompt for a
            policy that learned the convention in its warm start).
        chat_template_kwargs: extra keyword arguments for `apply_chat_template`.

    Returns:
        B * G rollouts, grouped by prompt: entries `[b*G:(b+1)*G]` belong to `prompts[b]`.

    Example (the shipped tiny policy, greedy: it answers an easy sum itself and calls the
    calculator for a product):
        >>> from paretopo.agent.models import load_policy
        >>> from paretopo.tasks.base import data_dir
        >>> from paretopo.tools.calculator import calculator
        >>> model, tokenizer = load_policy(str(data_dir() / "tiny_policy"), lora=False)
        >>> chats = [[{"role": "system", "content": ""}, {"role": "user", "content": f"What is {q}?"}]
        ...          for q in ("72+3", "123*45")]
        >>> rollouts = generate_rollouts(model, tokenizer, chats, tools={"calculator": calculator},
        ...                              greedy=True, tools_in_prompt=False)
        >>> [(r.final_answer, r.num_tool_calls, r.finish_reason) for r in rollouts]
        [('\\\\boxed{75}', 0, 'answer'), ('\\\\boxed{5535}', 1, 'answer')]
    """
    _check_options(num_samples, max_new_tokens, max_tool_calls, max_tool_output_tokens, greedy, temperature, top_p)
    tools = dict(tools or {})
    protocol = ToolProtocol(tokenizer, model)
    device = next(model.parameters()).device
    if generator is None and seed is not None:
        generator = torch.Generator(device=device).manual_seed(seed)
    prompt_ids, rows = _prepare_rows(tokenizer, prompts, tools, num_samples, tools_in_prompt, chat_template_kwargs)
    pad_id = protocol.turn_end_id if tokenizer.pad_token_id is None else tokenizer.pad_token_id
    was_training = model.training
    model.eval()
    try:
        completions = _decode(
            model,
            prompt_ids,
            rows,
            protocol=protocol,
            tools=tools,
            num_samples=num_samples,
            max_new_tokens=max_new_tokens,
            max_tool_calls=max_tool_calls,
            max_tool_output_tokens=max_tool_output_tokens,
            sampler=_Sampler(temperature, top_p, greedy, generator),
            pad_id=pad_id,
            device=device,
        )
    finally:
        model.train(was_training)
    return _assemble_rollouts(tokenizer, prompt_ids, rows, completions, num_samples, answer_extractor)


def _check_options(num_samples: int, max_new_tokens: int, max_tool_calls: int, max_tool_output_tokens: int,
                   greedy: bool, temperature: float, top_p: float) -> None:
    if num_samples < 1 or max_new_tokens < 1 or max_tool_calls < 0 or max_tool_output_tokens < 1:
        raise ValueError(
            "num_samples, max_new_tokens and max_tool_output_tokens must be >= 1 and "
            "max_tool_calls >= 0."
        )
    if not greedy and (temperature <= 0 or not 0 < top_p <= 1):
        raise ValueError("Sampling needs temperature > 0 and 0 < top_p <= 1 (or greedy=True).")


def _prepare_rows(
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Prompt],
    tools: Mapping[str, ToolFunction],
    num_samples: int,
    tools_in_prompt: bool,
    chat_template_kwargs: Mapping[str, Any] | None,
) -> tuple[list[list[int]], list[_RowState]]:
    """The encoded prompts and one fresh `_RowState` per completion (B x G, grouped by prompt)."""
    prompt_ids = [
        _encode_prompt(tokenizer, prompt, tools, tools_in_prompt, chat_template_kwargs or {})
        for prompt in prompts
    ]
    rows = [
        _RowState(transcript=copy.deepcopy(list(prompt)) if not isinstance(prompt, str) else [])
        for prompt in prompts
        for _ in range(num_samples)
    ]
    return prompt_ids, rows


def _assemble_rollouts(
    tokenizer: PreTrainedTokenizerBase,
    prompt_ids: list[list[int]],
    rows: list[_RowState],
    completions: list[tuple[list[int], list[int], list[float | None]]],
    num_samples: int,
    answer_extractor: Callable[[str], str | None] | None,
) -> list[Rollout]:
    """`Rollout` records from the finished rows and their (ids, mask, logprobs)."""
    rollouts = []
    for index, (state, (ids, mask, logprobs)) in enumerate(zip(rows, completions, strict=True)):
        if answer_extractor is not None:
            final_answer = answer_extractor(state.last_model_text)
        else:
            final_answer = state.last_model_text.strip() or None
        rollouts.append(
            Rollout(
                prompt_ids=list(prompt_ids[index // num_samples]),
                completion_ids=ids,
                loss_mask=mask,
                logprobs=logprobs,
                num_tool_calls=state.num_tool_calls,
                tool_errors=state.tool_errors,
                transcript=state.transcript,
                text=tokenizer.decode(ids, skip_special_tokens=False),
                final_answer=final_answer,
                finish_reason=state.finish_reason,
                truncated=state.finish_reason == "length",
            )
        )
    return rollouts


def mask_segments(tokenizer: PreTrainedTokenizerBase, token_ids: Sequence[int],
                  loss_mask: Sequence[int]) -> list[dict[str, Any]]:
    """Split a completion into ``{"text", "tool_output"}`` runs of equal loss mask.

    ``tool_output`` is True where the environment wrote the tokens (mask 0, ignored by the loss).
    The run log stores these segments in ``samples/``; the apps highlight them.
    """
    segments: list[dict[str, Any]] = []
    start = 0
    for end in range(1, len(token_ids) + 1):
        if end == len(token_ids) or loss_mask[end] != loss_mask[start]:
            segments.append({"text": tokenizer.decode(list(token_ids[start:end])),
                             "tool_output": loss_mask[start] == 0})
            start = end
    return segments


def _encode_prompt(
    tokenizer: PreTrainedTokenizerBase,
    prompt: Prompt,
    tools: Mapping[str, ToolFunction],
    tools_in_prompt: bool,
    chat_template_kwargs: Mapping[str, Any],
) -> list[int]:
    if isinstance(prompt, str):
        return tokenizer.encode(prompt, add_special_tokens=False)
    text = tokenizer.apply_chat_template(
        list(prompt),
        tools=list(tools.values()) if tools and tools_in_prompt else None,
        add_generation_prompt=True,
        tokenize=False,
        **chat_template_kwargs,
    )
    return tokenizer.encode(text, add_special_tokens=False)


@dataclass
class _Sampler:
    temperature: float
    top_p: float
    greedy: bool
    generator: torch.Generator | None

    def __call__(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """logits [N, V] -> (tokens [N], log-probabilities [N] under the sampling distribution)."""
        logits = logits.float()
        if self.greedy:
            logprobs = logits.log_softmax(-1)
            tokens = logprobs.argmax(-1)
        else:
            logits = logits / self.temperature
            if self.top_p < 1.0:
                logits = _top_p_filter(logits, self.top_p)
            logprobs = logits.log_softmax(-1)
            tokens = torch.multinomial(logprobs.exp(), 1, generator=self.generator).squeeze(1)
        return tokens, logprobs.gather(1, tokens[:, None]).squeeze(1)


def _top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of tokens whose probability mass reaches `top_p`; [N, V] -> [N, V]."""
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(-1)
    mass_before = probs.cumsum(-1) - probs
    sorted_logits = sorted_logits.masked_fill(mass_before >= top_p, -math.inf)
    return torch.full_like(logits, -math.inf).scatter(-1, order, sorted_logits)


def _decode(
    model: torch.nn.Module,
    prompt_ids: list[list[int]],
    rows: list[_RowState],
    *,
    protocol: ToolProtocol,
    tools: dict[str, ToolFunction],
    num_samples: int,
    max_new_tokens: int,
    max_tool_calls: int,
    max_tool_output_tokens: int,
    sampler: _Sampler,
    pad_id: int,
    device: torch.device,
) -> list[tuple[list[int], list[int], list[float | None]]]:
    """The batched, KV-cached decoding loop: fills `rows`, returns (ids, mask, logprobs) per row.

    Each forward feeds every live row its sampled token; a row whose sampled token closed a
    tool call also gets the whole tool response in the same forward, so a forward is `K` tokens
    wide when some row has a `K - 1`-token response queued. Rows are right-aligned in that
    chunk: a shorter row's chunk starts with masked holes, so every row's last real token sits
    in the last column (one `logits_to_keep=1` read for all) and positions stay contiguous.
    """
    num_rows, budget = len(rows), max_new_tokens
    prompt_width = max(len(ids) for ids in prompt_ids)
    input_ids = torch.full((len(prompt_ids), prompt_width), pad_id, dtype=torch.long)
    prompt_mask = torch.zeros((len(prompt_ids), prompt_width), dtype=torch.long)
    for index, ids in enumerate(prompt_ids):  # left padding: every prompt ends at the same column
        input_ids[index, prompt_width - len(ids) :] = torch.tensor(ids)
        prompt_mask[index, prompt_width - len(ids) :] = 1
    input_ids, prompt_mask = input_ids.to(device), prompt_mask.to(device)

    # Prefill each distinct prompt once, then share its cache among its G samples.
    output = model(
        input_ids=input_ids,
        attention_mask=prompt_mask,
        position_ids=(prompt_mask.cumsum(-1) - 1).clamp(min=0),
        use_cache=True,
        logits_to_keep=1,
    )
    cache = output.past_key_values
    logits = output.logits[:, -1].repeat_interleave(num_samples, dim=0)
    cache.batch_repeat_interleave(num_samples)
    attention_mask = prompt_mask.repeat_interleave(num_samples, dim=0)

    # State of the live rows (finished rows are dropped); `live` maps them to `rows`.
    live = torch.arange(num_rows, device=device)
    next_position = attention_mask.sum(-1)
    cursor = torch.zeros(num_rows, dtype=torch.long, device=device)  # completion tokens so far
    call_end = torch.tensor(protocol.call_end_ids, device=device)
    recent_ids = torch.full((num_rows, len(call_end)), -1, dtype=torch.long, device=device)
    stop_ids = torch.tensor(protocol.stop_ids, device=device)

    # Completion buffers over all rows; row r's t-th completion token is column t.
    out_ids = torch.full((num_rows, budget), pad_id, dtype=torch.long, device=device)
    out_mask = torch.zeros((num_rows, budget), dtype=torch.long, device=device)
    out_logprobs = torch.full((num_rows, budget), math.nan, device=device)

    while True:
        token, token_logprobs = sampler(logits)
        out_ids[live, cursor] = token
        out_mask[live, cursor] = 1
        out_logprobs[live, cursor] = token_logprobs
        recent_ids = torch.cat([recent_ids[:, 1:], token[:, None]], dim=1)
        turn_ended = torch.isin(token, stop_ids)
        call_closed = (recent_ids == call_end).all(1)
        events = turn_ended | call_closed
        finished = turn_ended.clone()
        queued: dict[int, list[int]] = {}  # live position -> environment tokens to feed now
        if events.any():  # rows only finish or call at events: one device sync per forward
            positions = cursor.tolist()
            for position in events.nonzero().flatten().tolist():
                row, end = int(live[position]), positions[position]
                if turn_ended[position]:
                    _finish_turn(rows[row], out_ids[row], protocol, end=end, reason="answer")
                    continue
                response = _handle_tool_call(
                    rows[row],
                    out_ids[row],
                    step=end,
                    steps=budget,
                    protocol=protocol,
                    tools=tools,
                    max_tool_calls=max_tool_calls,
                    max_tool_output_tokens=max_tool_output_tokens,
                )
                if response is None:  # over the budget: the row is finished
                    finished[position] = True
                    continue
                response = response[: budget - end - 1]  # every token counts toward the budget
                if response:
                    out_ids[row, end + 1 : end + 1 + len(response)] = torch.tensor(response, device=device)
                    queued[position] = response
                # forced tokens never close a call: restart the window after the response
                recent_ids[position] = -1
        widths = torch.ones_like(cursor)
        for position, response in queued.items():
            widths[position] += len(response)
        cursor = cursor + widths
        out_of_budget = (cursor >= budget) & ~finished
        if out_of_budget.any():
            for position in out_of_budget.nonzero().flatten().tolist():
                _finish_turn(rows[int(live[position])], out_ids[int(live[position])], protocol, end=budget,
                             reason="length")
            finished |= out_of_budget
        if finished.all():
            break
        if finished.any():
            keep = (~finished).nonzero().flatten()
            cache.batch_select_indices(keep)
            kept = {int(old): new for new, old in enumerate(keep.tolist())}
            queued = {kept[p]: r for p, r in queued.items() if p in kept}
            live, attention_mask, next_position, cursor = live[keep], attention_mask[keep], next_position[keep], cursor[keep]
            recent_ids, token, widths = recent_ids[keep], token[keep], widths[keep]

        width = int(widths.max())
        if width == 1:
            step_ids, step_mask, positions = token[:, None], torch.ones_like(token)[:, None], next_position[:, None]
        else:  # right-aligned chunks: [holes..., sampled token, response tokens...]
            step_ids = torch.full((len(live), width), pad_id, dtype=torch.long, device=device)
            step_ids[:, -1] = token
            for position, response in queued.items():
                step_ids[position, width - 1 - len(response)] = token[position]
                step_ids[position, width - len(response) :] = torch.tensor(response, device=device)
            columns = torch.arange(width, device=device)
            start = (width - widths)[:, None]
            step_mask = (columns >= start).long()
            positions = next_position[:, None] + (columns - start).clamp(min=0)
        attention_mask = torch.cat([attention_mask, step_mask], dim=1)
        output = model(
            input_ids=step_ids,
            attention_mask=attention_mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        cache, logits = output.past_key_values, output.logits[:, -1]
        next_position = next_position + widths

    ids, mask, logprobs = out_ids.tolist(), out_mask.tolist(), out_logprobs.tolist()
    return [
        (
            ids[row][: state.length],
            mask[row][: state.length],
            [None if math.isnan(value) else value for value in logprobs[row][: state.length]],
        )
        for row, state in enumerate(rows)
    ]


def _finish_turn(
    state: _RowState,
    row_ids: torch.Tensor,
    protocol: ToolProtocol,
    *,
    end: int,
    reason: FinishReason,
) -> None:
    """Record the last model turn `[turn_start, end)` as an assistant message and finish the row.

    `end` excludes the end-of-turn token; for "answer" the length includes it.
    """
    state.finish_reason = reason
    state.length = end + 1 if reason == "answer" else end
    # A length cut inside a tool response leaves no model turn; an answer may be empty.
    if reason == "answer" or state.turn_start < end:
        state.last_model_text = protocol.tokenizer.decode(
            row_ids[state.turn_start : end].tolist(), skip_special_tokens=False
        )
        state.transcript.append({"role": "assistant", "content": state.last_model_text})


def _handle_tool_call(
    state: _RowState,
    row_ids: torch.Tensor,
    *,
    step: int,
    steps: int,
    protocol: ToolProtocol,
    tools: dict[str, ToolFunction],
    max_tool_calls: int,
    max_tool_output_tokens: int,
) -> list[int] | None:
    """Run the tool call closed at `step`; return the tokens to force, or None if the row ends."""
    turn_text = protocol.tokenizer.decode(
        row_ids[state.turn_start : step + 1].tolist(), skip_special_tokens=False
    )
    try:
        content, name, arguments = parse_tool_call(turn_text)
        assistant_message = {
            "role": "assistant",
            "content": content,
            "tool_calls": [
                {"type": "function", "function": {"name": name, "arguments": arguments}}
            ],
        }
    except ToolCallError as error:
        name, parse_error = "", error
        assistant_message = {"role": "assistant", "content": turn_text}
    else:
        parse_error = None
    state.transcript.append(assistant_message)
    state.last_model_text = assistant_message["content"]

    if state.tool_call_turns >= max_tool_calls:
        state.finish_reason = "tool_budget"
        state.length = step + 1
        if step + 1 < steps:  # close the turn so the completion ends like an answered one
            row_ids[step + 1] = protocol.turn_end_id
            state.length = step + 2
        return None

    state.tool_call_turns += 1
    try:
        if parse_error is not None:
            raise parse_error
        result = run_tool(tools, name, arguments)
        state.num_tool_calls += 1
    except ToolCallError as error:
        state.tool_errors += 1
        result = f"Error: {'malformed tool call: ' if parse_error else ''}{error}"
    except Exception as error:  # a failing tool is the model's problem, not the rollout's
        state.num_tool_calls += 1
        state.tool_errors += 1
        result = f"Error: {name} raised {type(error).__name__}: {error}"
    result = _truncate(protocol.tokenizer, result, max_tool_output_tokens)
    state.transcript.append({"role": "tool", "name": name, "content": result})
    queued = protocol.response_ids(name, result)
    state.turn_start = step + 1 + len(queued)
    return queued


def _truncate(tokenizer: PreTrainedTokenizerBase, text: str, max_tokens: int) -> str:
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) <= max_tokens:
        return text
    return tokenizer.decode(ids[:max_tokens], skip_special_tokens=False) + TRUNCATION_MARKER
