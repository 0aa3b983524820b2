"""Settings fields that carry their own command-line description and bounds.

A settings dataclass (``RunSettings``, ``DemoSettings``, ``StudySettings``, ``EvalSettings``) is
the Python API of a command; declaring each field with :func:`setting` gives it the help text,
flag and bounds the command line is generated from (``paretopo.commands.cli``), so a default or
a help string is written once. :func:`check_settings` (called by each dataclass's
``__post_init__``) is the one check of those bounds, for Python callers and the command line
alike: every number is finite and inside its range, every path is non-empty and encodable.
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import field, fields
from typing import Any

__all__ = ["MAX_EXAMPLES", "MAX_GENERATIONS", "MAX_KL_BETA", "MAX_LR", "MAX_PROMPTS", "MAX_SEED", "MAX_STEPS", "MAX_THREADS",
           "MAX_TOKENS", "MAX_TOOL_CALLS", "check_folder_name", "check_number", "check_path", "check_settings",
           "setting"]

# Ranges shared by the commands' settings: far beyond any run this code is meant for, finite so
# that a typo (--prompts 1000000000, --threads 1000000) is refused before any work instead of
# running out of memory or crashing the thread pool.
MAX_STEPS = 10_000_000
MAX_PROMPTS = 4096
MAX_GENERATIONS = 1024
MAX_LR = 1.0
MAX_KL_BETA = 100.0
MAX_TOKENS = 1_048_576
MAX_TOOL_CALLS = 64
MAX_EXAMPLES = 100_000_000
MAX_THREADS = 1024
MAX_SEED = 2**32 - 1  # numpy's seeds


def setting(default: Any = None, help: str = "", *, flag: str | None = None, kind: type | None = None,
            minimum: float | None = None, maximum: float | None = None, above: float | None = None,
            path: bool = False, many: bool = False, choices: tuple | None = None, positional: bool = False,
            default_factory: Any = None) -> Any:
    """A dataclass field with the metadata its command-line option is generated from.

    Args:
        default: the field's default (the option's, unless the command starts from other settings).
        help: the option's help text (the default is appended by the generator).
        flag: the option's name (default ``--<field-name>``); ``""``: not on the command line.
        kind: the value type when the default does not show it (None, a tuple).
        minimum: the smallest value accepted.
        maximum: the largest value accepted.
        above: the value must be strictly greater than this (e.g. a learning rate above 0).
        path: the value is a file or folder name: non-empty and encodable (see :func:`check_path`).
        many: the option takes one or more values (``nargs="+"``) and the field is a tuple.
        choices: the accepted values.
        positional: a positional argument instead of an option.
        default_factory: as for :func:`dataclasses.field` (then ``default`` is ignored).

    Numbers (int or float fields) are always checked to be finite; bounds are checked by
    :func:`check_settings` before any work starts.
    """
    metadata = {"help": help, "flag": flag, "kind": kind or type(default), "minimum": minimum, "maximum": maximum,
                "above": above, "path": path, "many": many, "choices": choices, "positional": positional}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def check_number(name: str, value: Any, *, integer: bool = False, minimum: float | None = None,
                 maximum: float | None = None, above: float | None = None) -> str | None:
    """What is wrong with ``value`` as the number ``name`` (None when nothing is).

    >>> check_number("--lr", float("nan"), above=0, maximum=1)
    '--lr must be a finite number, got nan'
    >>> check_number("--steps", 10**12, integer=True, minimum=1, maximum=10**6)
    '--steps must be at most 1000000, got 1000000000000'
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return f"{name} must be {'an integer' if integer else 'a number'}, got {value!r}"
    if integer and not isinstance(value, numbers.Integral):
        return f"{name} must be an integer, got {value!r}"
    if not math.isfinite(value):
        return f"{name} must be a finite number, got {value}"
    if above is not None and not value > above:
        return f"{name} must be greater than {above}, got {value}"
    if minimum is not None and value < minimum:
        return f"{name} must be at least {minimum}, got {value}"
    if maximum is not None and value > maximum:
        return f"{name} must be at most {maximum}, got {value}"
    return None


def check_path(name: str, value: Any) -> str | None:
    """What is wrong with ``value`` as a file or folder name: empty, or not writable as UTF-8
    (a non-UTF-8 command-line argument arrives as lone surrogates, which no log can record)."""
    if not isinstance(value, (str, os.PathLike)):
        return f"{name} must be a path, got {value!r}"
    text = os.fspath(value)
    if isinstance(text, bytes) or not text.strip():
        return f"{name} must be a non-empty folder name, got {text!r}"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return f"{name} {ascii(text)} is not valid UTF-8; choose a name made of UTF-8 characters"
    if "\0" in text:
        return f"{name} {ascii(text)} holds a NUL character"
    return None


def check_folder_name(name: str, value: Any, root_name: str) -> str | None:
    """What is wrong with ``value`` as the name of a folder that must stay under the folder
    ``root_name`` names: besides :func:`check_path`, an absolute name or one with a ``..`` part."""
    problem = check_path(name, value)
    if problem:
        return problem
    text = os.fspath(value)
    if os.path.isabs(text) or text.startswith("~") or ".." in text.replace("\\", "/").split("/"):
        return f"{name} {text!r} must be a folder name inside {root_name}, not an absolute path or one with '..'"
    return None


def _field_problem(settings: Any, item: Any, problem: str | None) -> str | None:
    """``problem`` (which names the option) followed by the field when the names differ."""
    flag = item.metadata.get("flag")
    if problem is None or flag is None:
        return problem
    return f"{problem} ({type(settings).__name__}.{item.name})"


def _option(item: Any) -> str:
    flag = item.metadata.get("flag")
    return item.name if flag == "" else flag or "--" + item.name.replace("_", "-")


def check_settings(settings: Any) -> None:
    """Check every field of a settings dataclass against its :func:`setting` bounds.

    Raises:
        ValueError: one line naming each field (and its option) that is out of range, not finite,
            or an empty or unencodable path.
    """
    problems = []
    for item in fields(settings):
        meta = item.metadata
        if "help" not in meta:
            continue
        value = getattr(settings, item.name)
        name = _option(item)
        if meta.get("path") and value is not None:
            problems.append(_field_problem(settings, item, check_path(name, value)))
        if meta.get("kind") in (int, float) and value is not None:
            values = value if meta.get("many") and isinstance(value, (tuple, list)) else (value,)
            problems += [_field_problem(settings, item, check_number(
                name, v, integer=meta["kind"] is int, minimum=meta.get("minimum"), maximum=meta.get("maximum"),
                above=meta.get("above"))) for v in values]
    problems = [p for p in problems if p]
    if problems:
        raise ValueError("; ".join(problems))
