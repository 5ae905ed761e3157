"""An async hook that bounds its work with ``asyncio.timeout`` from its first line.

``ask({"n": N})`` returns N squared under a timeout that does not expire;
``ask({"expire": True})`` waits under a timeout that expires at once and returns what
it caught; ``ask({"hold": True})`` waits (under its own timeout) until an ``expire``
call has run; ``ask("crash")`` ends the worker with status 3.
"""

import asyncio
import os

RELEASED = []


class TimeoutPlugin:
    name = "real-timeout"
    version = "1.0"

    def __init__(self):
        self.released = None

    async def ask(self, request):
        if request == "crash":
            os._exit(3)
        if self.released is None:
            self.released = asyncio.Event()
        if request.get("expire"):
            try:
                async with asyncio.timeout(0):
                    await asyncio.Event().wait()  # never set: the timeout ends it
            except TimeoutError:
                self.released.set()
                return {"timed_out": True, "task_cancelling": asyncio.current_task().cancelling()}
            return {"timed_out": False}
        if request.get("hold"):
            async with asyncio.timeout(60):
                await self.released.wait()
            return {"held": "released"}
        async with asyncio.timeout(60):
            await asyncio.sleep(0)
            return {"square": request["n"] ** 2}
