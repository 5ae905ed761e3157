"""Misbehaving plugin: an ordinary exception.

``process`` raises ``ValueError`` with a clear message. This is the mildest failure:
the worker catches it, sends the exception's type, message and traceback back, and
lives on to serve the next call.

The host must report cause ``"raised"`` (PluginRaised) with ``exc_type == "ValueError"``.
"""


class RaisesPlugin:
    name = "raises"
    version = "0.1.0"

    def process(self, input_data):
        raise ValueError(f"raises plugin refuses to process {input_data!r}")
