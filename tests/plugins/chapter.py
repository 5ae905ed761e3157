"""Plugins written exactly as the seed chapter's AgentPlugin protocol shows them:
``name`` and ``version`` as properties, async ``initialize(config)`` and
``process(input_data)``."""

from typing import Any


class UppercasePlugin:
    """Upper-cases the text, and adds the configured suffix."""

    def __init__(self):
        self.suffix = None

    @property
    def name(self) -> str:
        """Unique identifier for this plugin."""
        return "uppercase"

    @property
    def version(self) -> str:
        """Semantic version string."""
        return "1.0.0"

    async def initialize(self, config: dict[str, Any]) -> None:
        """Called once when plugin is loaded."""
        self.suffix = config.get("suffix", "")

    async def process(self, input_data: Any) -> Any:
        """Process input and return output."""
        return input_data.upper() + self.suffix


class ExclaimPlugin:
    """Adds an exclamation mark; passes anything that is not text on unchanged."""

    @property
    def name(self) -> str:
        return "exclaim"

    @property
    def version(self) -> str:
        return "0.2.0"

    async def initialize(self, config: dict[str, Any]) -> None:
        self.seen = []

    async def process(self, input_data: Any) -> Any:
        self.seen.append(input_data)
        if not isinstance(input_data, str):
            return None
        return input_data + "!"

    async def post_process(self, input_data: Any, output: Any) -> None:
        self.seen.append([input_data, output])
