"""The tiny CPU policy and tokenizer, and `load_policy`'s CPU path (no downloads)."""

import sys

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl.chat_template_utils import add_response_schema, is_chat_template_prefix_preserving

from paretopo.agent.models import (
    PROTOCOL_PIECES,
    SPECIAL_TOKENS,
    TOOL_TAG_TOKENS,
    build_tiny_policy,
    build_tiny_tokenizer,
    load_policy,
    policy_backend,
    qwen2_5_chat_template,
    save_tiny_policy,
)

torch.set_num_threads(1)


def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression.

    Args:
        expression: The expression, e.g. "17*23".
    """
    return str(eval(expression, {"__builtins__": {}}))


TOOL_CHAT = [
    {"role": "user", "content": "What is 17*23?"},
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
]


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture(scope="module")
def saved_policy(tmp_path_factory, tokenizer):
    model = build_tiny_policy(tokenizer, seed=3)
    path = save_tiny_policy(model, tokenizer, tmp_path_factory.mktemp("tiny"))
    return model, path


def test_special_tokens_are_single_ids_and_text_round_trips(tokenizer):
    for token in (*SPECIAL_TOKENS, *TOOL_TAG_TOKENS):
        ids = tokenizer.encode(token, add_special_tokens=False)
        assert len(ids) == 1 and tokenizer.convert_ids_to_tokens(ids) == [token]
    text = 'Hi!\t<tool_call>\n{"name": "calculator"}\n</tool_call><|im_end|>\\boxed{391} ~'
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(ids) == text
    # One token per ASCII character outside the tags and protocol pieces.
    pieces = ("<tool_call>", "</tool_call>", "<|im_end|>", '{"name": "', "calculator", "\\boxed{")
    assert len(ids) == len(text) - sum(len(t) - 1 for t in pieces)
    unicode_text = "π ≈ 3.14, café"
    assert (
        tokenizer.decode(tokenizer.encode(unicode_text, add_special_tokens=False)) == unicode_text
    )
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.pad_token_id != tokenizer.eos_token_id


def test_protocol_pieces_are_one_token_each_and_matched_longest_first(tokenizer):
    call = '<tool_call>\n{"name": "calculator", "arguments": {"expression": "417*38"}}\n</tool_call>'
    tokens = tokenizer.convert_ids_to_tokens(tokenizer.encode(call, add_special_tokens=False))
    assert tokens == ["<tool_call>", "Ċ", '{"name": "', "calculator", '", "arguments": {"', "expression", '": "',
                      "4", "1", "7", "*", "3", "8", '"}}', "Ċ", "</tool_call>"]
    for piece in PROTOCOL_PIECES:
        assert len(tokenizer.encode(piece, add_special_tokens=False)) == 1
        assert tokenizer.decode(tokenizer.encode(f"x{piece}y", add_special_tokens=False)) == f"x{piece}y"


def test_tool_tags_survive_skip_special_tokens(tokenizer):
    ids = tokenizer.encode("<tool_call>x</tool_call><|im_end|>", add_special_tokens=False)
    assert tokenizer.decode(ids, skip_special_tokens=True) == "<tool_call>x</tool_call>"


def test_chat_template_is_trls_qwen2_5_and_recognised_by_trl(tokenizer):
    assert tokenizer.chat_template == qwen2_5_chat_template()
    assert is_chat_template_prefix_preserving(tokenizer)
    parser_ready = add_response_schema(build_tiny_tokenizer())
    assert getattr(parser_ready, "response_template", None) is not None


def test_chat_template_renders_tools_tool_calls_and_tool_responses(tokenizer):
    text = tokenizer.apply_chat_template(
        TOOL_CHAT, tools=[calculator], add_generation_prompt=True, tokenize=False
    )
    assert '{"type": "function", "function": {"name": "calculator"' in text  # the tools block
    assert text.endswith(
        "<|im_start|>user\nWhat is 17*23?<|im_end|>\n"
        '<|im_start|>assistant\n<tool_call>\n{"name": "calculator", "arguments": {"expression": "17*23"}}\n'
        "</tool_call><|im_end|>\n"
        "<|im_start|>user\n<tool_response>\n391\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    ids = tokenizer.apply_chat_template(
        TOOL_CHAT, tools=[calculator], add_generation_prompt=True, tokenize=True, return_dict=False
    )
    assert tokenizer.decode(ids) == text


def test_tiny_policy_forward_size_and_seed(tokenizer):
    model = build_tiny_policy(tokenizer)
    assert 100_000 <= sum(p.numel() for p in model.parameters()) <= 300_000
    assert model.config.vocab_size == len(tokenizer)
    ids = torch.tensor([tokenizer.encode("<|im_start|>user\nhi", add_special_tokens=False)])
    logits = model(input_ids=ids).logits
    assert logits.shape == (1, ids.shape[1], len(tokenizer))
    same = build_tiny_policy(tokenizer)
    other = build_tiny_policy(tokenizer, seed=1)
    assert torch.equal(same(input_ids=ids).logits, logits)
    assert not torch.equal(other(input_ids=ids).logits, logits)


def test_save_and_load_round_trip(saved_policy, tokenizer):
    model, path = saved_policy
    loaded = AutoModelForCausalLM.from_pretrained(path)
    loaded_tokenizer = AutoTokenizer.from_pretrained(path)
    assert type(loaded_tokenizer) is type(
        tokenizer
    )  # transformers picks the class from config.json
    ids = torch.tensor([tokenizer.encode("<|im_start|>assistant\n1+1=2", add_special_tokens=False)])
    assert torch.equal(loaded(input_ids=ids).logits, model(input_ids=ids).logits)
    assert loaded_tokenizer.chat_template == qwen2_5_chat_template()
    assert loaded_tokenizer.get_vocab() == tokenizer.get_vocab()
    assert (loaded_tokenizer.eos_token, loaded_tokenizer.pad_token) == (
        "<|im_end|>",
        "<|endoftext|>",
    )
    text = loaded_tokenizer.apply_chat_template(
        TOOL_CHAT, add_generation_prompt=True, tokenize=False
    )
    assert loaded_tokenizer.encode(text, add_special_tokens=False) == tokenizer.encode(
        text, add_special_tokens=False
    )


def test_load_policy_cpu_path_with_lora(saved_policy):
    model, path = saved_policy
    policy, policy_tokenizer = load_policy(path, lora_rank=4, lora_alpha=8)
    assert policy_backend(policy) == "transformers"
    assert "unsloth" not in sys.modules
    trainable = [name for name, p in policy.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    ids = torch.tensor([policy_tokenizer.encode("<|im_start|>user\nhi", add_special_tokens=False)])
    # LoRA B starts at zero: the adapted policy computes exactly the base model's logits.
    assert torch.allclose(policy(input_ids=ids).logits, model(input_ids=ids).logits, atol=1e-6)


def test_load_policy_without_lora_and_template_fallback(saved_policy, tmp_path):
    model, path = saved_policy
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.chat_template = None
    save_tiny_policy(model, tokenizer, tmp_path)
    (tmp_path / "chat_template.jinja").unlink(missing_ok=True)
    policy, policy_tokenizer = load_policy(tmp_path, lora=False)
    assert all(p.requires_grad for p in policy.parameters())
    assert policy_tokenizer.chat_template == qwen2_5_chat_template()


def test_load_in_4bit_needs_unsloth(saved_policy):
    with pytest.raises(ValueError, match="load_in_4bit"):
        load_policy(saved_policy[1], load_in_4bit=True, prefer_unsloth=False)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_load_policy_uses_unsloth_on_cuda(saved_policy):
    pytest.importorskip("unsloth")
    policy, _ = load_policy(saved_policy[1], lora_rank=4, lora_alpha=8)
    assert policy_backend(policy) == "unsloth"
    trainable = [name for name, p in policy.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
