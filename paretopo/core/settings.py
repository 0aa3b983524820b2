"""Settings fields that carry their own command-line description.

A settings dataclass (``RunSettings``, ``DemoSettings``, ``StudySettings``, ``EvalSettings``) is
the Python API of a command; declaring each field with :func:`setting` gives it the help text,
flag and bounds the command line is generated from (``paretopo.commands.cli``), so a default or
a help string is written once.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any

__all__ = ["setting"]


def setting(default: Any = None, help: str = "", *, flag: str | None = None, kind: type | None = None,
            minimum: float | None = None, many: bool = False, choices: tuple | None = None,
            positional: bool = False, default_factory: Any = None) -> Any:
    """A dataclass field with the metadata its command-line option is generated from.

    Args:
        default: the field's default (the option's, unless the command starts from other settings).
        help: the option's help text (the default is appended by the generator).
        flag: the option's name (default ``--<field-name>``); ``""``: not on the command line.
        kind: the value type when the default does not show it (None, a tuple).
        minimum: the smallest value accepted (checked before any work starts).
        many: the option takes one or more values (``nargs="+"``) and the field is a tuple.
        choices: the accepted values.
        positional: a positional argument instead of an option.
        default_factory: as for :func:`dataclasses.field` (then ``default`` is ignored).
    """
    metadata = {"help": help, "flag": flag, "kind": kind or type(default), "minimum": minimum, "many": many,
                "choices": choices, "positional": positional}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)
