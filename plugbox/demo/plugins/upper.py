"""The smallest plugin: one ``process`` hook that upper-cases its input."""

from __future__ import annotations


class UpperPlugin:
    name = "upper"
    version = "1.0.0"

    def process(self, input_data: str) -> str:
        return input_data.upper()
