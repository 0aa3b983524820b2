"""The calculator: right answers, clear errors, and no way out of arithmetic."""

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers.utils import get_json_schema

from paretopo.tools.calculator import (
    MAX_EXPRESSION_CHARS,
    CalculatorError,
    calculator,
    evaluate_expression,
    format_number,
)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("417*38", "15846"),
        ("17 + 23", "40"),
        ("(17 + 3) * 23 - 2**3", "452"),
        ("-5 + 2", "-3"),
        ("--5", "5"),
        ("+7", "7"),
        ("7 / 2", "3.5"),
        ("6 / 3", "2"),  # integral result without ".0"
        ("7 // 2", "3"),
        ("-7 // 2", "-4"),
        ("7 % 3", "1"),
        ("2 ** 10", "1024"),
        ("2 ** -1", "0.5"),
        ("2 ** 0.5", "1.41421356237"),
        ("1 / 3", "0.333333333333"),
        ("0.1 + 0.2", "0.3"),
        ("1e3", "1000"),
        ("10 ** 100", str(10**100)),
        ("  12  ", "12"),
        ("1_000 * 3", "3000"),
    ],
)
def test_evaluates_arithmetic(expression, expected):
    assert calculator(expression) == expected


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("__import__('os')", "function calls are not allowed"),
        ("__import__('os').system('echo hi')", "not allowed"),
        ("(1).__class__", "attribute access is not allowed"),
        ("().__class__.__bases__[0].__subclasses__()", "not allowed"),
        ("x + 1", "names are not allowed"),
        ("abs(-3)", "function calls are not allowed"),
        ("lambda: 1", "unsupported syntax"),
        ("[x for x in (1, 2)]", "unsupported syntax"),
        ("'a' * 3", "only numbers are allowed"),
        ("True + 1", "only numbers are allowed"),
        ("1j * 2", "only numbers are allowed"),
        ("1 if 1 else 2", "unsupported syntax"),
        ("1 < 2", "unsupported syntax"),
        ("import os", "not a valid arithmetic expression"),
        ("1; 2", "not a valid arithmetic expression"),
        ("2 +", "not a valid arithmetic expression"),
        ("1\x002", "not a valid arithmetic expression"),
        ("2 ^ 3", "use ** for powers"),
        ("1,000", "commas are not allowed"),
        ("~1", "not supported"),
        ("", "empty expression"),
        ("   ", "empty expression"),
        ("1 / 0", "division by zero"),
        ("1 // 0", "division by zero"),
        ("1 % 0", "division by zero"),
        ("0 ** -1", "division by zero"),
        ("(-8) ** (1/3)", "not a real number"),
        ("9**9**9", "exponent 387420489 too large"),
        ("2 ** 100000", "too large"),
        ("2 ** 1000", "result too large"),
        ("10 ** 101", "result too large"),
        ("1e300 * 1e300", "result too large"),
        ("1e400", "not a finite number"),
        ("9" * 150, "result too large"),
        ("1+" * 150 + "1", "expression too long"),
        ("(" * 150 + "1" + ")" * 150, "expression too long"),
    ],
)
def test_rejects_with_a_clear_error(expression, reason):
    started = time.perf_counter()
    result = calculator(expression)
    assert result.startswith("Error: ")
    assert reason in result
    assert time.perf_counter() - started < 1.0  # refused before any expensive work
    with pytest.raises(CalculatorError):
        evaluate_expression(expression)


def test_deep_nesting_within_the_length_limit():
    depth = (MAX_EXPRESSION_CHARS - 1) // 2
    assert calculator("(" * depth + "7" + ")" * depth) == "7"
    assert calculator("-" * (MAX_EXPRESSION_CHARS - 1) + "1") == "-1"


def test_non_string_input_is_an_error_not_a_crash():
    assert calculator(None).startswith("Error: ")
    assert calculator(12).startswith("Error: ")


def test_format_number():
    assert format_number(391) == "391"
    assert format_number(2.0) == "2"
    assert format_number(-0.25) == "-0.25"
    assert format_number(1e20) == "1e+20"


def test_tool_schema_for_trl():
    schema = get_json_schema(calculator)
    function = schema["function"]
    assert function["name"] == "calculator"
    assert function["parameters"]["required"] == ["expression"]
    assert function["parameters"]["properties"]["expression"]["type"] == "string"
    assert "arithmetic" in function["description"]


@settings(max_examples=200, deadline=None)
@given(st.integers(-10**12, 10**12), st.integers(-10**12, 10**12), st.sampled_from(["+", "-", "*"]))
def test_integer_arithmetic_is_exact(left, right, operator):
    expected = {"+": left + right, "-": left - right, "*": left * right}[operator]
    assert calculator(f"{left} {operator} ({right})") == str(expected)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789+-*/%().e_ abcxyz'\"[]{}:,;^~<>=!@#", max_size=MAX_EXPRESSION_CHARS + 20))
def test_arbitrary_text_never_raises(text):
    result = calculator(text)
    assert isinstance(result, str) and result
