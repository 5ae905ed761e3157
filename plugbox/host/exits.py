"""How a worker ended (``ExitInfo``) and the one-shot slot it is delivered through."""

from __future__ import annotations

from dataclasses import dataclass

import anyio


@dataclass(frozen=True, slots=True)
class ExitInfo:
    """A reaped worker's status and rusage; ``lost`` when nobody could tell."""

    exit_code: int | None = None
    signal: int | None = None
    max_rss_kb: int = 0  # 0: unknown (the report falls back on the usage watch)
    cpu_time: float = 0.0
    lost: bool = False


class ExitWatch:
    """Set once, by whichever launcher reaps the worker; awaited by the host."""

    __slots__ = ("_event", "info")

    def __init__(self) -> None:
        self._event = anyio.Event()
        self.info: ExitInfo | None = None

    def set(self, info: ExitInfo) -> None:
        if self.info is None:
            self.info = info
            self._event.set()

    @property
    def is_set(self) -> bool:
        return self.info is not None

    async def wait(self) -> ExitInfo:
        if self.info is None:
            await self._event.wait()
        assert self.info is not None
        return self.info
