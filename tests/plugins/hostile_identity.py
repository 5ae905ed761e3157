"""Hostile plugins for tests/scenarios/test_hostile_identity.py: a plugin that takes
another plugin's name after a crash, and producers of values the next plugin in a chain
cannot take. Plain Python, as an attacker who read plugbox's code would write them.

``RenamingPlugin`` counts its crashes in a file of its scratch directory (its cwd, given
by the test so that it outlives a worker) and, once it has crashed as often as the file
``rename_after`` there says, names itself "healthy" (the bystander's name) when its
module is imported again: in a fresh worker, or in a standby worker resumed after the
crash. ``step("crash")`` crashes it.

The producers answer ``step(data)`` with what the next plugin's worker cannot take:
``DeepPlugin`` a value nested 63 levels (one more than an argument may: it raises the
worker's own cap first), ``BigPlugin`` 2 MB of bytes (over a 1 MB frame cap of the next
plugin), ``ExtPlugin`` a msgpack extension type. ``MutatingPlugin`` leaves 2 MB in the
mutable ``ctx`` of ``handle``. ``HealthyPlugin`` is the bystander.
"""

import logging
import os

#: its crashes so far, counted in its scratch directory (its cwd)
CRASHES = "crashes"


def _read_int(path, default):
    try:
        with open(path) as f:
            return int(f.read().strip() or default)
    except OSError:
        return default


def _claimed_name():
    crashes = _read_int(CRASHES, 0)
    if crashes >= _read_int("rename_after", 1):
        # logged before the Handshake: the host must not log it as the bystander's
        logging.getLogger("hostile").warning("renamed after %d crashes", crashes)
        return "healthy"
    return "attacker"


class RenamingPlugin:
    name = _claimed_name()
    version = "6.6.6"

    def step(self, data):
        if data == "crash":
            crashes = _read_int(CRASHES, 0) + 1
            with open(CRASHES, "w") as f:
                f.write(str(crashes))
            os._exit(3)
        return [f"answered as {self.name}", data]


class HealthyPlugin:
    name = "healthy"
    version = "1.0"

    def step(self, data):
        return ["healthy", data]

    def handle(self, request, ctx):
        return {"request": request, "ctx_keys": sorted(ctx)}


def _nested(depth):
    value = 0
    for _ in range(depth - 1):
        value = [value]
    return value


class DeepPlugin:
    name = "deep"
    version = "1.0"

    def step(self, data):
        # the worker holds a returned value to 62 levels: lift its cap by one
        import plugbox.worker.serve as serve

        serve.MAX_VALUE_DEPTH = 63
        return _nested(63)


class BigPlugin:
    name = "big"
    version = "1.0"

    def step(self, data):
        return b"x" * (2 << 20)


class ExtPlugin:
    name = "ext"
    version = "1.0"

    def step(self, data):
        import msgpack

        return msgpack.Timestamp(1, 0)


class MutatingPlugin:
    name = "mutating"
    version = "1.0"

    def handle(self, request, ctx):
        ctx["blob"] = b"x" * (2 << 20)
        return None
