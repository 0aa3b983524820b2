"""paretopo.agent.segmented_rollout: the generate-based backend for Unsloth policies.

Two checks. (1) On the shipped tiny policy, greedy, it gives the KV-cached loop's records and
masks exactly (answers, length cuts inside and after tool responses, the tool budget).
(2) On a fake Unsloth model (the tiny policy's weights behind a forward that behaves like
Unsloth's patched one: tuple KV caches out, one token per row when decoding, the attended
cache kept in buffers on each attention module, sized at the first decode), the KV-cached loop
fails, also when its cache is handed back as a DynamicCache, and the new backend, picked
automatically, reproduces the plain model's rollouts.
"""

from __future__ import annotations

import types

import pytest
import torch
from transformers import DynamicCache, Qwen2ForCausalLM
from transformers.modeling_outputs import CausalLMOutputWithPast

from paretopo.agent.models import load_policy, uses_unsloth_generate
from paretopo.agent.rollout import generate_rollouts
from paretopo.agent.rollout_backends import get_rollout_backend, rollout_backend_for
from paretopo.agent.segmented_rollout import generate_rollouts_segmented
from paretopo.tasks import get_task
from paretopo.training.train import tiny_policy_path
from paretopo.training.trainer import make_rollout_func

torch.set_num_threads(1)
RECORD_FIELDS = ("prompt_ids", "completion_ids", "loss_mask", "num_tool_calls", "tool_errors", "transcript", "text",
                 "final_answer", "finish_reason", "truncated")


@pytest.fixture(scope="module")
def tiny():
    model, tokenizer = load_policy(tiny_policy_path(), lora=False)
    task = get_task("arithmetic")
    tools = {tool.__name__: tool for tool in task.tools()}
    prompts = [task.messages(e) for e in task.load("test")[:6]]
    return model, tokenizer, task, tools, prompts


def assert_same_rollouts(expected, got):
    assert len(expected) == len(got)
    for want, have in zip(expected, got, strict=True):
        for name in RECORD_FIELDS:
            assert getattr(have, name) == getattr(want, name), name
        assert [p is None for p in have.logprobs] == [p is None for p in want.logprobs]
        assert have.logprobs == pytest.approx(want.logprobs, abs=1e-4)  # float rounding of another batch shape


# (max_new_tokens, max_tool_calls): a full answer; cuts inside a tool call, inside its response and
# right after it; no tool budget at all (the first call ends the rollout)
CASES = [(48, 3), (8, 3), (14, 3), (24, 3), (48, 0)]


@pytest.mark.parametrize("max_new_tokens, max_tool_calls", CASES)
def test_greedy_segmented_rollouts_equal_the_kv_cached_loop(tiny, max_new_tokens, max_tool_calls):
    model, tokenizer, task, tools, prompts = tiny
    options = {"tools": tools, "num_samples": 2, "max_new_tokens": max_new_tokens, "max_tool_calls": max_tool_calls,
               "greedy": True, "tools_in_prompt": False, "answer_extractor": task.extract_answer}
    assert_same_rollouts(generate_rollouts(model, tokenizer, prompts, **options),
                         generate_rollouts_segmented(model, tokenizer, prompts, **options))


def test_the_cases_cover_every_finish_reason_and_environment_tokens(tiny):
    model, tokenizer, task, tools, prompts = tiny
    reasons, masked = set(), 0
    for max_new_tokens, max_tool_calls in CASES:
        for rollout in generate_rollouts(model, tokenizer, prompts, tools=tools, max_new_tokens=max_new_tokens,
                                         max_tool_calls=max_tool_calls, greedy=True, tools_in_prompt=False):
            reasons.add(rollout.finish_reason)
            masked += rollout.loss_mask.count(0)
    assert reasons == {"answer", "length", "tool_budget"} and masked > 0


