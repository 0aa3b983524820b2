"""paretopo.agent.rollout_backends: the registry, and its rollout_func matching the built-in one."""

from types import SimpleNamespace

import pytest
import torch

from paretopo.agent.models import load_policy
from paretopo.agent.rollout import generate_rollouts
from paretopo.agent.rollout_backends import (
    DEFAULT_ROLLOUT_BACKEND,
    get_rollout_backend,
    register_rollout_backend,
)
from paretopo.tasks import get_task
from paretopo.training.train import tiny_policy_path
from paretopo.training.trainer import make_rollout_func, to_trl_rollout_output


def test_registry_names_the_tool_loop_and_rejects_unknown_or_duplicate_names():
    assert DEFAULT_ROLLOUT_BACKEND == "tool_loop"
    assert get_rollout_backend("tool_loop") is generate_rollouts
    with pytest.raises(ValueError, match="registered: \\['segmented_generate', 'tool_loop'\\]"):
        get_rollout_backend("vllm")
    with pytest.raises(ValueError, match="already registered"):
        register_rollout_backend("tool_loop", generate_rollouts)


def test_tool_loop_rollout_func_returns_generate_rollouts_as_trl_expects_it():
    """The rollout_func samples one completion per (already repeated) prompt with the trainer's
    sampling settings and the global RNG, and returns ``to_trl_rollout_output`` of those rollouts."""
    model, tokenizer = load_policy(tiny_policy_path(), lora=False)
    task = get_task("arithmetic")
    tools = {tool.__name__: tool for tool in task.tools()}
    prompts = [task.messages(e) for e in task.load("test")[:2] for _ in range(2)]
    trainer = SimpleNamespace(args=SimpleNamespace(max_completion_length=24, temperature=1.0, top_p=1.0),
                              accelerator=SimpleNamespace(unwrap_model=lambda m: m), model=model,
                              processing_class=tokenizer)
    options = {"max_tool_calls": task.max_tool_calls, "answer_extractor": task.extract_answer,
               "tools_in_prompt": False}
    torch.manual_seed(0)
    expected = to_trl_rollout_output(generate_rollouts(model, tokenizer, prompts, tools=tools, num_samples=1,
                                                       max_new_tokens=24, temperature=1.0, top_p=1.0, **options))
    torch.manual_seed(0)
    rollout_func = make_rollout_func(tools, backend="tool_loop", **options)
    assert rollout_func.rollout_backend == "tool_loop"
    assert rollout_func(prompts, trainer) == expected


def test_the_decoding_loop_knows_no_trl():
    import ast
    from pathlib import Path

    import paretopo.agent.rollout
    import paretopo.agent.rollout_backends
    import paretopo.agent.segmented_rollout

    for module in (paretopo.agent.rollout, paretopo.agent.rollout_backends, paretopo.agent.segmented_rollout):
        tree = ast.parse(Path(module.__file__).read_text())
        imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom) and node.module}
        assert "trl" not in imported, module.__name__
