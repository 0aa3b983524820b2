"""The lookup testbed: its generated files, tiers, disjoint splits, answer checking, tool and traces."""

import json
from collections import Counter

import pytest

from paretopo.agent.models import build_tiny_tokenizer
from paretopo.agent.rollout import ToolProtocol, parse_tool_call, run_tool
from paretopo.tasks import available_tasks, get_task
from paretopo.tasks.base import Example, data_dir
from paretopo.tasks.lookup import (
    AGES,
    ATTRIBUTES,
    DEFAULT_SPLIT_SIZES,
    KNOWN_ENTITIES,
    SPLIT_SHARES,
    TOWNS,
    generate_entities,
    generate_split,
    split_of_entity,
    write_lookup_files,
)
from paretopo.tools.lookup import KeyValueTable, make_lookup_tool
from paretopo.training.warmstart import build_trace

TASK = get_task("lookup")


def _splits() -> dict[str, list[Example]]:
    return {split: TASK.load(split) for split in SPLIT_SHARES}


def test_lookup_is_a_task_with_the_usual_splits_and_budget():
    assert "lookup" in available_tasks()
    assert TASK.default_splits == ("train", "validation", "test")
    assert TASK.max_tool_calls == 2 and get_task("lookup", max_tool_calls=1).max_tool_calls == 1
    assert {split: len(examples) for split, examples in _splits().items()} == DEFAULT_SPLIT_SIZES


def test_shipped_files_are_what_the_generator_writes(tmp_path):
    write_lookup_files(tmp_path)
    for name in ("entities", *SPLIT_SHARES):
        assert (tmp_path / f"{name}.jsonl").read_bytes() == (data_dir() / "lookup" / f"{name}.jsonl").read_bytes()


def test_entities_have_unique_names_and_facts_from_their_pools():
    entities = generate_entities()
    assert len({e["name"].lower() for e in entities}) == len(entities)
    assert sum(e["known"] for e in entities) == KNOWN_ENTITIES
    assert all(int(e["age"]) in AGES and e["town"] in TOWNS for e in entities)


