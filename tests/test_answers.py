"""Answer extraction and checking: math on the real MATH-500 answers, SQuAD EM/F1 by hand."""

import json
import multiprocessing
import sys
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paretopo.tasks import answers
from paretopo.tasks.answers import (
    extract_boxed,
    extract_tag,
    math_equal,
    normalize_qa_answer,
    qa_exact_match,
    qa_f1,
    symbolic_equal,
)
from paretopo.tasks.base import data_path


@pytest.fixture(scope="module")
def math500_golds() -> list[str]:
    with open(data_path("math500.jsonl"), encoding="utf-8") as file:
        return [json.loads(line)["answer"] for line in file]


# --- extraction -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"The answer is \boxed{42}.", "42"),
        (r"first \boxed{1} then \boxed{\frac{1}{2}}", r"\frac{1}{2}"),
        (r"$\boxed{\left( 3, \frac{\pi}{2} \right)}$", r"\left( 3, \frac{\pi}{2} \right)"),
        (r"\boxed{\{1, 2\}}", r"\{1, 2\}"),  # escaped braces are not structure
        (r"\fbox{7}", "7"),
        (r"\boxed{3} and later \fbox{4}", "4"),
        (r"so \boxed 5.", "5"),
        (r"\boxed{ x^{2} }", "x^{2}"),
        (r"\boxed{\frac{1}{2}", None),  # truncated: never closed
        ("no box here", None),
        ("", None),
    ],
)
def test_extract_boxed(text, expected):
    assert extract_boxed(text) == expected


def test_extract_boxed_rejects_non_strings():
    assert extract_boxed(None) is None
    assert extract_boxed(42) is None


def test_extract_tag_takes_the_last_span_across_lines():
    text = "<answer>first</answer> thinking...\n<answer>\n Marie Curie \n</answer> trailing"
    assert extract_tag(text) == "Marie Curie"
    assert extract_tag("<search>q</search>", "search") == "q"
    assert extract_tag("<answer>unclosed") is None
    assert extract_tag(None) is None


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_characters="{}\\", blacklist_categories=("Cs",))))
def test_extract_boxed_round_trips_brace_free_text(content):
    assert extract_boxed(f"reasoning... \\boxed{{{content}}} done") == content.strip()


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_characters="<>", blacklist_categories=("Cs",))))
def test_extract_tag_round_trips(content):
    assert extract_tag(f"<answer>x</answer> <answer>{content}</answer>") == content.strip()


# --- math equivalence -------------------------------------------------------------------------


def test_every_math500_gold_matches_itself_symbolically(math500_golds):
    # symbolic_equal skips math_equal's string shortcut, so this exercises math-verify itself.
    started = time.perf_counter()
    rejected = [gold for gold in math500_golds if not symbolic_equal(gold, gold)]
    assert rejected == []
    assert time.perf_counter() - started < 60


# Neighbouring MATH-500 golds that are genuinely equal (checked by hand): math-verify treats
# "x=5" as the value 5.
EQUAL_NEIGHBOURS = {("5", "x=5")}


def test_math500_golds_reject_their_neighbours(math500_golds):
    accepted = []
    for gold, other in zip(math500_golds, math500_golds[1:] + math500_golds[:1], strict=True):
        if gold.casefold() == other.casefold() or (gold, other) in EQUAL_NEIGHBOURS:
            continue
        if math_equal(other, gold):
            accepted.append((other, gold))
    assert accepted == []


@pytest.mark.parametrize(
    ("prediction", "gold"),
    [
        ("0.5", r"\frac{1}{2}"),
        (r"\dfrac12", r"\frac{1}{2}"),
        ("1/2", r"\frac{1}{2}"),
        (r"(3,\frac{\pi}{2})", r"\left( 3, \frac{\pi}{2} \right)"),  # MATH-500 #0
        (r"[-2,7)", r"[-2, 7)"),
        (r"(-\infty,0)\cup(0,\infty)", r"(-\infty,0) \cup (0,\infty)"),
        (r"10\%", "10"),
        ("0.1", r"10\%"),
        (r"2\sqrt{2}", r"\sqrt{8}"),
        (r"11\sqrt{2}", r"11\sqrt2"),  # MATH-500 answer form
        ("evelyn", r"\text{Evelyn}"),  # MATH-500 answer form, case-insensitive
        ("90", r"90^\circ"),
        ("-2, 1", "1,-2"),  # MATH-500 answer form: a list of solutions
        ("7, 5, 3", "3, 5, 7"),
        ("(x+1)^2", "x^2+2x+1"),
        ("1080", "1,080"),
        (r"\$18", "18"),  # currency sign in a word problem
        ("69, 84", "$69$,$84$"),  # OlympiadBench's dollar-wrapped multi-answer gold
        ("6-5i", "6 - 5i"),
    ],
)
def test_equivalent_forms_are_accepted(prediction, gold):
    assert math_equal(prediction, gold)


