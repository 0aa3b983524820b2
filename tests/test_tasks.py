"""Tasks: the arithmetic generator and splits, loaders, bad data, prompts, checkers and tools."""

from collections import Counter

import pytest

from paretopo.tasks import available_tasks, get_task
from paretopo.tasks.arithmetic import (
    DEFAULT_SPLIT_SIZES,
    SPLIT_SHARES,
    generate_split,
    split_of,
    tier_questions,
    write_arithmetic_splits,
)
from paretopo.tasks.base import Example, HubSplit, data_path, load_hub_examples, read_jsonl_examples
from paretopo.tasks.math import _gsm8k_hub_example
from paretopo.tasks.multihop_qa import _hotpotqa_hub_example
from paretopo.tools.search import BM25Retriever, Passage

# --- arithmetic generator ---------------------------------------------------------------------


def _canonical(expression: str) -> str:
    operator = "+" if "+" in expression else "*"
    low, high = sorted(int(part) for part in expression.split(operator))
    return f"{low}{operator}{high}"


def test_tiers_are_defined_by_the_work_they_need():
    for left, operator, right in tier_questions(1):
        assert operator == "+" and left < 100 and right < 10 and left % 10 + right <= 9
    for left, operator, right in tier_questions(2):
        assert operator == "+" and left < 100 and right < 10 and left % 10 + right >= 10
    assert {(100 <= a <= 999, 10 <= b <= 99, op) for a, op, b in tier_questions(3)} == {(True, True, "*")}
    assert (len(tier_questions(1)), len(tier_questions(2)), len(tier_questions(3))) == (550, 450, 81000)
    with pytest.raises(ValueError):
        tier_questions(4)


def test_every_question_has_one_split_and_commuted_questions_share_it():
    assert split_of(3, "+", 5) == split_of(5, "+", 3)
    assert split_of(417, "*", 38) == split_of(38, "*", 417)
    shares = Counter(split_of(*q) for q in tier_questions(3))
    for split, share in SPLIT_SHARES.items():
        assert shares[split] / 81000 == pytest.approx(share, abs=0.01)


def test_shipped_splits_are_disjoint():
    questions = {split: {_canonical(e.metadata["expression"]) for e in get_task("arithmetic").load(split)} for split in SPLIT_SHARES}
    assert not questions["train"] & questions["validation"]
    assert not questions["train"] & questions["test"]
    assert not questions["validation"] & questions["test"]


def test_generator_is_deterministic_and_seeded():
    assert generate_split("train", 300, seed=7) == generate_split("train", 300, seed=7)
    assert generate_split("train", 300, seed=7) != generate_split("train", 300, seed=8)


def test_shipped_files_are_what_the_generator_writes(tmp_path):
    paths = write_arithmetic_splits(tmp_path)
    for split, path in paths.items():
        assert path.read_bytes() == data_path(f"arithmetic/{split}.jsonl").read_bytes(), split


def test_tiers_come_in_the_requested_proportions():
    tiers = Counter(e.metadata["tier"] for e in generate_split("train", 3000))
    assert tiers == {1: 1000, 2: 1000, 3: 1000}
    tiers = Counter(e.metadata["tier"] for e in generate_split("validation", 100, tier_weights=(0.5, 0.3, 0.2)))
    assert tiers == {1: 50, 2: 30, 3: 20}
    shipped = Counter(e.metadata["tier"] for e in get_task("arithmetic").load("test"))
    assert all(abs(count - DEFAULT_SPLIT_SIZES["test"] / 3) <= 1 for count in shipped.values())


def test_generated_examples_are_right_and_ids_unique():
    examples = generate_split("test", 500)
    assert len({e.id for e in examples}) == 500
    for example in examples:
        expression = example.metadata["expression"]
        left, right = (int(part) for part in expression.replace("*", "+").split("+"))
        assert example.answer == str(left * right if "*" in expression else left + right)
        assert example.question == f"What is {expression}?"


def test_generator_rejects_bad_arguments():
    with pytest.raises(ValueError, match="known splits: train, validation, test"):
        generate_split("dev", 10)
    with pytest.raises(ValueError, match="tier_weights"):
        generate_split("train", 10, tier_weights=(1.0, 0.0))


# --- loading ----------------------------------------------------------------------------------

LOCAL_SPLITS = [
    ("arithmetic", "train", 2000),
    ("arithmetic", "validation", 200),
    ("arithmetic", "test", 200),
    ("math", "math500", 500),
    ("math", "gsm8k_test", 1319),
    ("math", "gsm8k_train_first200", 200),
    ("math", "aime2024", 30),
    ("math", "aime2025", 30),
    ("math", "amc23", 40),
    ("math", "olympiadbench", 675),
    ("hotpotqa", "dev_500", 500),
    ("nq_open", "dev", 3610),
]


