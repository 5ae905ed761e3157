"""Misbehaving plugin: a result that cannot cross the process boundary.

``process`` returns a dict holding a ``set`` (a common slip: sets are not msgpack
types; only None, bool, int, float, str, bytes, list and dict cross). The worker
cannot encode the reply, so it answers with a TypeError naming the hook and the
returned type instead; the worker stays alive.

The host must report cause ``"raised"`` (PluginRaised) with ``exc_type == "TypeError"``.
"""


class UnserializablePlugin:
    name = "unserializable"
    version = "0.1.0"

    def process(self, input_data):
        return {"words": set(str(input_data).split())}