def test_sampled_segmented_rollouts_keep_the_contract_and_follow_the_seed(tiny):
    model, tokenizer, task, tools, prompts = tiny
    options = {"tools": tools, "num_samples": 3, "max_new_tokens": 40, "max_tool_calls": task.max_tool_calls,
               "temperature": 1.3, "top_p": 0.9, "tools_in_prompt": False}
    first = generate_rollouts_segmented(model, tokenizer, prompts, seed=7, **options)
    again = generate_rollouts_segmented(model, tokenizer, prompts, seed=7, **options)
    assert [r.completion_ids for r in first] == [r.completion_ids for r in again]
    for rollout in first:
        assert len(rollout.completion_ids) == len(rollout.loss_mask) == len(rollout.logprobs) <= 40
        assert all((p is None) == (m == 0) for p, m in zip(rollout.logprobs, rollout.loss_mask, strict=True))
        assert all(p <= 0 for p in rollout.logprobs if p is not None)
    # the recorded log-probabilities are the sampling distribution's (temperature, then top-p):
    # rescoring the sampled tokens with the model gives the same numbers
    rollout = next(r for r in first if r.loss_mask.count(1) > 3)
    ids = torch.tensor([rollout.prompt_ids + rollout.completion_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(rollout.prompt_ids) - 1 : -1].float() / 1.3
    from paretopo.agent.rollout import _top_p_filter

    logprobs = _top_p_filter(logits, 0.9).log_softmax(-1)
    for position, (token, mask) in enumerate(zip(rollout.completion_ids, rollout.loss_mask, strict=True)):
        if mask:
            assert logprobs[position, token].item() == pytest.approx(rollout.logprobs[position], abs=1e-4)


# ------------------------------------------------------------------------------------------
# a fake Unsloth model
# ------------------------------------------------------------------------------------------


class FakeUnslothQwen2(Qwen2ForCausalLM):
    """The tiny policy behind a forward shaped like Unsloth's patched one (unsloth/models/llama.py,
    2026.10): a prefill returns the KV cache as a tuple of (K, V) per layer and clears the
    decode buffers; a decode step takes one token per row and attends over buffers kept on
    each attention module, copied from the cache at the first decode and grown by one token per
    step (Unsloth's ``paged_attention_K/V``); the cache passed back in only tells it the length.
    ``return_dynamic_cache`` hands every cache back as a DynamicCache instead (the conversion
    that is "not enough": the buffers still decide what is attended)."""

    return_dynamic_cache = False

    def _attention_modules(self):
        return [layer.self_attn for layer in self.model.layers]

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None, use_cache=None,
                logits_to_keep=0, **kwargs):
        if past_key_values is not None and _cache_length(past_key_values) == 0:
            past_key_values = None
        if past_key_values is None:  # prefill: Unsloth's attention forward deletes the decode buffers
            for attention in self._attention_modules():
                attention.__dict__.pop("paged_attention", None)
            output = super().forward(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                                     use_cache=True, logits_to_keep=logits_to_keep)
            cache = output.past_key_values
            if not self.return_dynamic_cache:
                cache = tuple((layer.keys, layer.values) for layer in cache.layers)
            return CausalLMOutputWithPast(logits=output.logits, past_key_values=cache)
        batch, width = input_ids.shape
        if width != 1:  # Qn.view(bsz, 1, n_heads, head_dim) in LlamaAttention_fast_forward_inference
            raise RuntimeError(f"shape '[{batch}, 1, -1]' is invalid for input of {width} tokens per row")
        length = _cache_length(past_key_values)
        past = DynamicCache()
        for index, attention in enumerate(self._attention_modules()):
            if "paged_attention" not in attention.__dict__:  # sized at the first decode
                keys, values = _layer(past_key_values, index)
                attention.__dict__["paged_attention"] = (keys.clone(), values.clone())
            keys, values = attention.__dict__["paged_attention"]
            past.update(keys[:, :, :length], values[:, :, :length], index)
        output = super().forward(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                                 past_key_values=past, use_cache=True, logits_to_keep=logits_to_keep)
        for index, attention in enumerate(self._attention_modules()):
            layer = output.past_key_values.layers[index]
            attention.__dict__["paged_attention"] = (layer.keys, layer.values)
        if self.return_dynamic_cache:
            return CausalLMOutputWithPast(logits=output.logits, past_key_values=output.past_key_values)
        cache = tuple(attention.__dict__["paged_attention"] for attention in self._attention_modules())
        return CausalLMOutputWithPast(logits=output.logits, past_key_values=cache)

    def prepare_inputs_for_generation(self, input_ids, past_key_values=None, attention_mask=None, **kwargs):
        """As Unsloth's ``_fast_prepare_inputs_for_generation``: the last token only once a cache exists."""
        positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        if past_key_values is not None and _cache_length(past_key_values) > 0:
            input_ids, positions = input_ids[:, -1:], positions[:, -1:]
        return {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": positions,
                "past_key_values": past_key_values, "use_cache": True,
                "logits_to_keep": kwargs.get("logits_to_keep") or 1}


