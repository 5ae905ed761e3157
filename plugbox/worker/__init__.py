"""The worker side: the process a plugin runs in.

``python -m plugbox.worker --fd N`` (or a fork of the zygote) confines itself, loads
one plugin by reference and serves its hooks over the channel on fd N. This package
imports only the standard library, msgpack and ``plugbox.protocol``.
"""
