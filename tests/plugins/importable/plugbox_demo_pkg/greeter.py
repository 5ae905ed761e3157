"""Two plugin classes in one module, reachable as plugbox_demo_pkg.greeter[:Class]."""

from .words import GREETING


class GreeterPlugin:
    name = "greeter"
    version = "0.9.0"

    def process(self, input_data):
        return f"{GREETING}, {input_data}"


class Shouter:
    """Not named ...Plugin: only loadable as plugbox_demo_pkg.greeter:Shouter."""

    name = "shouter"
    version = "0.1.0"

    def process(self, input_data):
        return f"{GREETING.upper()}, {input_data.upper()}"
