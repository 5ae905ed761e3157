"""An ordinary exception: ``process`` raises ``ValueError``; the worker sends it back and
lives on. The host must report cause ``"raised"`` with ``exc_type == "ValueError"``."""

from __future__ import annotations


class RaisesPlugin:
    name = "raises"
    version = "0.1.0"

    def process(self, input_data: object) -> None:
        raise ValueError(f"raises plugin refuses to process {input_data!r}")