@pytest.mark.parametrize(
    ("prediction", "gold"),
    [
        (r"\frac{1}{3}", r"\frac{1}{2}"),
        ("3", r"\left( 3, \frac{\pi}{2} \right)"),
        ("(1,2)", "[1,2]"),
        ("12", "1,2"),
        ("3.14", r"\pi"),
        ("6+5i", "6 - 5i"),
        ("-2", "1,-2"),
    ],
)
def test_different_values_are_rejected(prediction, gold):
    assert not math_equal(prediction, gold)


@pytest.mark.parametrize(
    "garbage",
    [None, 42, "", "   ", "{{{", r"\frac{", "}}}\\", "\x00", r"\boxed{", "x" * 1000, "$$", r"\left("],
)
def test_garbage_never_raises(garbage):
    assert math_equal(garbage, "5") is False
    assert math_equal("5", garbage) is False


def test_works_outside_the_main_thread():
    results = []
    worker = threading.Thread(target=lambda: results.append((math_equal(r"\dfrac12", "0.5"), math_equal("2", "3"))))
    worker.start()
    worker.join(timeout=120)
    assert results == [(True, False)]


def test_timeout_gives_false_quickly_and_the_checker_recovers():
    math_equal("1", "2")  # make sure the worker is up, so only the comparison is timed
    started = time.perf_counter()
    # 9^(9^9) has 370 million digits: sympy builds it in C code that no signal interrupts.
    assert math_equal(r"9^{9^{9}}", "1", timeout_s=0.5) is False
    assert time.perf_counter() - started < 5
    assert math_equal("0.5", r"\frac{1}{2}")  # a fresh worker takes over


@settings(max_examples=50, deadline=None)
@given(st.integers(-10**6, 10**6), st.integers(-10**6, 10**6))
def test_integers_are_equal_exactly_when_their_values_are(a, b):
    assert math_equal(str(a), str(b)) == (a == b)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 999), st.sampled_from([2, 4, 5, 8, 10, 20, 25]))
def test_fractions_equal_their_decimal_expansion(numerator, denominator):
    decimal = repr(numerator / denominator)  # exact: the denominators divide a power of 10
    assert math_equal(decimal, rf"\frac{{{numerator}}}{{{denominator}}}")


# --- question answering (SQuAD) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("The Beatles", "beatles"),
        ("  Chief   of Protocol. ", "chief of protocol"),
        ("an apple a day", "apple day"),
        ("Theatre", "theatre"),  # articles only as whole words
        ("Rock'n'Roll!", "rocknroll"),
        ("", ""),
    ],
)
def test_normalize_qa_answer(raw, normalized):
    assert normalize_qa_answer(raw) == normalized


def test_exact_match_hand_checked():
    assert qa_exact_match("the Beatles", ["Beatles", "The Fab Four"]) == 1.0
    assert qa_exact_match("fab four", ["Beatles", "The Fab Four"]) == 1.0
    assert qa_exact_match("Beatles band", "Beatles") == 0.0
    assert qa_exact_match("December 1972", ["14 December 1972 UTC", "December 1972"]) == 1.0
    assert qa_exact_match(None, "Beatles") == 0.0
    assert qa_exact_match("x", []) == 0.0


def test_f1_hand_checked():
    # "chief of protocol of us" vs "chief of protocol": overlap 3 (one "of"), P = 3/5, R = 1.
    assert qa_f1("Chief of Protocol of the US", "Chief of Protocol") == pytest.approx(0.75)
    # best of two golds: "1972" vs "december 1972" -> P = 1, R = 1/2 -> 2/3
    assert qa_f1("1972", ["14 December 1972 UTC", "December 1972"]) == pytest.approx(2 / 3)
    assert qa_f1("Paris", "London") == 0.0
    assert qa_f1("the", "a") == 1.0  # both empty after normalisation (SQuAD v2 convention)
    assert qa_f1("Paris", "the") == 0.0
    assert qa_f1(None, "Paris") == 0.0


answer_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)


@settings(max_examples=200, deadline=None)
@given(answer_text, st.lists(answer_text, min_size=1, max_size=3))
def test_f1_is_a_score_and_exact_match_implies_full_f1(prediction, golds):
    f1 = qa_f1(prediction, golds)
    assert 0.0 <= f1 <= 1.0
    if qa_exact_match(prediction, golds) == 1.0:
        assert f1 == 1.0


@settings(max_examples=200, deadline=None)
@given(answer_text)
def test_normalization_is_idempotent(text):
    once = normalize_qa_answer(text)
    assert normalize_qa_answer(once) == once


def _check_in_child(queue):
    queue.put((math_equal(r"\dfrac12", "0.5"), math_equal("2", "3")))


def test_works_in_a_forked_child():
    math_equal("1", "2")  # the parent's worker exists before the fork
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_check_in_child, args=(queue,))
    child.start()
    child.join(timeout=120)
    assert queue.get(timeout=5) == (True, False)
    assert math_equal(r"\dfrac12", "0.5")  # the parent's worker is untouched


def test_a_worker_that_cannot_start_is_an_error_not_a_wrong_answer(monkeypatch):
    monkeypatch.setattr(answers, "_WORKER", answers._MathVerifyWorker())
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    with pytest.raises(RuntimeError, match="could not start the math-verify worker"):
        math_equal("1", "2")
    assert math_equal("1", "1")  # the string stage needs no worker
