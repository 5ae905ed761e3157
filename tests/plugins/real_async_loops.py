"""A sync hook that runs asyncio code of its own, as a script would: ``asyncio.run()``
twice and a loop from ``asyncio.new_event_loop()``. ``ask([numbers])`` returns their
squares, the squares' squares and their sum; ``check`` is an async hook, to show the
worker's own loop still serves."""

import asyncio


async def _square(x):
    await asyncio.sleep(0)
    return x * x


async def _squares(numbers):
    return list(await asyncio.gather(*(_square(x) for x in numbers)))


class LoopsPlugin:
    name = "real-loops"
    version = "1.0"

    def ask(self, request):
        first = asyncio.run(_squares(request))
        second = asyncio.run(_squares(first))
        loop = asyncio.new_event_loop()
        try:
            total = loop.run_until_complete(asyncio.wait_for(_squares(request), 30))
        finally:
            loop.close()
        return {"squares": first, "fourth_powers": second, "sum": sum(total)}

    async def check(self, request):
        await asyncio.sleep(0)
        return {"running": asyncio.current_task() is not None, "echo": request}
