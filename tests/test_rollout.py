"""Multi-turn tool rollouts: a scripted fake policy checks the protocol token by token; the tiny
random Qwen2 checks batching, seeding and that the KV-cached loop matches a full forward pass."""

import math

import pytest
import torch
from scripted import ScriptedPolicy
from tokenizers import AddedToken, pre_tokenizers
from transformers import Qwen2Tokenizer

from paretopo.agent.models import (
    SPECIAL_TOKENS,
    build_tiny_policy,
    build_tiny_tokenizer,
    qwen2_5_chat_template,
)
from paretopo.agent.rollout import (
    ToolCallError,
    ToolProtocol,
    generate_rollouts,
    parse_tool_call,
)
from paretopo.training.trainer import make_rollout_func, to_trl_rollout_output

torch.set_num_threads(1)

TOOL_RESPONSE_391 = (
    "<|im_end|>\n<|im_start|>user\n<tool_response>\n391\n</tool_response><|im_end|>\n"
    "<|im_start|>assistant\n"
)


def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression.

    Args:
        expression: The expression, e.g. "17*23".
    """
    return str(eval(expression, {"__builtins__": {}}))


def crash(reason: str) -> str:
    """Always fails.

    Args:
        reason: Why.
    """
    raise RuntimeError(reason)


TOOLS = {"calculator": calculator, "crash": crash}


def call(name: str, arguments: str) -> str:
    return f'<tool_call>\n{{"name": "{name}", "arguments": {arguments}}}\n</tool_call>'


CALCULATE = call("calculator", '{"expression": "17*23"}')


def boxed(text: str) -> str | None:
    start = text.rfind("\\boxed{")
    return None if start < 0 else text[start + len("\\boxed{") :].split("}")[0]


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture(scope="module")
def tiny_model(tokenizer):
    return build_tiny_policy(tokenizer, seed=0)


def chat(marker: str) -> list[dict]:
    return [{"role": "system", "content": "Use tools."}, {"role": "user", "content": marker}]


def run_script(tokenizer, scripts, markers, **kwargs):
    model = ScriptedPolicy(tokenizer, scripts)
    options = {"tools": TOOLS, "max_new_tokens": 300, "answer_extractor": boxed, "seed": 0}
    return generate_rollouts(model, tokenizer, [chat(m) for m in markers], **{**options, **kwargs})


def test_tool_call_is_executed_and_masked_exactly_on_the_rendered_response(tokenizer):
    (rollout,) = run_script(tokenizer, {"case-A": [CALCULATE, "\\boxed{391}"]}, ["case-A"])
    call_ids = tokenizer.encode(CALCULATE, add_special_tokens=False)
    response_ids = tokenizer.encode(TOOL_RESPONSE_391, add_special_tokens=False)
    answer_ids = tokenizer.encode("\\boxed{391}<|im_end|>", add_special_tokens=False)
    assert rollout.completion_ids == call_ids + response_ids + answer_ids
    assert rollout.loss_mask == [1] * len(call_ids) + [0] * len(response_ids) + [1] * len(
        answer_ids
    )
    assert [lp is None for lp in rollout.logprobs] == [m == 0 for m in rollout.loss_mask]
    assert (rollout.num_tool_calls, rollout.tool_errors) == (1, 0)
    assert (rollout.finish_reason, rollout.truncated, rollout.final_answer) == (
        "answer",
        False,
        "391",
    )
    assert rollout.text == CALCULATE + TOOL_RESPONSE_391 + "\\boxed{391}<|im_end|>"
    # The completion is the chat template's rendering of the transcript, after the prompt.
    assert rollout.transcript[2:] == [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "type": "function",
                    "function": {"name": "calculator", "arguments": {"expression": "17*23"}},
                }
            ],
        },
        {"role": "tool", "name": "calculator", "content": "391"},
        {"role": "assistant", "content": "\\boxed{391}"},
    ]
    rendered = tokenizer.apply_chat_template(
        rollout.transcript, tools=list(TOOLS.values()), tokenize=False
    )
    prompt = tokenizer.decode(rollout.prompt_ids)
    assert rendered == prompt + rollout.text + "\n"


def test_tool_response_tokens_come_from_the_chat_template(tokenizer):
    protocol = ToolProtocol(tokenizer)
    assert tokenizer.decode(protocol.response_ids("calculator", "391")) == TOOL_RESPONSE_391
    assert protocol.call_end_ids == [tokenizer.convert_tokens_to_ids("</tool_call>")]
    assert protocol.stop_ids == [tokenizer.eos_token_id]


def test_tool_budget_stops_the_rollout(tokenizer):
    script = [f"Step {i}.\n" + call("calculator", f'{{"expression": "{i}+1"}}') for i in range(5)]
    (rollout,) = run_script(
        tokenizer, {"case-A": [*script, "\\boxed{5}"]}, ["case-A"], max_tool_calls=2
    )
    assert (rollout.num_tool_calls, rollout.tool_errors) == (2, 0)
    assert rollout.finish_reason == "tool_budget" and not rollout.truncated
    assert rollout.text.count("<tool_response>") == 2
    # The third call is written but not run; the environment closes the turn.
    assert rollout.text.endswith(
        "Step 2.\n" + call("calculator", '{"expression": "2+1"}') + "<|im_end|>"
    )
    assert rollout.loss_mask[-1] == 0 and rollout.loss_mask[-2] == 1
    assert rollout.transcript[-1]["tool_calls"][0]["function"]["arguments"] == {"expression": "2+1"}
    assert [m["content"] for m in rollout.transcript if m["role"] == "tool"] == ["1", "2"]
    assert rollout.final_answer is None


def test_multi_token_tool_tags_are_detected(tokenizer):
    """With a tokenizer where `</tool_call>` is 12 byte tokens, the protocol still holds."""
    byte_symbols = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocabulary = {token: index for index, token in enumerate([*SPECIAL_TOKENS, *byte_symbols])}
    plain = Qwen2Tokenizer(
        vocab=vocabulary,
        merges=[],
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    plain.add_tokens(
        [AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS], special_tokens=True
    )
    plain.chat_template = qwen2_5_chat_template()
    assert len(ToolProtocol(plain).call_end_ids) == len("</tool_call>")
    (rollout,) = run_script(plain, {"case-A": [CALCULATE, "\\boxed{391}"]}, ["case-A"])
    response_length = len(plain.encode(TOOL_RESPONSE_391, add_special_tokens=False))
    call_length = len(plain.encode(CALCULATE, add_special_tokens=False))
    assert rollout.text == CALCULATE + TOOL_RESPONSE_391 + "\\boxed{391}<|im_end|>"
    assert rollout.loss_mask == [1] * call_length + [0] * response_length + [1] * len(
        "\\boxed{391}"
    ) + [1]
    assert (rollout.num_tool_calls, rollout.final_answer) == (1, "391")


def test_zero_budget_and_a_call_at_the_last_token(tokenizer):
    (no_tools,) = run_script(tokenizer, {"case-A": [CALCULATE]}, ["case-A"], max_tool_calls=0)
    assert (no_tools.finish_reason, no_tools.num_tool_calls) == ("tool_budget", 0)
    call_length = len(tokenizer.encode(CALCULATE, add_special_tokens=False))
    (at_limit,) = run_script(
        tokenizer, {"case-A": [CALCULATE]}, ["case-A"], max_new_tokens=call_length
    )
    assert (at_limit.finish_reason, at_limit.truncated) == ("length", True)
    assert at_limit.num_tool_calls == 1 and len(at_limit.completion_ids) == call_length


def test_truncation_at_max_new_tokens(tokenizer):
    call_length = len(tokenizer.encode(CALCULATE, add_special_tokens=False))
    limit = call_length + 10
    scripts = {"case-A": ["x" * 100], "case-B": [CALCULATE, "\\boxed{391}"]}
    in_answer, in_response = run_script(
        tokenizer, scripts, ["case-A", "case-B"], max_new_tokens=limit
    )
    assert (in_answer.finish_reason, in_answer.truncated) == ("length", True)
    assert in_answer.completion_ids == tokenizer.encode("x" * limit, add_special_tokens=False)
    assert in_answer.loss_mask == [1] * limit
    assert in_answer.transcript[-1] == {"role": "assistant", "content": "x" * limit}
    # B is cut inside the tool response: ids and mask stay aligned, the tail is environment.
    assert (in_response.finish_reason, in_response.truncated) == ("length", True)
    assert len(in_response.completion_ids) == len(in_response.loss_mask) == limit
    assert in_response.loss_mask == [1] * call_length + [0] * 10
    assert in_response.transcript[-1]["role"] == "tool"


def test_malformed_unknown_bad_arguments_and_failing_tools_are_tool_errors(tokenizer):
    script = [
        '<tool_call>\n{"name": "calculator", "arguments": {"expression": \n</tool_call>',
        call("search", '{"query": "x"}'),
        call("calculator", '{"expr": "1+1"}'),
        call("crash", '{"reason": "boom"}'),
        "</tool_call>",
        CALCULATE,
        "\\boxed{391}",
    ]
    (rollout,) = run_script(
        tokenizer, {"case-A": script}, ["case-A"], max_tool_calls=10, max_new_tokens=800
    )
    responses = [m["content"] for m in rollout.transcript if m["role"] == "tool"]
    assert responses[0].startswith("Error: malformed tool call: invalid JSON")
    assert responses[1].startswith("Error: unknown tool 'search' (available: calculator, crash)")
    assert responses[2].startswith("Error: bad arguments for 'calculator'")
    assert responses[3] == "Error: crash raised RuntimeError: boom"
    assert responses[4] == "Error: malformed tool call: no <tool_call> before </tool_call>"
    assert responses[5] == "391"
    assert (rollout.tool_errors, rollout.num_tool_calls) == (5, 2)  # crash ran, and failed
    assert (rollout.finish_reason, rollout.final_answer) == ("answer", "391")
    assert len(rollout.completion_ids) == len(rollout.loss_mask) == len(rollout.logprobs)


def test_tool_output_is_truncated_to_max_tool_output_tokens(tokenizer):
    (rollout,) = run_script(
        tokenizer,
        {"case-A": [call("calculator", '{"expression": "10**40"}'), "done"]},
        ["case-A"],
        max_tool_output_tokens=8,
    )
    assert rollout.transcript[3] == {"role": "tool", "name": "calculator", "content": "10000000..."}
    assert "<tool_response>\n10000000...\n</tool_response>" in rollout.text


def test_batched_rows_with_different_scripts_match_single_runs(tokenizer):
    scripts = {
        "case-A": [CALCULATE, "\\boxed{391}"],
        "case-BB": ["\\boxed{2}"],
        "case-CCC": [
            call("calculator", '{"expression": "2*3"}'),
            call("calculator", '{"expression": "6*7"}'),
            "42",
        ],
    }
    markers = [
        "case-CCC",
        "case-A",
        "case-BB",
    ]  # different prompt lengths: left padding; rows finish at different steps
    batch = run_script(tokenizer, scripts, markers, num_samples=3)
    assert len(batch) == 9
    for index, marker in enumerate(markers):
        (alone,) = run_script(tokenizer, scripts, [marker])
        for rollout in batch[3 * index : 3 * index + 3]:
            assert rollout.prompt_ids == alone.prompt_ids
            assert rollout.completion_ids == alone.completion_ids
            assert rollout.loss_mask == alone.loss_mask
            assert rollout.transcript == alone.transcript
    assert [r.num_tool_calls for r in batch[::3]] == [2, 1, 0]
    assert [r.final_answer for r in batch[::3]] == [None, "391", "2"]


def test_tiny_model_batches_are_seeded_aligned_and_grouped(tokenizer, tiny_model):
    prompts = [chat("What is 17*23?"), chat("2+2?"), "plain text prompt"]
    options = {"tools": TOOLS, "num_samples": 4, "max_new_tokens": 24, "tools_in_prompt": False}
    first = generate_rollouts(tiny_model, tokenizer, prompts, seed=7, **options)
    again = generate_rollouts(
        tiny_model, tokenizer, prompts, generator=torch.Generator().manual_seed(7), **options
    )
    other = generate_rollouts(tiny_model, tokenizer, prompts, seed=8, **options)
    assert len(first) == 12
    assert [r.completion_ids for r in first] == [r.completion_ids for r in again]
    assert [r.completion_ids for r in first] != [r.completion_ids for r in other]
    assert len({tuple(r.completion_ids) for r in first}) > 1  # samples differ within a group
    for index, rollout in enumerate(first):
        assert rollout.prompt_ids == first[4 * (index // 4)].prompt_ids
        assert len(rollout.completion_ids) == len(rollout.loss_mask) == len(rollout.logprobs)
        assert 1 <= len(rollout.completion_ids) <= 24
        assert rollout.truncated == (rollout.finish_reason == "length")
    assert first[8].transcript[0]["role"] == "assistant"  # a text prompt has no chat messages
    greedy = [
        generate_rollouts(tiny_model, tokenizer, prompts[:1], greedy=True, **options)
        for _ in range(2)
    ]
    assert [r.completion_ids for r in greedy[0]] == [r.completion_ids for r in greedy[1]]
    assert len({tuple(r.completion_ids) for r in greedy[0]}) == 1


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_cached_decoding_matches_a_full_forward_pass(tokenizer, tiny_model, temperature):
    """Recorded log-probs of sampled tokens equal a fresh unpadded forward over prompt +
    completion, forced tool tokens included: the cache, positions and padding are right."""
    prompts = [chat("What is 17*23?"), chat("A much longer question, padded less: 2+2?")]
    rollouts = generate_rollouts(
        tiny_model,
        tokenizer,
        prompts,
        tools=TOOLS,
        num_samples=16,
        max_new_tokens=48,
        temperature=temperature,
        tools_in_prompt=False,
        seed=0,
    )
    assert any(0 in r.loss_mask for r in rollouts)  # some rows did get forced tool tokens
    for rollout in rollouts:
        ids = torch.tensor([rollout.prompt_ids + rollout.completion_ids])
        with torch.no_grad():
            logits = tiny_model(input_ids=ids).logits[0, len(rollout.prompt_ids) - 1 : -1]
        completion = ids[0, len(rollout.prompt_ids) :, None]
        expected = (logits / temperature).log_softmax(-1).gather(1, completion).squeeze(1)
        for recorded, reference, mask in zip(
            rollout.logprobs, expected.tolist(), rollout.loss_mask, strict=True
        ):
            assert (recorded is None) == (mask == 0)
            if recorded is not None:
                assert math.isclose(recorded, reference, abs_tol=1e-4)


def test_a_tiny_top_p_samples_the_greedy_token(tokenizer, tiny_model):
    options = {"max_new_tokens": 16, "num_samples": 2}
    greedy = generate_rollouts(tiny_model, tokenizer, [chat("hi")], greedy=True, **options)
    nucleus = generate_rollouts(tiny_model, tokenizer, [chat("hi")], top_p=1e-6, seed=0, **options)
    assert [r.completion_ids for r in nucleus] == [r.completion_ids for r in greedy]
    assert all(lp == 0.0 for r in nucleus for lp in r.logprobs if lp is not None)


def test_trl_rollout_output(tokenizer):
    rollouts = run_script(
        tokenizer, {"case-A": [CALCULATE, "\\boxed{391}"], "case-B": ["no"]}, ["case-A", "case-B"]
    )
    output = to_trl_rollout_output(rollouts)
    assert {"prompt_ids", "completion_ids", "logprobs", "env_mask"} <= output.keys()
    assert output["env_mask"] == [r.loss_mask for r in rollouts]
    assert output["num_tool_calls"] == [1, 0] and output["final_answer"] == ["391", None]
    assert output["completion_text"] == [r.text for r in rollouts]
    for ids, mask, logprobs in zip(
        output["completion_ids"], output["env_mask"], output["logprobs"], strict=True
    ):
        assert len(ids) == len(mask) == len(logprobs)


def test_parse_tool_call():
    assert parse_tool_call(
        'Hm.\n<tool_call>\n{"name": "f", "arguments": "{\\"x\\": 1}"}\n</tool_call>'
    ) == (
        "Hm.",
        "f",
        {"x": 1},
    )
    with pytest.raises(ToolCallError, match="expected"):
        parse_tool_call('<tool_call>\n{"arguments": {}}\n</tool_call>')
    with pytest.raises(ToolCallError, match="JSON object"):
        parse_tool_call('<tool_call>\n{"name": "f", "arguments": [1]}\n</tool_call>')


def test_invalid_settings_fail_loudly(tokenizer, tiny_model):
    with pytest.raises(ValueError, match="temperature"):
        generate_rollouts(tiny_model, tokenizer, [chat("x")], temperature=0.0)
    with pytest.raises(ValueError, match="max_tool_calls"):
        generate_rollouts(tiny_model, tokenizer, [chat("x")], max_tool_calls=-1)


def test_rollout_func_drives_a_trl_grpo_step(tokenizer, tmp_path, monkeypatch):
    """TRL accepts the output: rewards see the extra fields, env_mask is its tool mask."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func is experimental in TRL
    rollout_func = make_rollout_func({"calculator": calculator}, tools_in_prompt=False)
    outputs, rewarded = [], []

    def recording_rollout_func(prompts, trainer):
        outputs.append(rollout_func(prompts, trainer))
        return outputs[-1]

    def reward(completions, num_tool_calls, tool_errors, finish_reason, **kwargs):
        rewarded.append((num_tool_calls, tool_errors, finish_reason))
        return [-float(n) for n in num_tool_calls]

    args = GRPOConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=8,
        num_generations=4,
        max_completion_length=40,
        max_steps=1,
        bf16=False,
        use_cpu=True,
        report_to=[],
        gradient_checkpointing=False,
        save_strategy="no",
        seed=0,
    )
    dataset = Dataset.from_list([{"prompt": chat(f"{i}*3?")} for i in range(8)])
    trainer = GRPOTrainer(
        model=build_tiny_policy(tokenizer, seed=0),
        reward_funcs=[reward],
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        rollout_func=recording_rollout_func,
    )
    trainer.train()
    (output,) = outputs
    assert rewarded == [(output["num_tool_calls"], output["tool_errors"], output["finish_reason"])]
    model_tokens = [sum(mask) for mask in output["env_mask"]]
    assert any(sum(mask) < len(mask) for mask in output["env_mask"])  # forced tokens present
    logged = trainer.state.log_history[0]
    assert math.isclose(logged["completions/mean_length"], sum(model_tokens) / len(model_tokens))


