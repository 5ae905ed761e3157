"""A stdout flood: ``process`` prints 200,000 lines, then returns None. The host reads a
worker's stdout off the channel and logs it rate-limited, so it must report no failure."""

from __future__ import annotations

LINES = 200_000


class StdoutFloodPlugin:
    name = "stdout-flood"
    version = "0.1.0"

    def process(self, input_data: object) -> None:
        for i in range(LINES):
            print(f"stdout-flood line {i}: {input_data!r}")
        return None
