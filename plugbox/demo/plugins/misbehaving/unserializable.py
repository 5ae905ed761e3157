"""A result that cannot cross the boundary: ``process`` returns a ``set``, which is not
a msgpack type; the worker answers with a TypeError and lives on. The host must report
cause ``"raised"`` with ``exc_type == "TypeError"``."""

from __future__ import annotations


class UnserializablePlugin:
    name = "unserializable"
    version = "0.1.0"

    def process(self, input_data: object) -> dict[str, set[str]]:
        return {"words": set(str(input_data).split())}
