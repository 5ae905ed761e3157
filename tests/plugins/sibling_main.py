"""A file plugin that imports a module beside it."""

import sibling_helper


class SiblingPlugin:
    name = "sibling"
    version = sibling_helper.VERSION

    def process(self, input_data):
        return sibling_helper.decorate(input_data)
