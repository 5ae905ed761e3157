"""An async hook written against anyio: it asks sniffio which library runs it and opens
an anyio cancel scope before its first await, then sums its numbers in a task group,
each child in a cancel scope of its own. ``ask({"numbers": [...]})``."""

import anyio
import sniffio


class AnyioPlugin:
    name = "real-anyio"
    version = "1.0"

    async def ask(self, request):
        library = sniffio.current_async_library()  # before any await
        with anyio.fail_after(30):  # the whole call bounded, from its first line
            started = anyio.current_time()
            task = anyio.get_current_task()
            await anyio.sleep(0)
            totals = []

            async def add_up(part):
                with anyio.fail_after(30):
                    await anyio.sleep(0)
                    totals.append(sum(part))

            numbers = request["numbers"]
            half = len(numbers) // 2
            async with anyio.create_task_group() as group:
                group.start_soon(add_up, numbers[:half])
                group.start_soon(add_up, numbers[half:])
            with anyio.move_on_after(30) as scope:
                await anyio.sleep(0)
        return {
            "library": library,
            "task": task.name,
            "total": sum(totals),
            "parts": len(totals),
            "clock": anyio.current_time() >= started,
            "cancelled": scope.cancelled_caught,
        }
