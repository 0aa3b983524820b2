"""A safe arithmetic calculator: a parser, not ``eval``.

The expression is parsed with Python's ``ast`` module and evaluated by walking the tree; only
number literals, ``+ - * / // % **``, unary ``+``/``-`` and parentheses are accepted. Names,
calls, attributes, subscripts, comparisons and every other node are rejected before anything
is computed, so ``__import__('os')`` is a parse-level error, not a sandbox question.

Limits keep a hostile or runaway expression cheap: the text length, the size of an exponent,
and the magnitude of every intermediate result (checked *before* a power is computed, since
``9**9**9`` would otherwise take minutes in C code that nothing can interrupt).

``calculator`` is the tool callable handed to the agent (TRL reads its signature and Google
docstring via ``transformers.utils.get_json_schema``); ``evaluate_expression`` is the checked
evaluator behind it.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable

__all__ = ["CalculatorError", "calculator", "evaluate_expression", "format_number"]

MAX_EXPRESSION_CHARS = 200
MAX_EXPONENT = 1000
MAX_MAGNITUDE = 10**100  # absolute value of any intermediate or final result

Number = int | float

_BINARY_OPERATORS: dict[type[ast.operator], Callable[[Number, Number], Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_UNARY_OPERATORS: dict[type[ast.unaryop], Callable[[Number], Number]] = {
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}
# Friendly names for nodes a model is likely to try, so the error says what to change.
_REJECTED_OPERATORS = {
    ast.BitXor: "'^' is not supported; use ** for powers",
    ast.BitAnd: "'&' is not supported",
    ast.BitOr: "'|' is not supported",
    ast.LShift: "'<<' is not supported",
    ast.RShift: "'>>' is not supported",
    ast.MatMult: "'@' is not supported",
    ast.Invert: "'~' is not supported",
    ast.Not: "'not' is not supported",
}


class CalculatorError(ValueError):
    """An expression the calculator refuses or cannot evaluate; the message says why."""


def _check_magnitude(value: Number) -> Number:
    if isinstance(value, float) and not math.isfinite(value):
        raise CalculatorError("result is not a finite number")
    if abs(value) > MAX_MAGNITUDE:
        raise CalculatorError("result too large (limit 1e100)")
    return value


def _power(base: Number, exponent: Number) -> Number:
    if abs(exponent) > MAX_EXPONENT:
        raise CalculatorError(f"exponent {exponent} too large (limit {MAX_EXPONENT})")
    if base == 0 and exponent < 0:
        raise CalculatorError("division by zero (0 to a negative power)")
    # Estimate the size before computing: |base|**exponent must stay within MAX_MAGNITUDE.
    if abs(base) > 1 and exponent > 0 and exponent * math.log10(abs(base)) > 100:
        raise CalculatorError("result too large (limit 1e100)")
    if base < 0 and isinstance(exponent, float) and not exponent.is_integer():
        raise CalculatorError("fractional power of a negative number is not a real number")
    return base**exponent


def _evaluate(node: ast.AST) -> Number:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise CalculatorError(f"only numbers are allowed, got {node.value!r}")
        return _check_magnitude(node.value)
    if isinstance(node, ast.UnaryOp):
        if type(node.op) not in _UNARY_OPERATORS:
            raise CalculatorError(_REJECTED_OPERATORS.get(type(node.op), "unsupported operator"))
        return _UNARY_OPERATORS[type(node.op)](_evaluate(node.operand))
    if isinstance(node, ast.BinOp):
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow):
            return _check_magnitude(_power(left, right))
        if type(node.op) not in _BINARY_OPERATORS:
            raise CalculatorError(_REJECTED_OPERATORS.get(type(node.op), "unsupported operator"))
        if isinstance(node.op, ast.Div | ast.FloorDiv | ast.Mod) and right == 0:
            raise CalculatorError("division by zero")
        return _check_magnitude(_BINARY_OPERATORS[type(node.op)](left, right))
    if isinstance(node, ast.Name):
        raise CalculatorError(f"names are not allowed ({node.id!r}); use numbers only")
    if isinstance(node, ast.Call):
        raise CalculatorError("function calls are not allowed; use + - * / // % ** and parentheses")
    if isinstance(node, ast.Attribute):
        raise CalculatorError("attribute access is not allowed")
    if isinstance(node, ast.Tuple):
        raise CalculatorError("commas are not allowed; write one expression without thousands separators")
    raise CalculatorError(f"unsupported syntax: {type(node).__name__}")


def evaluate_expression(expression: str) -> Number:
    """Evaluate an arithmetic expression; raise ``CalculatorError`` with a reason otherwise.

    Integers stay exact (``2**64`` is an int), ``/`` is true division.

    Example:
        >>> evaluate_expression("(17 + 3) * 23 - 2**3")
        452
        >>> evaluate_expression("7 / 2")
        3.5
    """
    if not isinstance(expression, str):
        raise CalculatorError("the expression must be a string")
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise CalculatorError(f"expression too long ({len(expression)} characters, limit {MAX_EXPRESSION_CHARS})")
    if not expression.strip():
        raise CalculatorError("empty expression")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError) as error:
        raise CalculatorError(f"not a valid arithmetic expression ({error.msg if isinstance(error, SyntaxError) else error})") from None
    except (RecursionError, MemoryError):
        raise CalculatorError("expression nested too deeply") from None
    try:
        return _evaluate(tree)
    except RecursionError:
        raise CalculatorError("expression nested too deeply") from None
    except OverflowError:
        raise CalculatorError("result too large") from None


def format_number(value: Number) -> str:
    """Integers (and integral floats) without ``.0``; other floats to 12 significant digits.

    Example:
        >>> format_number(391), format_number(6 / 3), format_number(1 / 3)
        ('391', '2', '0.333333333333')
    """
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, float):
        return format(value, ".12g")
    return str(value)


def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression and return the result.

    Supports numbers, + - * / // % ** (power), unary minus and parentheses.

    Args:
        expression: The arithmetic expression to evaluate, e.g. "417 * 38".

    Returns:
        The result as text (integers without a decimal point), or a message starting with
        "Error:" that says what is wrong with the expression.
    """
    try:
        return format_number(evaluate_expression(expression))
    except CalculatorError as error:
        return f"Error: {error}"
