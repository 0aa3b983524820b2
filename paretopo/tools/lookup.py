"""A key-value lookup tool over a small table of facts: ``lookup(entity, attribute) -> value``.

The table is a list of records ``{"name": ..., <attribute>: <value>, ...}`` (the lookup task's
``data/lookup/entities.jsonl``). Names and attributes match without regard to case or
surrounding spaces; a name or attribute that is not there gets an ``Error:`` message back (the
model reads it as the tool response), never an exception.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

__all__ = ["KeyValueTable", "make_lookup_tool"]


def _key(text: str) -> str:
    return " ".join(str(text).split()).lower()


class KeyValueTable:
    """Facts by entity name; ``get`` answers one (entity, attribute) question.

    Example:
        >>> table = KeyValueTable([{"name": "Bazo", "age": "41", "town": "Orsk"}])
        >>> table.get("bazo ", "Town"), table.get("Kimu", "age")
        ('Orsk', "Error: no entity named 'Kimu'")
    """

    def __init__(self, records: Iterable[Mapping[str, object]]) -> None:
        self._records: dict[str, dict[str, str]] = {}
        for record in records:
            if "name" not in record:
                raise ValueError(f"a record without a name: {dict(record)!r}")
            name = _key(str(record["name"]))
            if name in self._records:
                raise ValueError(f"entity {record['name']!r} appears twice")
            self._records[name] = {_key(k): str(v) for k, v in record.items() if k != "name"}

    def __len__(self) -> int:
        return len(self._records)

    def get(self, entity: str, attribute: str) -> str:
        """The value, or a one-line ``Error:`` message saying what is unknown."""
        record = self._records.get(_key(entity))
        if record is None:
            return f"Error: no entity named {str(entity).strip()!r}"
        value = record.get(_key(attribute))
        if value is None:
            return f"Error: {str(entity).strip()} has no attribute {str(attribute).strip()!r} (it has {', '.join(record)})"
        return value


def make_lookup_tool(table: KeyValueTable) -> Callable[[str, str], str]:
    """The agent's tool (named ``lookup``) over ``table``; TRL reads its signature and docstring."""

    def lookup(entity: str, attribute: str) -> str:
        """Look up one attribute of an entity in the knowledge base.

        Args:
            entity: The entity's name, e.g. "Bazo".
            attribute: The attribute to read, e.g. "age" or "town".

        Returns:
            The value as text, or a message starting with "Error:" when the entity or the
            attribute is unknown.
        """
        return table.get(entity, attribute)

    return lookup
