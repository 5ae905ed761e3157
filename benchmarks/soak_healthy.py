"""The soak's healthy plugin: answers every call with its argument, many in flight.

Loaded by ``benchmarks/soak.py`` beside the fault library's plugins, in the same host.
"""


class HealthyPlugin:
    name = "healthy"
    version = "1.0.0"

    async def answer(self, payload):
        return payload