def _naive_greedy(model, tokenizer, prompt, *, max_new_tokens, max_tool_calls):
    """Reference: one row, no cache, a full forward per token; tool responses appended as text."""
    protocol = ToolProtocol(tokenizer, model)
    ids = tokenizer.encode(tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False),
                           add_special_tokens=False)
    prompt_length, mask, turn_start, calls = len(ids), [], 0, 0
    while len(ids) - prompt_length < max_new_tokens:
        with torch.no_grad():
            token = int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
        ids.append(token)
        mask.append(1)
        if token in protocol.stop_ids:
            break
        if ids[-len(protocol.call_end_ids):] == protocol.call_end_ids:
            if calls >= max_tool_calls:
                ids.append(protocol.turn_end_id)
                mask.append(0)
                break
            calls += 1
            _, name, arguments = parse_tool_call(tokenizer.decode(ids[prompt_length + turn_start:]))
            response = protocol.response_ids(name, str(TOOLS[name](**arguments)))
            response = response[: max_new_tokens - (len(ids) - prompt_length)]
            ids += response
            mask += [0] * len(response)
            turn_start = len(ids) - prompt_length
    return ids[prompt_length:], mask


def test_batched_greedy_decoding_equals_a_naive_per_row_loop():
    """The chunked, cached, batched loop writes exactly what a cache-free one-row loop writes,
    tool calls and responses included, on the shipped warm-started policy (which calls tools)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from paretopo.tasks.arithmetic import ArithmeticTask
    from paretopo.training.warmstart import default_policy_path

    model = AutoModelForCausalLM.from_pretrained(default_policy_path()).eval()
    tokenizer = AutoTokenizer.from_pretrained(default_policy_path())
    task = ArithmeticTask()
    prompts = [task.messages(e) for e in task.load("validation")[:9]]
    rollouts = generate_rollouts(model, tokenizer, prompts, tools={"calculator": calculator}, greedy=True,
                                 max_new_tokens=60, max_tool_calls=2, tools_in_prompt=False)
    assert sum(r.num_tool_calls for r in rollouts) > 0
    for prompt, rollout in zip(prompts, rollouts, strict=True):
        ids, mask = _naive_greedy(model, tokenizer, prompt, max_new_tokens=60, max_tool_calls=2)
        assert rollout.completion_ids == ids and rollout.loss_mask == mask