@pytest.mark.parametrize(("task_name", "split", "size"), LOCAL_SPLITS)
def test_local_splits_load_complete_examples(task_name, split, size):
    examples = get_task(task_name).load(split)
    assert len(examples) == size
    assert len({e.id for e in examples}) == size
    for example in examples:
        assert isinstance(example, Example)
        assert example.id and example.question.strip()
        if task_name in ("hotpotqa", "nq_open"):
            assert isinstance(example.answer, list) and all(isinstance(a, str) and a for a in example.answer)
        else:
            assert isinstance(example.answer, str) and example.answer.strip()


def test_metadata_fields_are_kept():
    assert get_task("arithmetic").load("test")[0].metadata.keys() == {"tier", "expression"}
    assert get_task("math").load("math500")[0].metadata.keys() == {"subject", "level"}
    hotpot = get_task("hotpotqa").load("dev_500")[0].metadata
    assert len(hotpot["supporting_titles"]) == 2 and len(hotpot["context"]) == 10


def _write(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def test_a_row_missing_a_field_names_file_line_and_field(tmp_path, monkeypatch):
    monkeypatch.setenv("PARETOPO_DATA_DIR", str(tmp_path))
    _write(
        tmp_path / "arithmetic" / "test.jsonl",
        ['{"id": "a", "question": "What is 1+1?", "answer": "2"}', "", '{"id": "b", "question": "What is 2+2?"}'],
    )
    with pytest.raises(ValueError, match=r"test\.jsonl, line 3: missing field 'answer'"):
        get_task("arithmetic").load("test")


def test_bad_json_and_non_objects_name_the_line(tmp_path):
    _write(tmp_path / "bad.jsonl", ['{"id": "a", "question": "q", "answer": "1"}', "{not json"])
    with pytest.raises(ValueError, match="line 2: not valid JSON"):
        read_jsonl_examples(tmp_path / "bad.jsonl")
    _write(tmp_path / "list.jsonl", ["[1, 2]"])
    with pytest.raises(ValueError, match="line 1: expected a JSON object"):
        read_jsonl_examples(tmp_path / "list.jsonl")


def test_an_empty_dataset_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PARETOPO_DATA_DIR", str(tmp_path))
    _write(tmp_path / "math500.jsonl", ["", "  "])
    with pytest.raises(ValueError, match="holds no examples"):
        get_task("math").load("math500")


def test_a_missing_data_file_says_where_data_is_looked_for(tmp_path, monkeypatch):
    monkeypatch.setenv("PARETOPO_DATA_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="PARETOPO_DATA_DIR"):
        get_task("math").load("aime2024")


def test_unknown_task_and_split_list_the_known_ones():
    with pytest.raises(ValueError) as error:
        get_task("chess")
    for name in ("arithmetic", "lookup", "math", "hotpotqa", "multihop_qa", "nq_open"):
        assert name in str(error.value)
    assert set(available_tasks()) == {"arithmetic", "lookup", "math", "hotpotqa", "multihop_qa", "nq_open"}
    with pytest.raises(ValueError, match="known splits: math500, gsm8k_test"):
        get_task("math").load("math5000")


def test_hub_splits_convert_rows(monkeypatch):
    # The download itself needs the network; the conversion code path is exercised on fake rows.
    hotpot_row = {
        "id": "x1",
        "question": "Which city?",
        "answer": "Paris",
        "type": "bridge",
        "level": "hard",
        "supporting_facts": {"title": ["A", "B", "A"], "sent_id": [0, 0, 1]},
        "context": {"title": ["A", "B", "C"], "sentences": [["A is.", " A was."], ["B is."], ["C is."]]},
    }
    monkeypatch.setattr("datasets.load_dataset", lambda path, name, split: [hotpot_row])
    (example,) = load_hub_examples(get_task("hotpotqa").hub_splits["validation"])
    assert example == _hotpotqa_hub_example(hotpot_row, 0)
    assert example.answer == ["Paris"]
    assert example.metadata["supporting_titles"] == ["A", "B"]
    assert example.metadata["context"][0] == {"title": "A", "text": "A is. A was.", "is_supporting": True}

    gsm8k = _gsm8k_hub_example({"question": "q", "answer": "3 + 4 = <<3+4=7>>7\n#### 1,007"}, 5)
    assert (gsm8k.id, gsm8k.answer) == ("gsm8k-train-5", "1007")

    monkeypatch.setattr("datasets.load_dataset", lambda path, name, split: [])
    with pytest.raises(ValueError, match="empty dataset"):
        load_hub_examples(HubSplit("some/dataset", None, "train", _gsm8k_hub_example))


# --- prompts, checkers, tools -----------------------------------------------------------------


@pytest.mark.parametrize(("task_name", "budget"), [("arithmetic", 2), ("math", 3), ("hotpotqa", 4), ("nq_open", 4)])
def test_prompts_and_tool_budgets(task_name, budget):
    task = get_task(task_name, **({"instructions": True} if task_name == "arithmetic" else {}))
    assert task.max_tool_calls == budget
    example = Example("q1", "What is 2+2?", "4")
    system, user = task.messages(example)
    assert (system["role"], user["role"], user["content"]) == ("system", "user", "What is 2+2?")
    assert f"at most {budget} calls" in system["content"]
    assert get_task(task_name, max_tool_calls=1).max_tool_calls == 1
    with pytest.raises(ValueError):
        get_task(task_name, max_tool_calls=-1)


def test_arithmetic_checker():
    task = get_task("arithmetic")
    example = Example("a", "What is 417*38?", "15846")
    assert task.is_correct("calculator says 15846, so \\boxed{15846}", example)
    assert task.is_correct("\\boxed{15,846}", example)
    assert not task.is_correct("\\boxed{15847}", example)
    assert not task.is_correct("\\boxed{15846} no wait \\boxed{15847}", example)
    assert not task.is_correct("15846", example)  # no box, no answer
    assert not task.is_correct("\\boxed{fifteen}", example)


def test_math_checker():
    task = get_task("math")
    example = Example("m", "q", r"\frac{1}{2}")
    assert task.is_correct(r"... so the answer is $\boxed{\dfrac12}$.", example)
    assert task.is_correct(r"\boxed{0.5}", example)
    assert not task.is_correct(r"\boxed{0.6}", example)
    assert not task.is_correct("0.5", example)
    assert task.extract_answer(r"\boxed{1} \boxed{2}") == "2"


def test_qa_checker_and_f1():
    task = get_task("hotpotqa")
    example = Example("h", "q", ["Chief of Protocol"])
    assert task.is_correct("<think>...</think> <answer> chief of protocol </answer>", example)
    assert not task.is_correct("<answer>Chief of Protocol of the US</answer>", example)
    assert not task.is_correct("Chief of Protocol", example)  # no answer tags
    assert task.f1("<answer>Chief of Protocol of the US</answer>", example) == pytest.approx(0.75)
    assert task.f1("no tags", example) == 0.0


def test_tools():
    (calculator,) = get_task("arithmetic").tools()
    assert calculator("417*38") == "15846"

    (search,) = get_task("hotpotqa").tools()
    assert search("Shirley Temple Chief of Protocol").count("Doc ") == 3

    with pytest.raises(ValueError, match="no local passage corpus"):
        get_task("nq_open").tools()
    retriever = BM25Retriever.from_passages([Passage("1", "Moon", "Apollo 17 left the Moon in December 1972.")])
    (search,) = get_task("nq_open", retriever=retriever).tools()
    assert search("last time on the moon").startswith("Doc 1 (Title: Moon)")


def test_math_tool_is_the_python_sandbox():
    pytest.importorskip("paretopo.tools.sandbox")
    (python,) = get_task("math").tools()
    assert python.__name__ == "python"



def test_arithmetic_prompt_is_compact_by_default():
    """The tiny policy learned the format in its warm start: an empty system turn (so the chat
    template inserts no default one) and the question, nothing else."""
    from paretopo.agent.models import build_tiny_tokenizer

    messages = get_task("arithmetic").messages(Example("q1", "What is 417*38?", "15846"))
    assert messages == [{"role": "system", "content": ""}, {"role": "user", "content": "What is 417*38?"}]
    tokenizer = build_tiny_tokenizer()
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert prompt == "<|im_start|>system\n<|im_end|>\n<|im_start|>user\nWhat is 417*38?<|im_end|>\n<|im_start|>assistant\n"
    assert len(tokenizer.encode(prompt, add_special_tokens=False)) == 25


@pytest.mark.parametrize("name", ["arithmetic", "math", "hotpotqa", "nq_open"])
def test_default_splits_live_on_the_task_and_exist(name):
    from paretopo.tasks import get_task

    task = get_task(name)
    assert len(task.default_splits) == 3
    assert set(task.default_splits) <= set(task.splits), (task.default_splits, task.splits)


def test_question_tier_accepts_exactly_the_tasks_question_form():
    from paretopo.tasks.arithmetic import question_tier, tier_questions

    task = get_task("arithmetic")
    for split in ("train", "validation", "test"):  # every shipped question, with the tier it was generated in
        for example in task.load(split):
            assert question_tier(example.question) == example.metadata["tier"], example.question
    form = {f"What is {a}{op}{b}?": tier for tier in (1, 2, 3) for a, op, b in tier_questions(tier)}
    for a in range(200):  # brute force: a sum or product of small numbers is in the form iff generated
        for b in range(120):
            for op in "+*":
                assert question_tier(f"What is {a}{op}{b}?") == form.get(f"What is {a}{op}{b}?"), (a, op, b)
    for typed in ("what is 48 + 77?", "12*34", "compute 123 times 45", "hello", "2+2", "What is 48+77?",
                  "What is 07+3?", "What is 417*38", "What is 417×38?", "x" * 400):
        assert question_tier(typed) is None, typed