def _cache_length(cache) -> int:
    if hasattr(cache, "get_seq_length"):
        return int(cache.get_seq_length())
    return int(cache[0][0].shape[-2]) if len(cache) else 0


def _layer(cache, index):
    if hasattr(cache, "layers"):
        return cache.layers[index].keys, cache.layers[index].values
    return cache[index]


def unsloth_fast_generate(self, *args, **kwargs):
    """What Unsloth installs as ``model.generate``: inference mode, transformers' generate, then back."""
    was_training = self.training
    self.eval()
    try:
        return self._old_generate(*args, **kwargs)
    finally:
        self.train(was_training)


def fake_unsloth_model(return_dynamic_cache: bool = False) -> FakeUnslothQwen2:
    model = FakeUnslothQwen2.from_pretrained(tiny_policy_path()).eval()
    model.return_dynamic_cache = return_dynamic_cache
    model._old_generate = model.generate  # as FastLlamaModel.from_pretrained does
    model.generate = types.MethodType(unsloth_fast_generate, model)
    return model


def test_the_kv_cached_loop_fails_on_the_fake_unsloth_model(tiny):
    _, tokenizer, task, tools, prompts = tiny
    options = {"tools": tools, "num_samples": 2, "max_new_tokens": 48, "max_tool_calls": task.max_tool_calls,
               "greedy": True, "tools_in_prompt": False}
    with pytest.raises(AttributeError, match="batch_repeat_interleave"):  # the tuple cache
        generate_rollouts(fake_unsloth_model(), tokenizer, prompts, **options)
    # handed DynamicCaches, the loop gets further, then the buffers sized at the first decode meet
    # a batch with finished rows dropped from the cache but not from the buffers (the first
    # prompt's samples answer at once, the others call the calculator) ...
    converted = fake_unsloth_model(return_dynamic_cache=True)
    with pytest.raises(RuntimeError) as dropped:
        generate_rollouts(converted, tokenizer, prompts, **options)
    # ... or, for one row that calls a tool, the tool response fed as one chunk
    calling = [prompts[1]]
    assert generate_rollouts(tiny[0], tokenizer, calling, **{**options, "num_samples": 1})[0].num_tool_calls == 1
    with pytest.raises(RuntimeError, match="tokens per row"):
        generate_rollouts(converted, tokenizer, calling, **{**options, "num_samples": 1})
    assert "tokens per row" not in str(dropped.value)


def test_the_fake_decodes_like_the_plain_model_when_driven_one_token_per_row(tiny):
    """The fake is a faithful model: transformers' generate over it equals generate over the plain one."""
    model, tokenizer, _, _, prompts = tiny
    text = tokenizer.apply_chat_template(prompts[0], add_generation_prompt=True, tokenize=False)
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    expected = model.generate(**ids, max_new_tokens=20, do_sample=False)
    assert torch.equal(fake_unsloth_model().generate(**ids, max_new_tokens=20, do_sample=False), expected)


