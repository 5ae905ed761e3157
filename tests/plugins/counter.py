"""Counts the calls that reach it: ``process`` returns how many it has had."""


class CounterPlugin:
    name = "counter"
    version = "1.0.0"

    def __init__(self):
        self.count = 0

    def process(self, input_data):
        self.count += 1
        return self.count