def test_tiers_are_known_and_unknown_entities():
    known = {e["name"] for e in generate_entities() if e["known"]}
    for examples in _splits().values():
        for example in examples:
            tier, entity = example.metadata["tier"], example.metadata["entity"]
            assert tier in (1, 2)
            assert (entity in known) == (tier == 1)
            assert example.question == f"What is the {example.metadata['attribute']} of {entity}?"
        assert Counter(e.metadata["tier"] for e in examples) == {1: len(examples) // 2, 2: len(examples) // 2}


def test_splits_are_disjoint_by_unknown_entity_and_share_the_known_ones():
    unknown = {split: {e.metadata["entity"] for e in examples if e.metadata["tier"] == 2}
               for split, examples in _splits().items()}
    assert not unknown["train"] & unknown["validation"]
    assert not unknown["train"] & unknown["test"]
    assert not unknown["validation"] & unknown["test"]
    for split, names in unknown.items():
        assert {split_of_entity(name) for name in names} == {split}
    known = {split: {e.metadata["entity"] for e in examples if e.metadata["tier"] == 1}
             for split, examples in _splits().items()}
    assert known["test"] <= known["train"] and known["validation"] <= known["train"]


def test_generator_is_deterministic_seeded_and_checks_its_input():
    assert generate_split("train", 50, seed=3) == generate_split("train", 50, seed=3)
    assert generate_split("train", 50, seed=3) != generate_split("train", 50, seed=4)
    assert len({e.id for e in generate_split("test", 300)}) == 300  # pools repeat, ids do not
    with pytest.raises(ValueError, match="unknown split"):
        generate_split("dev", 10)
    with pytest.raises(ValueError, match="tier_weights"):
        generate_split("test", 10, tier_weights=(1, 1, 1))


@pytest.mark.parametrize(("completion", "right"), [
    ("\\boxed{Orsk}", True),
    ("\\boxed{ orsk }", True),
    ("I think \\boxed{Pell} ... no: \\boxed{Orsk}", True),  # the last box counts
    ("\\boxed{Orsk2}", False),
    ("\\boxed{Pell}", False),
    ("Orsk", False),  # no box, no answer
    ("", False),
])
def test_answer_checking(completion, right):
    example = Example("x", "What is the town of Bazo?", "Orsk", {"tier": 2, "entity": "Bazo", "attribute": "town"})
    assert TASK.is_correct(completion, example) is right


def test_the_tool_answers_every_question_of_every_split():
    tools = {tool.__name__: tool for tool in TASK.tools()}
    assert list(tools) == ["lookup"]
    for examples in _splits().values():
        for example in examples:
            assert tools["lookup"](example.metadata["entity"], example.metadata["attribute"]) == example.answer


def test_the_tool_says_what_it_does_not_know():
    lookup = make_lookup_tool(KeyValueTable([{"name": "Bazo", "age": "41", "town": "Orsk"}]))
    assert lookup(" BAZO", "Age ") == "41"
    assert lookup("Kimu", "age") == "Error: no entity named 'Kimu'"
    assert lookup("Bazo", "colour") == "Error: Bazo has no attribute 'colour' (it has age, town)"
    with pytest.raises(ValueError, match="appears twice"):
        KeyValueTable([{"name": "Bazo"}, {"name": "bazo"}])
    with pytest.raises(ValueError, match="without a name"):
        KeyValueTable([{"age": "41"}])


def test_the_known_flag_is_not_visible_to_the_tool():
    example = next(e for e in TASK.load("test") if e.metadata["tier"] == 1)
    assert TASK.tools()[0](example.metadata["entity"], "known").startswith("Error:")


def test_prompt_is_an_empty_system_turn_and_the_question_unless_instructed():
    example = TASK.load("test")[0]
    assert TASK.messages(example) == [{"role": "system", "content": ""}, {"role": "user", "content": example.question}]
    instructed = get_task("lookup", instructions=True).messages(example)
    assert "lookup tool (at most 2 calls)" in instructed[0]["content"]


# --- warm-start traces ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def protocol():
    tokenizer = build_tiny_tokenizer()
    return tokenizer, ToolProtocol(tokenizer)


def test_a_trace_call_run_by_the_tool_gives_the_response_in_the_trace(protocol):
    """The traces are what a rollout produces: the call parses, the real tool answers it, and
    that answer is the (masked) response the trace carries; the final answer copies it."""
    tokenizer, tool_protocol = protocol
    tools = {tool.__name__: tool for tool in TASK.tools()}
    for example in TASK.load("test")[:20]:
        ids, mask = build_trace(TASK, example, "one", tokenizer, tool_protocol)
        completion = tokenizer.decode(ids[len(tokenizer.apply_chat_template(TASK.messages(example),
                                                                            add_generation_prompt=True)):])
        call_turn = completion[: completion.index("</tool_call>") + len("</tool_call>")]
        _, name, arguments = parse_tool_call(call_turn)
        result = run_tool(tools, name, arguments)
        assert result == example.answer
        response = tool_protocol.response_ids(name, result)
        start = next(i for i in range(len(ids)) if ids[i:i + len(response)] == response)
        assert mask[start:start + len(response)] == [0] * len(response)
        assert TASK.is_correct(completion, example)


def test_direct_guesses_on_unknown_entities_carry_no_loss_on_the_value(protocol):
    tokenizer, tool_protocol = protocol
    known, unknown = (next(e for e in TASK.load("train") if e.metadata["tier"] == tier) for tier in (1, 2))
    for example, value_supervised in ((known, True), (unknown, False)):
        ids, mask = build_trace(TASK, example, "none", tokenizer, tool_protocol)
        supervised = tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if m])
        assert supervised == ("\\boxed{" + example.answer + "}<|im_end|>" if value_supervised else "\\boxed{}<|im_end|>")


def test_arithmetic_traces_are_unchanged_by_the_recipes(protocol):
    """The recipe refactor must keep arithmetic's traces token for token (data/tiny_policy was built from them)."""
    tokenizer, tool_protocol = protocol
    task = get_task("arithmetic")
    example = Example("x", "What is 55+9?", "64", {"tier": 2, "expression": "55+9"})
    ids, mask = build_trace(task, example, "two", tokenizer, tool_protocol)
    text = tokenizer.decode(ids)
    call = '<tool_call>\n{"name": "calculator", "arguments": {"expression": "55+9"}}\n</tool_call>'
    response = "<|im_end|>\n<|im_start|>user\n<tool_response>\n64\n</tool_response><|im_end|>\n<|im_start|>assistant\n"
    assert text.endswith("assistant\n" + call + response + call + response + "\\boxed{64}<|im_end|>")
    assert json.loads(call.split("\n")[1])["arguments"] == {"expression": "55+9"}


def test_every_lookup_attribute_is_asked():
    assert {e.metadata["attribute"] for e in TASK.load("test")} == set(ATTRIBUTES)


def test_every_warm_start_recipe_has_its_shipped_policy_folder():
    """Where a task's tiny policy lives is written once (paretopo.agent.TINY_POLICY_FOLDERS, light, for
    the CLI's choices); the warm start has a recipe for exactly those tasks."""
    from paretopo.agent import TINY_POLICY_FOLDERS, tiny_policy_path
    from paretopo.training.warmstart import RECIPES

    assert set(RECIPES) == set(TINY_POLICY_FOLDERS)
    assert tiny_policy_path("lookup").name == "tiny_policy_lookup" and tiny_policy_path("math").name == "tiny_policy"