def test_the_segmented_backend_is_picked_for_the_fake_and_reproduces_the_plain_rollouts(tiny):
    model, tokenizer, task, tools, prompts = tiny
    fake = fake_unsloth_model()
    assert uses_unsloth_generate(fake) and not uses_unsloth_generate(model)
    assert rollout_backend_for(fake) == "segmented_generate" and rollout_backend_for(model) == "tool_loop"
    assert rollout_backend_for(fake, "segmented_generate") == "segmented_generate"
    with pytest.raises(ValueError, match="unknown rollout backend"):
        rollout_backend_for(fake, "vllm")
    for max_new_tokens, max_tool_calls in CASES:
        options = {"tools": tools, "num_samples": 2, "max_new_tokens": max_new_tokens,
                   "max_tool_calls": max_tool_calls, "greedy": True, "tools_in_prompt": False,
                   "answer_extractor": task.extract_answer}
        expected = generate_rollouts(model, tokenizer, prompts, **options)
        assert_same_rollouts(expected, get_rollout_backend(rollout_backend_for(fake))(fake, tokenizer, prompts,
                                                                                        **options))


def test_training_and_evaluation_route_an_unsloth_model_to_the_segmented_backend(tiny):
    from types import SimpleNamespace

    from paretopo.evaluation.evaluate import evaluate_policy

    model, tokenizer, task, tools, prompts = tiny
    fake = fake_unsloth_model()
    trainer = SimpleNamespace(args=SimpleNamespace(max_completion_length=32, temperature=1.0, top_p=1.0),
                              accelerator=SimpleNamespace(unwrap_model=lambda m: m), model=fake,
                              processing_class=tokenizer)
    rollout_func = make_rollout_func(tools, max_tool_calls=task.max_tool_calls, tools_in_prompt=False)
    output = rollout_func(prompts[:2], trainer)  # the tool loop would raise on the tuple cache
    assert len(output["completion_ids"]) == 2 and all(len(m) == len(c) for m, c in
                                                      zip(output["env_mask"], output["completion_ids"], strict=True))
    examples = task.load("test")[:4]
    on_fake = evaluate_policy(fake, tokenizer, task, examples, max_new_tokens=48, tools_in_prompt=False,
                              progress=False)
    on_plain = evaluate_policy(model, tokenizer, task, examples, max_new_tokens=48, tools_in_prompt=False,
                               progress=False)
    assert on_fake.rows["text"].to_list() == on_plain.rows["text"].to_list()


@pytest.mark.gpu
def test_an_unsloth_loaded_policy_decodes_through_the_segmented_backend(tiny):
    """On a GPU with Unsloth: load_policy takes Unsloth, the segmented backend is picked, and its
    records keep the contract (the tool loop cannot run such a model at all)."""
    pytest.importorskip("unsloth")
    _, tokenizer, task, tools, prompts = tiny
    model, unsloth_tokenizer = load_policy(tiny_policy_path(), lora_rank=4, lora_alpha=8)
    assert uses_unsloth_generate(model) and rollout_backend_for(model) == "segmented_generate"
    rollouts = get_rollout_backend(rollout_backend_for(model))(
        model, unsloth_tokenizer, prompts, tools=tools, num_samples=2, max_new_tokens=48,
        max_tool_calls=task.max_tool_calls, greedy=True, tools_in_prompt=False)
    assert len(rollouts) == 2 * len(prompts)
    for rollout in rollouts:
        assert len(rollout.completion_ids) == len(rollout.loss_mask) == len(rollout.logprobs) <= 48
        assert all((p is None) == (m == 0) for p, m in zip(rollout.logprobs, rollout.loss_mask, strict=True))
